/**
 * Child ports: two slots (`--child-port1`, `--child-port2`), a new child goes on a free one.
 * A slot's port is checked before a child gets it: if any process already listens on it, the
 * slot is skipped, so a leftover process cannot answer the health check in the new child's
 * place. A slot of 0 gets a fresh free port at each spawn, which is how two liveroll instances
 * (systemd template units during a takeover) avoid colliding.
 */
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { LiverollError, LiverollErrorCodes } from '../errors.js';

/** Binds and closes a listener on `port` of every interface (`port` 0: any); resolves with the bound port. */
function bindOnce(port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ port, host, ipv6Only: false, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(bound));
    });
  });
}

/** Tries the dual-stack wildcard first (it conflicts with IPv4 and IPv6 listeners alike), then IPv4. */
async function bindAnywhere(port: number): Promise<number> {
  try {
    return await bindOnce(port, '::');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL') throw err;
    return bindOnce(port, '0.0.0.0');
  }
}

/**
 * Why `port` cannot be given to a child (`'EADDRINUSE'`: someone listens on it), or undefined
 * when it is free on every interface.
 */
export async function portBusyReason(port: number): Promise<string | undefined> {
  try {
    await bindAnywhere(port);
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

/** Lowest port a child gets when its slot is 0: above the usual fixed service ports. */
const FREE_PORT_FLOOR = 10_000;

/** The kernel's range of local ports for outgoing connections (ip_local_port_range). */
function outgoingPortRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    if (low !== undefined && high !== undefined && low > 0) return [low, high];
  } catch {
    // not Linux, or no procfs: use the kernel's default
  }
  return [32768, 60999];
}

/**
 * A port no one listens on right now, for a child. It is taken below the kernel's range for
 * outgoing connections: a port the kernel picks itself (bind to 0) can be given to some
 * process's outgoing connection between our check and the child's bind, and the child then
 * fails with EADDRINUSE. Falls back to the kernel's choice if that range is too small.
 */
export async function pickFreePort(): Promise<number> {
  const [low] = outgoingPortRange();
  const span = low - FREE_PORT_FLOOR;
  for (let attempt = 0; span > 0 && attempt < 20; attempt++) {
    const port = FREE_PORT_FLOOR + randomInt(span);
    if ((await portBusyReason(port)) === undefined) return port;
  }
  return bindAnywhere(0);
}

/** A port handed to one child; give it back with ChildPorts.release. */
export interface PortLease {
  slot: number;
  port: number;
  /** Why earlier slots were passed over (a port someone else listens on), for the log. */
  skipped: string[];
}

/** The two child slots of one liveroll instance. */
export class ChildPorts {
  private readonly leased: (number | undefined)[];

  constructor(private readonly slots: readonly number[]) {
    this.leased = slots.map(() => undefined);
  }

  /** A free slot with a port nobody listens on; throws ERR_LIVEROLL_NO_FREE_PORT. */
  async acquire(): Promise<PortLease> {
    const refused: string[] = [];
    const skipped: string[] = [];
    for (const [slot, configured] of this.slots.entries()) {
      if (this.leased[slot] !== undefined) {
        refused.push(`slot ${slot + 1} is used by a child`);
        continue;
      }
      const port = configured === 0 ? await pickFreePort() : configured;
      const busy = configured === 0 ? undefined : await portBusyReason(port);
      if (busy !== undefined) {
        const reason = `port ${port} is not free (${busy})`;
        refused.push(reason);
        skipped.push(reason);
        continue;
      }
      this.leased[slot] = port;
      return { slot, port, skipped };
    }
    throw new LiverollError(
      LiverollErrorCodes.NO_FREE_PORT,
      `no free child port: ${refused.join('; ')}`,
    );
  }

  /** Frees the slot of a child that has exited. */
  release(lease: PortLease): void {
    if (this.leased[lease.slot] === lease.port) this.leased[lease.slot] = undefined;
  }
}
