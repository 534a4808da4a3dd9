/**
 * Draining an HTTP/2 server in the old process after a handoff. One HTTP/2 session carries many
 * streams for as long as the client likes, so closing the server is not enough (it only stops
 * new sessions), and destroying the sessions resets the streams in flight. Each session is sent
 * a GOAWAY instead: its streams in flight finish, the client opens its next streams on a new
 * session, which the new process accepts. Sessions still open at the deadline are destroyed.
 *
 * Node's HTTP/2 server has no public list of its sessions (Node 20), so they are tracked from
 * the start: `trackHttp2Server(server)` right after creating the server, `drain()` later.
 */
import type http2 from 'node:http2';
import { ErrorCodes, TablerollError } from './errors.js';
import { defaultDrainOptions, type DrainOptions, type DrainResult } from './http-drain.js';

/** The sessions of an HTTP/2 server, and how to drain them. */
export interface Http2Tracker {
  /** Sessions open now. */
  readonly sessions: ReadonlySet<http2.ServerHttp2Session>;
  /**
   * Stops the server accepting, sends every session a GOAWAY and resolves once they have all
   * closed, destroying those left at the deadline (`forced`).
   */
  drain(options?: DrainOptions): Promise<DrainResult>;
}

/** Starts tracking the sessions of `server` (an `http2.createServer` or `createSecureServer`). */
export function trackHttp2Server(
  server: http2.Http2Server | http2.Http2SecureServer,
): Http2Tracker {
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
  return { sessions, drain: (options) => drainSessions(server, sessions, options) };
}

function drainSessions(
  server: http2.Http2Server | http2.Http2SecureServer,
  sessions: Set<http2.ServerHttp2Session>,
  options: DrainOptions = {},
): Promise<DrainResult> {
  const timeoutMs = options.timeoutMs ?? defaultDrainOptions.timeoutMs;
  if (!(typeof timeoutMs === 'number' && timeoutMs >= 0)) {
    throw new TablerollError(ErrorCodes.INVALID_ARGUMENT, 'timeoutMs must be a number >= 0');
  }
  return new Promise((resolve) => {
    let done = false;
    const finish = (forced: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', force);
      resolve({ forced });
    };
    const force = (): void => {
      const left = [...sessions];
      for (const session of left) session.destroy();
      finish(left.length > 0);
    };
    const timer = setTimeout(force, timeoutMs);
    // Stops accepting on our copy of the listening socket; the new process keeps serving on it.
    server.close();
    const check = (): void => {
      if (sessions.size === 0) finish(false);
    };
    for (const session of sessions) {
      session.once('close', () => setImmediate(check));
      // GOAWAY: no new streams on this session; the ones in flight finish.
      session.close();
    }
    check();
    if (options.signal?.aborted) force();
    else options.signal?.addEventListener('abort', force, { once: true });
  });
}
