/**
 * A bounded HTTP load on loopback for the demo, the benchmarks and the tests: keep-alive
 * clients (one connection each, reused) and connection-per-request clients, each sending one
 * request at a time. It stops at `stop()`, after `maxRequests`, or after `maxMs`, whichever
 * comes first, and counts every failure with its reason, for each kind of client and in all.
 */
import http from 'node:http';

/** Where to send the load. */
export type LoadTarget = { host: string; port: number } | { socketPath: string };

/** Options of a load run. */
export interface LoadOptions {
  keepAliveClients?: number;
  freshClients?: number;
  /** Stop after this many requests in all. */
  maxRequests?: number;
  /** Stop after this long. */
  maxMs?: number;
  /** Per-request timeout. */
  requestTimeoutMs?: number;
  /** The path requested (default '/'). */
  path?: string;
}

/** What some clients saw. */
export interface ClientStats {
  ok: number;
  failed: number;
  /**
   * Failures by reason: an error code ('ECONNRESET'), 'socket hang up' (the server closed the
   * connection before answering, which Node also codes ECONNRESET), or 'status 503'.
   */
  reasons: Record<string, number>;
  /** Completed requests per SLOT_MS slot since the start, for the throughput around a handoff. */
  timeline: number[];
}

/** What a load run saw: all clients, and each kind apart. */
export interface LoadResult extends ClientStats {
  keepAlive: ClientStats;
  fresh: ClientStats;
  /** Successful responses by body (the server's answer names its process). */
  bodies: Record<string, number>;
  durationMs: number;
}

/** A running load. */
export interface Load {
  readonly result: LoadResult;
  /** performance.now() at the start: slot i covers [startedAt + i * SLOT_MS, ...). */
  readonly startedAt: number;
  /** Ends the load now (requests under way finish) and resolves with the counts. */
  stop(): Promise<LoadResult>;
  /** Resolves with the counts once the load reached `maxRequests` or `maxMs` by itself. */
  finished(): Promise<LoadResult>;
}

/** Width of a timeline slot. */
export const SLOT_MS = 100;

/** The timeline slot a moment (a performance.now() value) falls in. */
export function slotOf(load: Load, at: number): number {
  return Math.floor((at - load.startedAt) / SLOT_MS);
}

const emptyStats = (): ClientStats => ({ ok: 0, failed: 0, reasons: {}, timeline: [] });

function count(stats: ClientStats, slot: number, reason: string | undefined): void {
  if (reason !== undefined) {
    stats.failed++;
    stats.reasons[reason] = (stats.reasons[reason] ?? 0) + 1;
    return;
  }
  stats.ok++;
  while (stats.timeline.length <= slot) stats.timeline.push(0);
  stats.timeline[slot]!++;
}

/** Starts the load; call `stop()` to end it and get the counts. */
export function startLoad(target: LoadTarget, options: LoadOptions = {}): Load {
  const maxRequests = options.maxRequests ?? 1_000_000;
  const maxMs = options.maxMs ?? 60_000;
  const startedAt = performance.now();
  const result: LoadResult = {
    ...emptyStats(),
    keepAlive: emptyStats(),
    fresh: emptyStats(),
    bodies: {},
    durationMs: 0,
  };
  let stopping = false;
  let sent = 0;
  const more = (): boolean =>
    !stopping && sent < maxRequests && performance.now() - startedAt < maxMs;

  const record = (kind: ClientStats, outcome: { body?: string; reason?: string }): void => {
    const slot = Math.floor((performance.now() - startedAt) / SLOT_MS);
    count(kind, slot, outcome.reason);
    count(result, slot, outcome.reason);
    if (outcome.reason === undefined) {
      const body = outcome.body ?? '';
      result.bodies[body] = (result.bodies[body] ?? 0) + 1;
    }
  };

  const client = async (kind: ClientStats, agent: http.Agent | false): Promise<void> => {
    while (more()) {
      sent++;
      record(
        kind,
        await request(target, options.path ?? '/', agent, options.requestTimeoutMs ?? 10_000),
      );
    }
  };
  const agents = Array.from(
    { length: options.keepAliveClients ?? 4 },
    () => new http.Agent({ keepAlive: true, maxSockets: 1 }),
  );
  const clients = [
    ...agents.map((agent) => client(result.keepAlive, agent)),
    ...Array.from({ length: options.freshClients ?? 4 }, () => client(result.fresh, false)),
  ];
  const done = Promise.all(clients).then(() => {
    for (const agent of agents) agent.destroy();
    result.durationMs = performance.now() - startedAt;
    return result;
  });
  return {
    result,
    startedAt,
    stop: () => {
      stopping = true;
      return done;
    },
    finished: () => done,
  };
}

/** A failed request's reason, telling a reset from a close before the answer. */
function reasonOf(err: NodeJS.ErrnoException): string {
  if (err.message === 'socket hang up') return 'socket hang up';
  return err.code ?? err.message;
}

function request(
  target: LoadTarget,
  path: string,
  agent: http.Agent | false,
  timeoutMs: number,
): Promise<{ body?: string; reason?: string }> {
  return new Promise((resolve) => {
    const req = http.get({ ...target, path, agent, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () =>
        resolve(
          res.statusCode === 200 ? { body: body.trim() } : { reason: `status ${res.statusCode}` },
        ),
      );
      res.on('error', (err: NodeJS.ErrnoException) => resolve({ reason: reasonOf(err) }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ reason: reasonOf(err) }));
  });
}
