/**
 * One liveroll instance from start to exit: the public listener, the proxy serving on it, the
 * supervisor keeping a child behind it, and the two ways it ends.
 *
 * Start-up: join the coordination directory (inheriting the public socket from a running
 * instance, if any), bring up a healthy child, serve on the socket, then `ready()`, which tells
 * the previous instance to step down.
 *
 * End (a stop request, or a newer instance took over): no more updates; the proxy stops
 * accepting and finishes its in-flight requests; every child is retired; exit 0.
 */
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { describeError } from './errors.js';
import type { LiverollOptions } from './options.js';
import { ReverseProxy } from './proxy/proxy.js';
import { PublicListener } from './public-listener.js';
import { Supervisor, directRouter } from './supervisor/supervisor.js';

/** Exit statuses of the CLI. */
export const ExitCodes = {
  /** Stopped on request, or taken over by a newer instance. */
  OK: 0,
  /** Start-up failed (listener, commands, first child), the handoff failed, or a fatal error. */
  FAILURE: 1,
  /** Bad command line; nothing was started. */
  USAGE: 2,
} as const;

/** A liveroll instance; `run()` resolves with the exit status. */
export class LiverollInstance {
  private readonly options: LiverollOptions;
  private readonly log: Logger;
  /** The reverse proxy; undefined in direct mode, where children accept by themselves. */
  private readonly proxy: ReverseProxy | undefined;
  private readonly supervisor: Supervisor;
  private readonly stopRequest = new AbortController();
  private listener: PublicListener | undefined;
  private serving = false;

  constructor(options: LiverollOptions, logger: Logger) {
    this.options = options;
    this.log = logger;
    this.proxy =
      options.mode === 'direct'
        ? undefined
        : new ReverseProxy({
            headersTimeoutMs: options.proxyTimeoutMs,
            idleTimeoutMs: options.proxyIdleTimeoutMs,
            trustForwardHeaders: options.trustForwardHeaders,
            fastLane: options.fastLane,
            nativeLane: options.nativeLane,
            retryAfterSeconds: Math.max(1, Math.ceil(options.restartBackoffMs / 1000)),
            logger,
          });
    this.supervisor = new Supervisor(options, this.proxy ?? directRouter, logger);
    this.stopRequest.signal.addEventListener('abort', () => void this.supervisor.halt());
  }

  /** True once a stop was requested. */
  get stopping(): boolean {
    return this.stopRequest.signal.aborted;
  }

  /** Asks for a graceful stop (SIGINT, SIGTERM). */
  requestStop(reason: string): void {
    if (this.stopping) return;
    this.log.info({ reason }, 'stop requested');
    this.stopRequest.abort(new Error(reason));
  }

  /** Forces an update (SIGHUP): a new child even if the id did not change. */
  requestUpdate(): void {
    if (this.stopping) return;
    this.log.info('forced update requested');
    this.supervisor.trigger('sighup', true);
  }

  /** Kills every child's process group at once; for a second signal or a fatal error. */
  killAllNow(): void {
    this.supervisor.killAllNow();
  }

  /** Runs until stopped or taken over; resolves with the exit status. */
  async run(): Promise<number> {
    let listener: PublicListener;
    try {
      listener = await this.startUp();
    } catch (err) {
      const requested = this.stopping;
      if (!requested) this.log.fatal({ err: describeError(err) }, 'start-up failed');
      await this.shutdown();
      return requested ? ExitCodes.OK : ExitCodes.FAILURE;
    }
    const reason = await this.released(listener);
    this.log.info({ reason }, 'shutting down');
    await this.shutdown();
    return ExitCodes.OK;
  }

  private async startUp(): Promise<PublicListener> {
    const { options } = this;
    const listener = await PublicListener.open({
      coordinationDir: options.coordinationDir,
      instanceId: options.instanceId,
      host: options.host,
      port: options.port,
      upgradeTimeoutMs: options.upgradeTimeoutMs,
      logger: this.log,
      signal: this.stopRequest.signal,
    });
    this.listener = listener;
    this.stopRequest.signal.throwIfAborted();
    const direct = this.proxy === undefined;
    await this.supervisor.start(direct ? { fd: listener.handle.fd, name: listener.id } : undefined);
    this.stopRequest.signal.throwIfAborted();
    if (this.proxy !== undefined) await this.serve(this.proxy, listener.handle);
    else this.log.info({ ...listener.address, mode: 'direct' }, 'serving');
    await listener.ready();
    this.log.info({ id: this.supervisor.servingId }, 'ready');
    return listener;
  }

  private async serve(proxy: ReverseProxy, handle: { fd: number }): Promise<void> {
    const server = proxy.server;
    // Bodies pass through this process in fresh malloc'ed blocks: keep the heap's freed pages
    // rather than faulting them in again for every burst (src/memory.ts; the core is loaded by
    // now, the listener came from it).
    const { setMallocTrimThreshold } = await import('../index.js');
    const allocator = setMallocTrimThreshold();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(handle, () => {
        server.off('error', reject);
        this.serving = true;
        const address = server.address() as AddressInfo;
        this.log.info({ port: address.port, address: address.address, allocator }, 'serving');
        resolve();
      });
    });
  }

  /** Resolves with why we stop: a stop request or a takeover. */
  private released(listener: PublicListener): Promise<string> {
    const stop = this.stopRequest.signal;
    const requested = new Promise<string>((resolve) => {
      if (stop.aborted) resolve('stop requested');
      stop.addEventListener('abort', () => resolve('stop requested'), { once: true });
    });
    const takenOver = listener
      .released()
      .then((why) => (why === 'taken-over' ? 'taken over by a new instance' : 'listener stopped'));
    return Promise.race([requested, takenOver]);
  }

  private async shutdown(): Promise<void> {
    const { drainTimeoutMs } = this.options;
    await this.supervisor.halt();
    if (this.serving && this.listener !== undefined && this.proxy !== undefined) {
      // Upgraded connections and the fast lane's count for the server's close, and only we
      // can end them.
      const proxy = this.proxy;
      const deadline = Date.now() + drainTimeoutMs;
      proxy.startDrain();
      let clean = await this.listener.drain(proxy.server, drainTimeoutMs, () =>
        proxy.destroyConnections(),
      );
      // The native lane's connections are not the server's: its drain did not wait for them.
      if (!(await proxy.settled(Math.max(0, deadline - Date.now())))) {
        proxy.destroyConnections();
        clean = false;
      }
      if (!clean) this.log.warn('connections outlived the drain timeout and were closed');
    } else {
      // Direct mode: our copy of the socket goes; the children (and a newer instance's) keep
      // theirs, and each of ours drains on its own after SIGTERM.
      this.listener?.stop();
    }
    await this.supervisor.retireAll();
    await this.proxy?.close();
    this.log.info('stopped');
  }
}
