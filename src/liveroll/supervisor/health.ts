/**
 * Health checking a new child: GET the health path on its port until it answers 200. Each probe
 * is a fresh connection with its own deadline (a child that accepts and never answers costs one
 * probe timeout, not the whole update), and probing stops the moment the child exits: a 200
 * from the port of a dead child came from some other process and must not count.
 */
import { request } from 'node:http';
import type { Logger } from 'pino';
import { LiverollError, LiverollErrorCodes, abortedError, describeError } from '../errors.js';
import { sleep } from '../wait.js';

/** Where and how long to probe. */
export interface HealthCheckOptions {
  host: string;
  port: number;
  path: string;
  /** Total time the child has to become healthy. */
  timeoutMs: number;
  /** Deadline of one probe: connect, headers and body. */
  probeTimeoutMs: number;
  /** Pause between probes. */
  intervalMs: number;
  /** Aborted when the child exits. */
  childExit: AbortSignal;
  /** Aborted when the update is cancelled (shutdown, takeover). */
  signal?: AbortSignal;
  logger: Logger;
}

/** Outcome of one probe: the status code, or why there was none. */
type ProbeResult = { status: number } | { error: string };

/** One GET of the health path on a new connection, bounded by `signal`. */
export function probe(
  host: string,
  port: number,
  path: string,
  signal: AbortSignal,
): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const req = request({
      host,
      port,
      path,
      method: 'GET',
      agent: false,
      headers: { connection: 'close', 'user-agent': 'liveroll-healthcheck' },
      signal,
    });
    req.on('response', (res) => {
      res.on('error', (err) => resolve({ error: describeError(err) }));
      res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
      res.resume();
    });
    req.on('error', (err) => {
      const aborted = signal.aborted && err.name === 'AbortError';
      resolve({ error: aborted ? 'probe timed out' : describeError(err) });
    });
    req.end();
  });
}

/**
 * Resolves once the health path answers 200. Rejects with ERR_LIVEROLL_CHILD_EXITED when the
 * child exits first, ERR_LIVEROLL_HEALTH_TIMEOUT past `timeoutMs`, ERR_LIVEROLL_ABORTED when
 * `signal` aborts.
 */
export async function waitUntilHealthy(options: HealthCheckOptions): Promise<void> {
  const { childExit, signal, logger } = options;
  const stop = signal === undefined ? childExit : AbortSignal.any([childExit, signal]);
  const deadline = Date.now() + options.timeoutMs;
  let last = 'no probe answered yet';
  for (let attempt = 1; ; attempt++) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) break;
    const probeSignal = AbortSignal.any([
      stop,
      AbortSignal.timeout(Math.min(options.probeTimeoutMs, remaining)),
    ]);
    const result = await probe(options.host, options.port, options.path, probeSignal);
    // Checked after the probe: an answer that arrives as the child dies does not count.
    throwIfStopped(childExit, signal, last);
    if ('status' in result && result.status === 200) {
      logger.debug({ attempt }, 'health probe answered 200');
      return;
    }
    // A probe cut short by the overall deadline says nothing new about the child.
    const cut = 'error' in result && deadline - Date.now() <= 0;
    if (!cut || attempt === 1) {
      last = 'status' in result ? `health path answered ${result.status}` : result.error;
    }
    logger.debug({ attempt, result: last }, 'health probe failed');
    await sleep(Math.min(options.intervalMs, Math.max(0, deadline - Date.now())), stop);
    throwIfStopped(childExit, signal, last);
  }
  throw new LiverollError(
    LiverollErrorCodes.HEALTH_TIMEOUT,
    `no HTTP 200 from ${options.path} within ${options.timeoutMs} ms (last: ${last})`,
  );
}

function throwIfStopped(
  childExit: AbortSignal,
  signal: AbortSignal | undefined,
  last: string,
): void {
  if (childExit.aborted) {
    throw new LiverollError(
      LiverollErrorCodes.CHILD_EXITED,
      `the child exited before it became healthy (last: ${last})`,
    );
  }
  if (signal?.aborted) throw abortedError(signal, 'the health check');
}
