/**
 * The reverse proxy on the public port: round robin over the healthy children, bodies streamed
 * both ways with backpressure (nothing is buffered whole, so an upload of any size or an
 * endless SSE stream costs a few chunks of memory), WebSocket and other upgrades tunnelled.
 *
 * Retries: a request goes to another child only if the first one provably never received it
 * (no byte of it was written: connection refused, connect timeout), or if its method is
 * idempotent and the connection failed before any response byte arrived, unless that child
 * was being retired: then it was cut by our own stop after the drain timeout, and is answered
 * 502 rather than run a second time. A request whose body
 * has started to flow is never retried (the body cannot be replayed), and a response the child
 * sent, 502 included, is never second-guessed. With no healthy child the answer is 503 with
 * `Retry-After`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import fs from 'node:fs';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { describeError } from '../errors.js';
import { withTimeout } from '../wait.js';
import { forwardExpectContinue } from './continue.js';
import { tunnelUpgrade } from './tunnel.js';
import { Rotation, type BackendAddress } from './rotation.js';
import type { ProxyContext, ProxyOptions } from './context.js';
import { forwardHttpRequest } from './exchange.js';
import { FastLane } from './fast-lane.js';
import { NativeLane, loadLaneAddon } from './native-lane.js';

export type { ProxyOptions } from './context.js';

/**
 * Client connections the proxy takes at once: each may hold two descriptors (the client's and
 * one to a child), and some must stay free for the children's pools and for a handoff of the
 * public port, which a proxy at its descriptor limit could not make.
 */
export function connectionCap(limitsFile = '/proc/self/limits'): number {
  let soft = 1024;
  try {
    const row = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync(limitsFile, 'utf8'));
    if (row?.[1] !== undefined) soft = row[1] === 'unlimited' ? 1 << 20 : Number(row[1]);
  } catch {
    // Not Linux's /proc: keep the usual default.
  }
  return Math.max(16, Math.floor((soft - 128) / 2));
}

/**
 * Socket buffers of the client connections: bigger than the 16 KiB default, since a bulk
 * response moves in 64 KiB reads, and a smaller buffer pauses the child's connection after
 * every one of them.
 */
const HIGH_WATER_MARK = 256 * 1024;

/** The answer to a request Node's parser refused. */
function clientErrorStatus(code: string | undefined): string {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return '431 Request Header Fields Too Large';
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return '408 Request Timeout';
    default:
      return '400 Bad Request';
  }
}

/** The reverse proxy: an http.Server plus the rotation of children behind it. */
export class ReverseProxy implements ProxyContext {
  readonly server: Server;
  readonly rotation: Rotation;
  readonly options: ProxyOptions;
  /** The fast lane in front of the server; undefined when switched off. */
  readonly lane: FastLane | undefined;
  /** The native lane in front of the fast lane and the server; undefined when switched off. */
  native: NativeLane | undefined;

