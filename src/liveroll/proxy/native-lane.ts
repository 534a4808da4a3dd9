/**
 * The proxy's native lane: the fast lane's job (plain requests on keep-alive connections) done
 * in C++ by tableroll's addon (native/lane/), on Node's own event loop. Measured against nginx,
 * a proxy built on Node's sockets tops out below the plain Node pipe, which parses nothing
 * (docs/benchmarks.md); this lane reads, parses, rewrites and writes with no JavaScript per
 * request.
 *
 * It follows the fast lane's rules. A connection whose request it does not fully understand
 * (Expect, Upgrade, CONNECT, Transfer-Encoding, HTTP/1.0, a target not in origin form, no Host or
 * two, a head over 16 KiB, a body over 64 KiB, any byte a strict parser refuses) is handed back
 * with the bytes read so far, and http.Server serves it from then on, with every rule it
 * enforces. The children are the rotation's: the lane keeps its own pools to them, and reports
 * the start and end of its exchanges on each child so that a retirement waits for them.
 */
import { createRequire } from 'node:module';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import type { ProxyOptions } from './context.js';
import { plainAddress } from './forward-headers.js';
import type { BackendAddress, Rotation } from './rotation.js';

/** The addon's lane (native/lane/binding.cc). */
interface NativeLaneBinding {
  adopt(fd: number, clientIp: string): void;
  add(name: string, host: string, port: number): void;
  retire(name: string): void;
  forget(name: string): void;
  active(name: string): number;
  drain(): void;
  destroyAll(): void;
  connections(): number;
  close(): void;
}

type LaneEvent = (kind: string, a: number | string, b: Buffer | undefined) => void;

interface LaneAddon {
  NativeLane: new (options: object, callback: LaneEvent) => NativeLaneBinding;
}

/**
 * The addon, as src/native.ts loads it (node-gyp-build from the package's root), loaded only
 * when a native lane is made: liveroll's --help and its flag checks do not need it.
 */
export function loadLaneAddon(): LaneAddon {
  const load = createRequire(import.meta.url)('node-gyp-build') as (dir: string) => LaneAddon;
  return load(fileURLToPath(new URL('../../../..', import.meta.url)));
}

/** Idle time between requests before a keep-alive connection is closed (as http.Server). */
const KEEP_ALIVE_MS = 5_000;

/** The descriptor under a net.Socket Node accepted (its handle's, which Node does not type). */
function socketFd(socket: net.Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** The native lane in front of http.Server. */
export class NativeLane {
  private readonly binding: NativeLaneBinding;
  private emptyWaiters: (() => void)[] = [];

  /**
   * `handOver` gives http.Server a connection the lane will not serve, with the bytes it read
   * put back in front.
   */
  constructor(
    addon: LaneAddon,
    options: ProxyOptions,
    headersTimeoutMs: number,
    private readonly rotation: Rotation,
    private readonly handOver: (socket: net.Socket, data: Buffer) => void,
    /** The socket buffer size of http.Server's own connections. */
    private readonly highWaterMark: number,
  ) {
    this.binding = new addon.NativeLane(
      {
        trustForwardHeaders: options.trustForwardHeaders,
        retryAfterSeconds: options.retryAfterSeconds ?? 1,
        headersTimeoutMs,
        keepAliveMs: KEEP_ALIVE_MS,
        connectTimeoutMs: options.connectTimeoutMs ?? 5_000,
        childHeadersTimeoutMs: options.headersTimeoutMs,
        childIdleTimeoutMs: options.idleTimeoutMs,
      },
      (kind, a, b) => this.event(kind, a, b),
    );
  }

  /**
   * Takes a connection http.Server accepted: the lane keeps a copy of its descriptor and Node's
   * socket is closed (no byte has been read from it yet). False when the lane could not take it
   * (no descriptor to copy): the caller serves it as before. True also when it was closed for
   * being over `cap`.
   */
  accept(socket: net.Socket, cap: number): boolean {
    const fd = socketFd(socket);
    if (fd === undefined) return false;
    // The proxy's cap on connections counts the lane's with the server's own (this one among
    // them): over it, the connection is closed unanswered, as net.Server does.
    const server = (socket as unknown as { server?: { _connections?: unknown } }).server;
    const own = typeof server?._connections === 'number' ? server._connections : 1;
    if (this.size + own > cap) {
      socket.destroy();
      return true;
    }
    try {
      this.binding.adopt(fd, plainAddress(socket.remoteAddress));
    } catch {
      return false; // EMFILE, say: Node's socket still works
    }
    socket.destroy();
    return true;
  }

  add(address: BackendAddress): void {
    this.binding.add(address.name, address.host, address.port);
  }

  retire(name: string): void {
    this.binding.retire(name);
  }

  forget(name: string): void {
    this.binding.forget(name);
  }

  /** Client connections the lane holds. */
  get size(): number {
    return this.binding.connections();
  }

  /** Responses from now on carry `Connection: close`; idle connections end at their timeout. */
  drain(): void {
    this.binding.drain();
  }

  destroyAll(): void {
    this.binding.destroyAll();
  }

  /** Resolves when the lane holds no connection (after drain(), at once if it holds none). */
  empty(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.emptyWaiters.push(resolve));
  }

  close(): void {
    this.binding.close();
    this.wakeEmpty();
  }

  private event(kind: string, a: number | string, b: Buffer | undefined): void {
    switch (kind) {
      case 'handover': {
        // Node's socket on the lane's copy (close-on-exec, like every socket Node makes), set
        // up as http.Server's own: half-open allowed (http.Server decides), and the proxy's
        // 256 KiB buffers, without which a large upload moves at half the rate.
        // (Socket passes highWaterMark on to its streams; @types/node 20 does not list it.)
        const options: net.SocketConstructorOpts & { highWaterMark: number } = {
          fd: a as number,
          readable: true,
          writable: true,
          allowHalfOpen: true,
          highWaterMark: this.highWaterMark,
        };
        const socket = new net.Socket(options);
        this.handOver(socket, b ?? Buffer.alloc(0));
        break;
      }
      case 'busy':
        this.rotation.named(a as string)?.enter();
        break;
      case 'idle':
        this.rotation.named(a as string)?.leave();
        break;
      case 'empty':
        this.wakeEmpty();
        break;
    }
  }

  private wakeEmpty(): void {
    const waiters = this.emptyWaiters;
    this.emptyWaiters = [];
    for (const wake of waiters) wake();
  }
}
