/**
 * Draining WebSocket connections in the old process after a handoff. Node's HTTP server does not
 * track upgraded connections, and cutting them at the drain's deadline looks like a network
 * failure to the client. A close frame with code 1001 (going away) tells it the server is
 * leaving on purpose, so it reconnects, and the new process accepts the connection.
 *
 * Works with the `ws` package's WebSocketServer, or anything with the same shape, without
 * tableroll depending on `ws`.
 */
import { ErrorCodes, TablerollError } from '../errors.js';
import { defaultDrainOptions, type DrainResult } from './http-drain.js';

/** The part of a `ws` WebSocket the drain uses. */
export interface WebSocketLike {
  /** 0 connecting, 1 open, 2 closing, 3 closed. */
  readonly readyState: number;
  close(code?: number, reason?: string): void;
  terminate(): void;
  once(event: 'close', listener: () => void): unknown;
}

/** The part of a `ws` WebSocketServer the drain uses: its set of clients. */
export interface WebSocketServerLike {
  readonly clients: Iterable<WebSocketLike>;
}

/** Options of `drainWebSocketServer`. */
export interface WebSocketDrainOptions {
  /** Terminate the connections still open after this long (default 30 s). */
  timeoutMs?: number;
  /** Terminates the remaining connections at once when it fires. */
  signal?: AbortSignal;
  /** The close code sent (default 1001, going away). */
  code?: number;
  /** The close reason sent, at most 123 bytes. */
  reason?: string;
}

const CLOSED = 3;

/**
 * Sends every open client of `wss` a close frame (1001 by default) and resolves once all of them
 * have closed, terminating those left at the deadline (then `forced` is true). Call it when
 * `upgradeComplete()` resolves, next to `drainHttpServer` for the HTTP server they share.
 */
export function drainWebSocketServer(
  wss: WebSocketServerLike,
  options: WebSocketDrainOptions = {},
): Promise<DrainResult> {
  const timeoutMs = options.timeoutMs ?? defaultDrainOptions.timeoutMs;
  if (!(typeof timeoutMs === 'number' && timeoutMs >= 0)) {
    throw new TablerollError(ErrorCodes.INVALID_ARGUMENT, 'timeoutMs must be a number >= 0');
  }
  const open = [...wss.clients].filter((client) => client.readyState !== CLOSED);
  return new Promise((resolve) => {
    let left = open.length;
    const finish = (forced: boolean): void => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', force);
      resolve({ forced });
    };
    const force = (): void => {
      const stuck = open.filter((client) => client.readyState !== CLOSED);
      for (const client of stuck) client.terminate();
      finish(stuck.length > 0);
    };
    const timer = setTimeout(force, timeoutMs);
    if (left === 0) return finish(false);
    for (const client of open) {
      client.once('close', () => {
        if (--left === 0) finish(false);
      });
      client.close(options.code ?? 1001, options.reason ?? 'server going away');
    }
    if (options.signal?.aborted) force();
    else options.signal?.addEventListener('abort', force, { once: true });
  });
}
