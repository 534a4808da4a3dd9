/**
 * Closed-loop HTTP load on loopback for the benchmarks: keep-alive clients (one reused
 * connection each) and connection-per-request clients, one request at a time each, counted
 * apart. Unlike scripts/http-load.ts it tells a reset (ECONNRESET) from a "socket hang up"
 * (the server closed the connection before answering), which Node reports with the same code.
 */
import http from 'node:http';

/** What one kind of client saw. */
export interface ClientStats {
  ok: number;
  failed: number;
  /** Failures by reason: 'ECONNRESET', 'socket hang up', 'status 503', 'ECONNREFUSED', ... */
  reasons: Record<string, number>;
  /** Successful requests per 100 ms slot since the load started. */
  timeline: number[];
}

/** A running load. */
export interface Load {
  readonly keepAlive: ClientStats;
  readonly fresh: ClientStats;
  /** performance.now() when the load started: slot i covers [start + 100i, start + 100(i+1)). */
  readonly startedAt: number;
  /** Ends the load (requests under way finish) and resolves once every client stopped. */
  stop(): Promise<void>;
}

/** Width of a timeline slot. */
export const SLOT_MS = 100;

function emptyStats(): ClientStats {
  return { ok: 0, failed: 0, reasons: {}, timeline: [] };
}

/** The reason of a failed request, as the benchmarks count it. */
function reasonOf(err: NodeJS.ErrnoException): string {
  if (err.message === 'socket hang up') return 'socket hang up';
  return err.code ?? err.message;
}

function request(
  port: number,
  path: string,
  agent: http.Agent | false,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent, timeout: 10_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200 ? undefined : `status ${res.statusCode}`));
      res.on('error', (err: NodeJS.ErrnoException) => resolve(reasonOf(err)));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(reasonOf(err)));
  });
}

/**
 * Starts `keepAliveClients` + `freshClients` loops on 127.0.0.1:`port`, until `stop()` or
 * `maxMs` (a bound in case the caller never stops it).
 */
export function startLoad(
  port: number,
  options: { keepAliveClients: number; freshClients: number; maxMs: number; path?: string },
): Load {
  const startedAt = performance.now();
  const keepAlive = emptyStats();
  const fresh = emptyStats();
  let stopping = false;
  const record = (stats: ClientStats, reason: string | undefined): void => {
    if (reason !== undefined) {
      stats.failed++;
      stats.reasons[reason] = (stats.reasons[reason] ?? 0) + 1;
      return;
    }
    stats.ok++;
    const slot = Math.floor((performance.now() - startedAt) / SLOT_MS);
    while (stats.timeline.length <= slot) stats.timeline.push(0);
    stats.timeline[slot]!++;
  };
  const client = async (stats: ClientStats, agent: http.Agent | false): Promise<void> => {
    while (!stopping && performance.now() - startedAt < options.maxMs) {
      record(stats, await request(port, options.path ?? '/', agent));
    }
  };
  const agents = Array.from(
    { length: options.keepAliveClients },
    () => new http.Agent({ keepAlive: true, maxSockets: 1 }),
  );
  const loops = [
    ...agents.map((agent) => client(keepAlive, agent)),
    ...Array.from({ length: options.freshClients }, () => client(fresh, false)),
  ];
  const done = Promise.all(loops).then(() => {
    for (const agent of agents) agent.destroy();
  });
  return {
    keepAlive,
    fresh,
    startedAt,
    stop: () => {
      stopping = true;
      return done;
    },
  };
}

/** The slot a moment (performance.now()) falls in. */
export function slotOf(load: Load, at: number): number {
  return Math.floor((at - load.startedAt) / SLOT_MS);
}

/** Both timelines added up. */
export function combinedTimeline(load: Load): number[] {
  const length = Math.max(load.keepAlive.timeline.length, load.fresh.timeline.length);
  return Array.from(
    { length },
    (_, i) => (load.keepAlive.timeline[i] ?? 0) + (load.fresh.timeline[i] ?? 0),
  );
}

/** A copy of the counts so far, to subtract from later ones. */
export function snapshot(stats: ClientStats): {
  ok: number;
  failed: number;
  reasons: Record<string, number>;
} {
  return { ok: stats.ok, failed: stats.failed, reasons: { ...stats.reasons } };
}
