/**
 * liveroll's HTTP/1.1 client to one child: a pool of keep-alive connections. A request is one
 * head string written to a socket, then its body; the response is parsed by llhttp through
 * Node's own binding (the parser behind `http.request`), and each body chunk is handed on as
 * the slice the socket read. No stream objects are made per request, which is where a general
 * client (undici, `http.request`) spends most of a small request's time.
 *
 * One request at a time per connection, no pipelining. An idle connection is closed before the
 * child would close it (its `Keep-Alive: timeout=N` less a second, 4 s at most), so a request is
 * rarely written to a connection the child is closing.
 */
import { Connection, type ConnectionPool } from './upstream-connection.js';
import type {
  UpstreamControl,
  UpstreamHandler,
  UpstreamRequest,
  UpstreamSettings,
} from './upstream-types.js';
import { UpstreamError } from './upstream-types.js';
import { Sweeper, sweepInterval } from './sweep.js';

export * from './upstream-types.js';

/** The control of an exchange that never reached a connection. */
const detached: UpstreamControl = { abort: () => {}, resume: () => {} };

/** The connections to one child. */
export class UpstreamPool implements ConnectionPool {
  private readonly idleList: Connection[] = [];
  private readonly open = new Set<Connection>();
  private destroyed = false;
  /**
   * Closes connections idle too long, and times children slow to answer or silent inside a
   * body (sweep.ts); runs while any connection is open.
   */
  private readonly sweeper: Sweeper;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly settings: UpstreamSettings,
  ) {
    const limits = [settings.headersTimeoutMs, settings.bodyTimeoutMs];
    this.sweeper = new Sweeper(sweepInterval(limits), (now) => {
      // A failed exchange may be retried on a new connection of this pool: the set is copied.
      for (const connection of [...this.open]) connection.sweep(now);
      return this.open.size > 0 && !this.destroyed;
    });
  }

  /** Sends `request`; the returned control aborts the exchange or resumes a paused response. */
  dispatch(request: UpstreamRequest, handler: UpstreamHandler): UpstreamControl {
    if (this.destroyed) {
      queueMicrotask(() =>
        handler.onResponseError(new UpstreamError('UPSTREAM_POOL_CLOSED', 'the child is gone')),
      );
      return detached;
    }
    let connection = this.idleList.pop();
    if (connection === undefined) {
      connection = new Connection(this, this.settings);
      this.open.add(connection);
      this.sweeper.start();
    }
    connection.send(request, handler);
    return connection;
  }

  /** Called by a connection that finished an exchange and may carry another. */
  idle(connection: Connection): void {
    if (this.destroyed) return connection.destroy();
    this.idleList.push(connection);
  }

  /** Called by a connection that closed. */
  dropped(connection: Connection): void {
    this.open.delete(connection);
    const at = this.idleList.indexOf(connection);
    if (at >= 0) this.idleList.splice(at, 1);
  }

  /** Closes every connection; exchanges still running fail with UPSTREAM_POOL_CLOSED. */
  destroy(): Promise<void> {
    this.destroyed = true;
    this.sweeper.stop();
    const closing = [...this.open].map(
      (c) =>
        new Promise<void>((resolve) => {
          c.socket.once('close', () => resolve());
          c.fail('UPSTREAM_POOL_CLOSED', 'the child is gone');
        }),
    );
    return Promise.all(closing).then(() => {});
  }
}
