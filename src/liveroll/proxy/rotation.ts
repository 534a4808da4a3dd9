/**
 * The proxy's rotation: the healthy children requests go to, in round-robin order, each with a
 * connection pool and a count of the exchanges in flight on it. A child leaves the rotation
 * before it is stopped; its in-flight count then tells when it has drained.
 */
import { UpstreamPool } from './upstream.js';
import { withTimeout } from '../wait.js';

/** A child as the proxy sees it. */
export interface BackendAddress {
  /** Unique name of the child (`child-3`). */
  name: string;
  host: string;
  port: number;
}

/** Connection settings for the pools. */
export interface PoolSettings {
  connectTimeoutMs: number;
  /** Time the child has to send response headers; 0 disables. */
  headersTimeoutMs: number;
  /** Longest silence inside the response body; 0 disables. */
  bodyTimeoutMs: number;
}

/** One child in (or on its way out of) the rotation. */
export class Backend {
  readonly pool: UpstreamPool;
  /** Out of the rotation on purpose: its child is being drained and stopped. */
  retired = false;
  private inflight = 0;
  private idleWaiters: (() => void)[] = [];
  /** Called when the child is retired: tunnels, which no drain of requests would end. */
  private readonly retireHooks = new Set<() => void>();

  constructor(
    readonly address: BackendAddress,
    settings: PoolSettings,
  ) {
    this.pool = new UpstreamPool(address.host, address.port, settings);
  }

  get name(): string {
    return this.address.name;
  }

  /** Exchanges (requests and tunnels) currently using this child. */
  get active(): number {
    return this.inflight;
  }

  /** Counts one exchange in; call the returned function exactly once when it ends. */
  begin(): () => void {
    this.enter();
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.leave();
    };
  }

  /** Counts one exchange in; its owner calls leave() exactly once when it ends. */
  enter(): void {
    this.inflight++;
  }

  leave(): void {
    this.inflight--;
    if (this.inflight === 0) this.wakeIdle();
  }

  /** Runs `hook` when this child is retired (at once if it is already); returns an unsubscribe. */
  onRetire(hook: () => void): () => void {
    if (this.retired) {
      hook();
      return () => {};
    }
    this.retireHooks.add(hook);
    return () => this.retireHooks.delete(hook);
  }

  /** Marks the child retired and runs the hooks. */
  retire(): void {
    if (this.retired) return;
    this.retired = true;
    this.closeTunnels();
  }

  /**
   * Runs the hooks now (its tunnels are closed) and keeps the child in the rotation: when all
   * of liveroll stops, the HTTP drain must not wait for tunnels that only a retirement ends.
   */
  closeTunnels(): void {
    const hooks = [...this.retireHooks];
    this.retireHooks.clear();
    for (const hook of hooks) hook();
  }

  /** Resolves true once nothing is in flight, or false after `timeoutMs`. */
  async idle(timeoutMs: number): Promise<boolean> {
    if (this.inflight === 0) return true;
    const idle = new Promise<true>((resolve) => this.idleWaiters.push(() => resolve(true)));
    return (await withTimeout(idle, timeoutMs)) ?? false;
  }

  private wakeIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const wake of waiters) wake();
  }
}

/** The healthy children, in the order requests are spread over them. */
export class Rotation {
  private members: Backend[] = [];
  private readonly retired = new Map<string, Backend>();
  private cursor = 0;

  constructor(private readonly settings: PoolSettings) {}

  /** Number of children taking requests. */
  get size(): number {
    return this.members.length;
  }

  /** Names of the children taking requests, for logs and tests. */
  names(): string[] {
    return this.members.map((b) => b.name);
  }

  /** Puts a healthy child into the rotation. */
  add(address: BackendAddress): void {
    if (this.find(address.name) !== undefined) return;
    this.members.push(new Backend(address, this.settings));
  }

  /** The next child in round-robin order that is not in `exclude`. */
  pick(exclude?: readonly Backend[]): Backend | undefined {
    const count = this.members.length;
    for (let i = 0; i < count; i++) {
      const backend = this.members[(this.cursor + i) % count];
      if (backend !== undefined && exclude?.includes(backend) !== true) {
        this.cursor = (this.cursor + i + 1) % count;
        return backend;
      }
    }
    return undefined;
  }

  /**
   * Takes a child out of the rotation (no new request goes to it) and waits up to `timeoutMs`
   * for its in-flight exchanges; true when it drained in time.
   */
  async retire(name: string, timeoutMs: number): Promise<boolean> {
    const backend = this.find(name) ?? this.retired.get(name);
    if (backend === undefined) return true;
    this.members = this.members.filter((b) => b !== backend);
    this.retired.set(name, backend);
    backend.retire();
    return backend.idle(timeoutMs);
  }

  /** Drops a child for good, once it has stopped: its pool and connections are destroyed. */
  async forget(name: string): Promise<void> {
    const backend = this.find(name) ?? this.retired.get(name);
    if (backend === undefined) return;
    this.members = this.members.filter((b) => b !== backend);
    this.retired.delete(name);
    await backend.pool.destroy();
  }

  /** Every child still known, in the rotation or retired but not forgotten. */
  all(): Backend[] {
    return [...this.members, ...this.retired.values()];
  }

  /** The child by that name, in the rotation or retired but not forgotten. */
  named(name: string): Backend | undefined {
    return this.find(name) ?? this.retired.get(name);
  }

  private find(name: string): Backend | undefined {
    return this.members.find((b) => b.name === name);
  }
}
