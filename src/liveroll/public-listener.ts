/**
 * The public port, held through tableroll's Upgrader on the coordination directory. This is
 * the only module of liveroll that touches the Upgrader.
 *
 * A liveroll started while another one owns the directory inherits the other's listening
 * socket instead of binding the port again; it serves on that socket once its own children are
 * healthy, then calls `ready()`, at which point the old instance learns it was taken over and
 * drains. Between the two, both processes accept on the same socket, so no connection is
 * refused and none waits in a queue nobody reads.
 */
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import type { Upgrader } from '../index.js';
import { LiverollError, LiverollErrorCodes, describeError } from './errors.js';

/**
 * tableroll, loaded on first use: it loads the native addon, and `liveroll --help` or a
 * refused flag must not depend on that.
 */
async function tableroll(): Promise<typeof import('../index.js')> {
  return import('../index.js');
}

/**
 * The id of the public listener in the Upgrader's fd store, shared by every liveroll version:
 * the port is part of it, so an instance started with another `--port` binds that port, and the
 * old port, which nobody asks for any more, is closed when it becomes ready (refused rather
 * than left queueing connections).
 */
export function publicListenerId(port: number): string {
  return `liveroll-http-${port}`;
}

/** Where and how to hold the public port. */
export interface PublicListenerOptions {
  coordinationDir: string;
  instanceId: string;
  /** '' for every interface. */
  host: string;
  port: number;
  upgradeTimeoutMs: number;
  logger: Logger;
  signal?: AbortSignal;
}

/** Why this instance no longer owns the public port. */
export type ReleaseReason = 'taken-over' | 'stopped';

/** The public listening socket and the Upgrader holding it. */
export class PublicListener {
  private constructor(
    private readonly upgrader: Upgrader,
    /** The listening socket, for `server.listen()`. */
    readonly handle: { fd: number },
    /** Its id in the fd store, which direct mode also gives children as LISTEN_FDNAMES. */
    readonly id: string,
  ) {}

  /** The address and port the socket is bound to (the port is known even for `--port 0`). */
  get address(): { address: string; port: number } {
    const bound = this.upgrader.fds.localAddress(this.id);
    return bound !== undefined && 'port' in bound ? bound : { address: '', port: 0 };
  }

  /**
   * Joins the coordination directory (inheriting the socket from a running instance, if any)
   * and returns the listener. Rejects with ERR_LIVEROLL_LISTEN_FAILED.
   */
  static async open(options: PublicListenerOptions): Promise<PublicListener> {
    const { coordinationDir, instanceId, logger } = options;
    let upgrader: Upgrader;
    try {
      const { Upgrader } = await tableroll();
      upgrader = await Upgrader.create(coordinationDir, instanceId, {
        upgradeTimeoutMs: options.upgradeTimeoutMs,
        logger,
        signal: options.signal,
      });
    } catch (err) {
      throw new LiverollError(
        LiverollErrorCodes.LISTEN_FAILED,
        `cannot join coordination directory ${coordinationDir} as ${instanceId}: ${describeError(err)}`,
        { cause: err },
      );
    }
    upgrader.on('upgrade-started', ({ peerPid }) =>
      logger.info({ peerPid }, 'a new instance is taking over the public port'),
    );
    upgrader.on('upgrade-failed', (err) =>
      logger.warn({ err: describeError(err) }, 'a takeover of the public port failed'),
    );
    try {
      const host = options.host === '' ? undefined : options.host;
      const id = publicListenerId(options.port);
      const handle = await upgrader.fds.listen(id, { host, port: options.port });
      return new PublicListener(upgrader, handle, id);
    } catch (err) {
      upgrader.stop();
      throw new LiverollError(
        LiverollErrorCodes.LISTEN_FAILED,
        `cannot listen on ${options.host || '*'}:${options.port}: ${describeError(err)}`,
        { cause: err },
      );
    }
  }

  /** Tells the previous instance (if any) to step down; this instance now owns the port. */
  async ready(): Promise<void> {
    try {
      await this.upgrader.ready();
    } catch (err) {
      throw new LiverollError(
        LiverollErrorCodes.LISTEN_FAILED,
        `the handoff of the public port failed: ${describeError(err)}`,
        { cause: err },
      );
    }
  }

  /** Resolves when a newer instance took the port over, or when stop() ran. */
  async released(): Promise<ReleaseReason> {
    const why = await this.upgrader.upgradeComplete();
    return why === 'upgraded' ? 'taken-over' : 'stopped';
  }

  /**
   * Stops `server` accepting and waits up to `timeoutMs` for its connections to finish their
   * requests (tableroll's drain: keep-alive clients get `Connection: close`, never a reset),
   * then lets go of our copy of the socket so nothing queues on it. Resolves true when every
   * connection ended in time; otherwise `onForced` ends those the server does not track.
   */
  async drain(
    server: Server,
    timeoutMs: number,
    onForced: () => void = () => {},
  ): Promise<boolean> {
    const { drainHttpServer } = await tableroll();
    const drained = drainHttpServer(server, { timeoutMs });
    this.stop();
    const result = await drained;
    if (result.forced) onForced();
    return !result.forced;
  }

  /** Lets go of the coordination directory and our copy of the socket; idempotent. */
  stop(): void {
    this.upgrader.stop();
  }
}
