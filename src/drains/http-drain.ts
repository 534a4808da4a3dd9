/**
 * Draining an HTTP server in the old process after a handoff, without a single reset.
 *
 * `http.Server#close()` closes idle keep-alive connections at once (Node >= 19). A client that
 * is just sending its next request on such a connection then sees a reset or "socket hang up":
 * one per keep-alive connection per upgrade, measured. So instead: stop accepting, let every
 * connection finish its current request, answer any further request with `Connection: close`,
 * and let idle connections end by the server's keep-alive timeout or the client. Whatever is
 * still open at the deadline is destroyed.
 */
import type http from 'node:http';
import net from 'node:net';
import { ErrorCodes, TablerollError } from '../errors.js';

/** Options of `drainHttpServer`. */
export interface DrainOptions {
  /** Destroy the connections still open after this long. */
  timeoutMs?: number;
  /** Destroys the remaining connections at once when it fires. */
  signal?: AbortSignal;
}

/** The defaults of DrainOptions. */
export const defaultDrainOptions = Object.freeze({ timeoutMs: 30_000 });

/** How the drain ended. */
export interface DrainResult {
  /** True when connections were still open at the deadline (or abort) and were destroyed. */
  forced: boolean;
}

/**
 * Stops `server` accepting and resolves once all its connections have ended, destroying those
 * left at the deadline. Upgraded connections (WebSocket) are not tracked by Node's HTTP server:
 * close those yourself.
 */
export function drainHttpServer(
  server: http.Server,
  options: DrainOptions = {},
): Promise<DrainResult> {
  const timeoutMs = options.timeoutMs ?? defaultDrainOptions.timeoutMs;
  if (!(typeof timeoutMs === 'number' && timeoutMs >= 0)) {
    throw new TablerollError(ErrorCodes.INVALID_ARGUMENT, 'timeoutMs must be a number >= 0');
  }
  const closeAfterResponse = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (!res.headersSent) res.setHeader('Connection', 'close');
  };
  server.prependListener('request', closeAfterResponse);
  return new Promise((resolve) => {
    const finish = (forced: boolean): void => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', force);
      server.removeListener('request', closeAfterResponse);
      resolve({ forced });
    };
    const force = (): void => {
      server.closeAllConnections();
      finish(true);
    };
    const timer = setTimeout(force, timeoutMs);
    if (options.signal?.aborted) force();
    options.signal?.addEventListener('abort', force, { once: true });
    // net.Server's close, not http.Server's: it stops accepting and leaves idle connections be.
    net.Server.prototype.close.call(server, () => finish(false));
  });
}