  constructor(options: ProxyOptions) {
    this.options = options;
    this.rotation = new Rotation({
      connectTimeoutMs: options.connectTimeoutMs ?? 5_000,
      headersTimeoutMs: options.headersTimeoutMs,
      bodyTimeoutMs: options.idleTimeoutMs,
    });
    // requestTimeout 0 (a body may stream for hours) would also switch headersTimeout off
    // unless it is set: a client trickling headers (slowloris) would hold its connection.
    const headersTimeout = options.clientHeadersTimeoutMs ?? 30_000;
    this.server = createServer({
      requestTimeout: 0,
      headersTimeout,
      // Node checks the timeout at this interval (30 s by default), not to the millisecond.
      connectionsCheckingInterval: Math.min(30_000, Math.max(50, headersTimeout / 4)),
      keepAliveTimeout: 5_000,
      highWaterMark: HIGH_WATER_MARK,
    });
    this.server.timeout = options.idleTimeoutMs;
    this.server.maxConnections = options.maxConnections ?? connectionCap();
    this.server.on('request', (req, res) => forwardHttpRequest(this, req, res));
    this.lane = this.fastLane(headersTimeout);
    this.server.on('checkContinue', (req, res) => forwardExpectContinue(this, req, res));
    this.server.on('upgrade', (req: IncomingMessage, socket, head: Buffer) =>
      tunnelUpgrade(this, req, socket, head),
    );
    // liveroll forwards to its children, it is no forward proxy: say so rather than hang up.
    this.server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
      socket.on('error', () => {});
      socket.end(
        'HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n' +
          'Connection: close\r\nContent-Length: 0\r\n\r\n',
      );
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      options.logger.debug({ err: describeError(err) }, 'bad request from a client');
      const status = clientErrorStatus(err.code);
      if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
      else socket.destroy();
    });
  }

  /**
   * Puts the lanes between the listening socket and http.Server: the native lane
   * (native-lane.ts) takes every new connection, the fast lane (fast-lane.ts) those it does not
   * (all of them with `nativeLane: false`), and each hands to http.Server what it does not serve.
   */
  private fastLane(headersTimeoutMs: number): FastLane | undefined {
    const listeners = this.server.listeners('connection');
    const httpConnection = listeners[0] as ((socket: Socket) => void) | undefined;
    // http.Server's own connection handler is the only one, or the lanes stay out of the way.
    if (listeners.length !== 1 || httpConnection === undefined) return undefined;
    if (this.options.fastLane === false) return undefined;
    const server = this.server;
    server.removeListener('connection', httpConnection);
    const toServer = (socket: Socket): void => httpConnection.call(server, socket);
    const lane = new FastLane(this, { headersTimeoutMs }, toServer);
    if (this.options.nativeLane !== false) {
      this.native = new NativeLane(
        loadLaneAddon(),
        this.options,
        headersTimeoutMs,
        this.rotation,
        (socket, data) => handBack(socket, data, toServer),
        HIGH_WATER_MARK,
      );
    }
    const native = this.native;
    server.on('connection', (socket: Socket) => {
      if (native?.accept(socket, server.maxConnections) !== true) lane.accept(socket);
    });
    return lane;
  }

  /**
   * Starts draining what the server's own drain does not see: tunnels get their close, and the
   * fast lane's connections end after their current response. Call it just before tableroll's
   * drainHttpServer on `server`, and destroyConnections() if that drain was forced.
   */
  startDrain(): void {
    this.closeTunnels();
    this.lane?.drain();
    this.native?.drain();
  }

  /**
   * Resolves true once the native lane holds no connection, or false after `timeoutMs` (its
   * connections are not http.Server's, whose drain does not wait for them).
   */
  async settled(timeoutMs: number): Promise<boolean> {
    if (this.native === undefined) return true;
    return (
      (await withTimeout(
        this.native.empty().then(() => true as const),
        timeoutMs,
      )) ?? false
    );
  }

  /** Destroys the fast lane's connections (http.Server's are its own closeAllConnections'). */
  destroyConnections(): void {
    this.lane?.destroyAll();
    this.native?.destroyAll();
  }

  /** Puts a healthy child into the rotation. */
  add(address: BackendAddress): void {
    this.native?.add(address);
    this.rotation.add(address);
  }

  /** Takes a child out of the rotation, then waits up to `timeoutMs` for its in-flight exchanges. */
  retire(name: string, timeoutMs: number): Promise<boolean> {
    this.native?.retire(name);
    return this.rotation.retire(name, timeoutMs);
  }

  /** Closes every tunnel (WebSocket 1001, FIN for others); requests go on being served. */
  closeTunnels(): void {
    for (const backend of this.rotation.all()) backend.closeTunnels();
  }

  /** Forgets a stopped child and closes its connections. */
  forget(name: string): Promise<void> {
    this.native?.forget(name);
    return this.rotation.forget(name);
  }

  /** Closes every pool. Call after the server stopped and the exchanges drained. */
  async close(): Promise<void> {
    await Promise.all(this.rotation.all().map((b) => this.forget(b.name)));
    this.native?.close();
  }

  /** Answers a request liveroll itself cannot forward. */
  reject(res: ServerResponse, status: number, message: string): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const headers: Record<string, string> = { 'content-type': 'text/plain; charset=utf-8' };
    if (status === 503) headers['retry-after'] = String(this.options.retryAfterSeconds ?? 1);
    res.writeHead(status, headers);
    res.end(`${message}\n`);
  }
}

/**
 * Gives http.Server a connection the native lane handed back, with the bytes it read put back
 * in front (as the fast lane's hand-over does: see fast-lane.ts).
 */
function handBack(socket: Socket, data: Buffer, toServer: (socket: Socket) => void): void {
  socket.pause();
  if (data.length > 0) socket.unshift(data);
  toServer(socket);
  socket.on('data', () => {});
  socket.resume();
}
