/**
 * A bounded HTTP load on loopback for the demo, the benchmarks and the tests: keep-alive
 * clients (one connection each, reused) and connection-per-request clients, each sending one
 * request at a time. It stops at `stop()`, after `maxRequests`, or after `maxMs`, whichever
 * comes first, and counts every failure with its reason.
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
}

/** What a load run saw. */
export interface LoadResult {
  ok: number;
  failed: number;
  /** Failures by error code or status ("ECONNRESET", "status 503", ...). */
  reasons: Record<string, number>;
  /** Successful responses by body (the server's answer names its process). */
  bodies: Record<string, number>;
  durationMs: number;
  /** Completed requests per 100 ms slot, for the throughput around a handoff. */
  timeline: number[];
}

/** A running load. */
export interface Load {
  readonly result: LoadResult;
  /** Ends the load now (requests under way finish) and resolves with the counts. */
  stop(): Promise<LoadResult>;
  /** Resolves with the counts once the load reached `maxRequests` or `maxMs` by itself. */
  finished(): Promise<LoadResult>;
}

/** Starts the load; call `stop()` to end it and get the counts. */
export function startLoad(target: LoadTarget, options: LoadOptions = {}): Load {
  const maxRequests = options.maxRequests ?? 1_000_000;
  const maxMs = options.maxMs ?? 60_000;
  const started = performance.now();
  const result: LoadResult = {
    ok: 0,
    failed: 0,
    reasons: {},
    bodies: {},
    durationMs: 0,
    timeline: [],
  };
  let stopping = false;
  let sent = 0;
  const more = (): boolean =>
    !stopping && sent < maxRequests && performance.now() - started < maxMs;

  const record = (outcome: { body?: string; reason?: string }): void => {
    const slot = Math.floor((performance.now() - started) / 100);
    while (result.timeline.length <= slot) result.timeline.push(0);
    if (outcome.reason === undefined) {
      result.ok++;
      result.timeline[slot]!++;
      const body = outcome.body ?? '';
      result.bodies[body] = (result.bodies[body] ?? 0) + 1;
    } else {
      result.failed++;
      result.reasons[outcome.reason] = (result.reasons[outcome.reason] ?? 0) + 1;
    }
  };

  const client = async (agent: http.Agent | false): Promise<void> => {
    while (more()) {
      sent++;
      record(await request(target, agent, options.requestTimeoutMs ?? 10_000));
    }
  };
  const agents: http.Agent[] = [];
  const clients: Promise<void>[] = [];
  for (let i = 0; i < (options.keepAliveClients ?? 4); i++) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(agent);
    clients.push(client(agent));
  }
  for (let i = 0; i < (options.freshClients ?? 4); i++) clients.push(client(false));
  const done = Promise.all(clients).then(() => {
    for (const agent of agents) agent.destroy();
    result.durationMs = performance.now() - started;
    return result;
  });
  return {
    result,
    stop: () => {
      stopping = true;
      return done;
    },
    finished: () => done,
  };
}

function request(
  target: LoadTarget,
  agent: http.Agent | false,
  timeoutMs: number,
): Promise<{ body?: string; reason?: string }> {
  return new Promise((resolve) => {
    const req = http.get({ ...target, path: '/', agent, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () =>
        resolve(
          res.statusCode === 200 ? { body: body.trim() } : { reason: `status ${res.statusCode}` },
        ),
      );
      res.on('error', (err: NodeJS.ErrnoException) => resolve({ reason: err.code ?? err.message }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ reason: err.code ?? err.message }));
  });
}
