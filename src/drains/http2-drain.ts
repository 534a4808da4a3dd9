/**
 * Draining an HTTP/2 server in the old process after a handoff. One HTTP/2 session carries many
 * streams for as long as the client likes, so closing the server is not enough (it only stops
 * new sessions), and destroying the sessions resets the streams in flight. Each session is sent
 * a GOAWAY instead: its streams in flight finish, the client opens its next streams on a new
 * session, which the new process accepts. Sessions still open at the deadline are destroyed.
 *
 * A server made with `allowHTTP1` also has HTTP/1.1 connections. They are drained as
 * `drainHttpServer` drains an http.Server: requests in flight finish, any further request is
 * answered with `Connection: close`, and a connection left idle is ended once it has been idle
 * for `http1IdleMs` (Node's http.Server ends idle keep-alive connections after 5 s the same way;
 * HTTP/1.1 on an HTTP/2 server gets no such timeout of its own).
 *
 * Node's HTTP/2 server has no public list of its sessions (Node 20), so they are tracked from
 * the start: `trackHttp2Server(server)` right after creating the server, `drain()` later.
 */
import type http from 'node:http';
import type http2 from 'node:http2';
import type net from 'node:net';
import { ErrorCodes, TablerollError } from '../errors.js';
import { defaultDrainOptions, type DrainOptions, type DrainResult } from './http-drain.js';

/** The sessions of an HTTP/2 server, and how to drain them. */
export interface Http2Tracker {
  /** Sessions open now. */
  readonly sessions: ReadonlySet<http2.ServerHttp2Session>;
  /**
   * Stops the server accepting, sends every session a GOAWAY, closes HTTP/1.1 connections
   * (`allowHTTP1`) after their requests, and resolves once everything has closed, destroying
   * what is left at the deadline (`forced`).
   */
  drain(options?: DrainOptions): Promise<DrainResult>;
}

/** Options of `trackHttp2Server`. */
export interface Http2TrackOptions {
  /** While draining, end an HTTP/1.1 connection idle this long (default 5000 ms). */
  http1IdleMs?: number;
}

/** An HTTP/1.1 connection of an `allowHTTP1` server. */
interface Http1Connection {
  socket: net.Socket;
  /** Responses not finished yet. */
  inFlight: Set<AnyResponse>;
  idleTimer: NodeJS.Timeout | undefined;
}

type AnyRequest = http.IncomingMessage | http2.Http2ServerRequest;
type AnyResponse = http.ServerResponse | http2.Http2ServerResponse;

/** Starts tracking the sessions of `server` (an `http2.createServer` or `createSecureServer`). */
export function trackHttp2Server(
  server: http2.Http2Server | http2.Http2SecureServer,
  options: Http2TrackOptions = {},
): Http2Tracker {
  const http1IdleMs = options.http1IdleMs ?? 5_000;
  const sessions = new Set<http2.ServerHttp2Session>();
  const http1 = new Map<net.Socket, Http1Connection>();
  let draining = false;
  server.on('session', (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
  const endWhenIdle = (connection: Http1Connection): void => {
    if (connection.inFlight.size > 0 || connection.idleTimer !== undefined) return;
    connection.idleTimer = setTimeout(() => connection.socket.end(), http1IdleMs);
  };
  server.prependListener('request', (req: AnyRequest, res: AnyResponse) => {
    if (req.httpVersionMajor !== 1) return;
    const socket = req.socket;
    let connection = http1.get(socket);
    if (connection === undefined) {
      const added: Http1Connection = { socket, inFlight: new Set(), idleTimer: undefined };
      connection = added;
      http1.set(socket, added);
      socket.once('close', () => {
        clearTimeout(added.idleTimer);
        http1.delete(socket);
      });
    }
    const current = connection;
    current.inFlight.add(res);
    clearTimeout(current.idleTimer);
    current.idleTimer = undefined;
    if (draining) closeAfter(res);
    res.once('close', () => {
      current.inFlight.delete(res);
      if (draining) endWhenIdle(current);
    });
  });
  const drain = (drainOptions: DrainOptions = {}): Promise<DrainResult> => {
    const timeoutMs = drainOptions.timeoutMs ?? defaultDrainOptions.timeoutMs;
    if (!(typeof timeoutMs === 'number' && timeoutMs >= 0)) {
      throw new TablerollError(ErrorCodes.INVALID_ARGUMENT, 'timeoutMs must be a number >= 0');
    }
    draining = true;
    for (const connection of http1.values()) {
      for (const res of connection.inFlight) closeAfter(res);
      endWhenIdle(connection);
    }
    return drainAll(server, sessions, http1, timeoutMs, drainOptions.signal);
  };
  return { sessions, drain };
}

/** The connection closes after this response, if its headers are not out yet. */
function closeAfter(res: AnyResponse): void {
  if (!res.headersSent) res.setHeader('connection', 'close');
}

function drainAll(
  server: http2.Http2Server | http2.Http2SecureServer,
  sessions: Set<http2.ServerHttp2Session>,
  http1: Map<net.Socket, Http1Connection>,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<DrainResult> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (forced: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearInterval(poll);
      signal?.removeEventListener('abort', force);
      resolve({ forced });
    };
    const force = (): void => {
      const left = sessions.size + http1.size;
      for (const session of sessions) session.destroy();
      for (const socket of http1.keys()) socket.destroy();
      finish(left > 0);
    };
    const timer = setTimeout(force, timeoutMs);
    const check = (): void => {
      if (sessions.size === 0 && http1.size === 0) finish(false);
    };
    // Sessions and connections close on their own schedule: look again as they do.
    const poll = setInterval(check, 50);
    // Stops accepting on our copy of the listening socket; the new process keeps serving on it.
    server.close();
    for (const session of sessions) {
      session.once('close', () => setImmediate(check));
      // GOAWAY: no new streams on this session; the ones in flight finish.
      session.close();
    }
    check();
    if (signal?.aborted) force();
    else signal?.addEventListener('abort', force, { once: true });
  });
}
