/**
 * The reverse proxy on the public port: round robin over the healthy children, bodies streamed
 * both ways with backpressure (nothing is buffered whole, so an upload of any size or an
 * endless SSE stream costs a few chunks of memory), WebSocket and other upgrades tunnelled.
 *
 * Retries: a request goes to another child only if the first one provably never received it
 * (undici never started writing it: connection refused, connect timeout), or if its method is
 * idempotent and the connection failed before any response byte arrived, unless that child
 * was being retired: then it was cut by our own stop after the drain timeout, and is answered
 * 502 rather than run a second time. A request whose body
 * has started to flow is never retried (the body cannot be replayed), and a response the child
 * sent, 502 included, is never second-guessed. With no healthy child the answer is 503 with
 * `Retry-After`.
 */
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import fs from 'node:fs';
import type { Duplex, Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import { describeError } from './errors.js';
import { forwardRequestHeaders, forwardResponseHeaders } from './forward-headers.js';
import { forwardExpectContinue } from './proxy-continue.js';
import { tunnelUpgrade } from './proxy-tunnel.js';
import { Rotation, type Backend, type BackendAddress } from './rotation.js';

/** Proxy settings; durations in milliseconds, 0 disables a timeout. */
export interface ProxyOptions {
  /** Time a child has to send response headers. */
  headersTimeoutMs: number;
  /** Longest silence inside a body, in either direction. */
  idleTimeoutMs: number;
  /** Time to open a connection to a child. */
  connectTimeoutMs?: number;
  /** Extend incoming X-Forwarded-* headers instead of replacing them. */
  trustForwardHeaders: boolean;
  /** Seconds sent in `Retry-After` with a 503. */
  retryAfterSeconds?: number;
  /** Time a client has to send a request's headers (default 30 s; 0 disables). */
  clientHeadersTimeoutMs?: number;
  /** Most client connections at once (default: from the descriptor limit, see connectionCap). */
  maxConnections?: number;
  logger: Logger;
}

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

/** Methods that may be sent twice without changing the outcome (RFC 9110 9.2.2). */
const idempotentMethods = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Errors that mean the connection to the child broke, as opposed to a timeout or a bad request. */
const connectionErrors = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** undici refusing the request itself (a duplicate Host header, say): no child would take it. */
const badRequestErrors = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED']);

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

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/** The reverse proxy: an http.Server plus the rotation of children behind it. */
export class ReverseProxy {
  readonly server: Server;
  readonly rotation: Rotation;
  readonly options: ProxyOptions;

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
    });
    this.server.timeout = options.idleTimeoutMs;
    this.server.maxConnections = options.maxConnections ?? connectionCap();
    this.server.on('request', (req, res) => new Exchange(this, req, res).start());
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

  /** Puts a healthy child into the rotation. */
  add(address: BackendAddress): void {
    this.rotation.add(address);
  }

  /** Takes a child out of the rotation, then waits up to `timeoutMs` for its in-flight exchanges. */
  retire(name: string, timeoutMs: number): Promise<boolean> {
    return this.rotation.retire(name, timeoutMs);
  }

  /** Closes every tunnel (WebSocket 1001, FIN for others); requests go on being served. */
  closeTunnels(): void {
    for (const backend of this.rotation.all()) backend.closeTunnels();
  }

  /** Forgets a stopped child and closes its connections. */
  forget(name: string): Promise<void> {
    return this.rotation.forget(name);
  }

  /** Closes every pool. Call after the server stopped and the exchanges drained. */
  async close(): Promise<void> {
    await Promise.all(this.rotation.all().map((b) => this.rotation.forget(b.name)));
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

/** One client request, forwarded to one child or, when allowed, retried on another. */
class Exchange {
  private readonly tried = new Set<Backend>();
  private readonly idempotent: boolean;
  private readonly hasBody: boolean;
  private headers: string[] | undefined;
  private bodyStarted = false;
  private responseStarted = false;
  clientGone = false;
  private attempt: Attempt | undefined;

  constructor(
    readonly proxy: ReverseProxy,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
  ) {
    const method = req.method ?? 'GET';
    this.idempotent = idempotentMethods.has(method);
    const length = req.headers['content-length'];
    this.hasBody =
      req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
  }

  start(): void {
    this.res.on('close', () => {
      if (this.res.writableFinished) return;
      this.clientGone = true;
      this.attempt?.abort(new Error('the client closed the connection'));
    });
    if (!(this.req.url ?? '').startsWith('/')) {
      this.proxy.reject(this.res, 400, 'liveroll: only origin-form request targets are proxied');
      return;
    }
    this.send();
  }

  /** Sends the request to the next child not tried yet. */
  private send(): void {
    const backend = this.proxy.rotation.pick(this.tried);
    if (backend === undefined) {
      if (this.tried.size === 0) this.proxy.reject(this.res, 503, 'liveroll: no healthy child');
      else this.proxy.reject(this.res, 502, 'liveroll: no child could be reached');
      return;
    }
    this.tried.add(backend);
    this.headers ??= forwardRequestHeaders(this.req, {
      trustForwardHeaders: this.proxy.options.trustForwardHeaders,
      upgrade: false,
    });
    this.attempt = new Attempt(this, backend);
    const options: Dispatcher.DispatchOptions = {
      path: this.req.url ?? '/',
      method: this.req.method ?? 'GET',
      headers: this.headers,
      // An async generator: undici pulls it only after the request line and headers are
      // written, and the first pull marks the body as no longer replayable.
      body: this.hasBody ? (this.readBody() as unknown as Readable) : null,
    };
    // undici reports every failure, a refused request included, through the handler.
    backend.pool.dispatch(options, this.attempt);
  }

  private async *readBody(): AsyncGenerator<Buffer> {
    this.bodyStarted = true;
    // destroyOnReturn false: if the child fails mid-upload, the client must still get our 502.
    for await (const chunk of this.req.iterator({ destroyOnReturn: false })) yield chunk as Buffer;
  }

  /** Called when an attempt failed before a response started; retries or answers 502/504. */
  failed(attempt: Attempt, err: Error): void {
    if (this.clientGone) return;
    const code = errorCode(err);
    if (badRequestErrors.has(code)) {
      this.proxy.options.logger.debug({ err: describeError(err) }, 'request cannot be forwarded');
      this.proxy.reject(this.res, 400, 'liveroll: the request cannot be forwarded');
      return;
    }
    const neverSent = !attempt.started;
    // A request cut by the stop of a child we retired ran there until its stop (past the
    // drain timeout): sent again, its handler would run twice. Only a crash is retried.
    const stoppedByUs = attempt.backend.retired;
    const canRetry =
      !this.responseStarted &&
      !this.bodyStarted &&
      (neverSent || (this.idempotent && connectionErrors.has(code) && !stoppedByUs));
    const log = this.proxy.options.logger;
    log.warn(
      {
        child: attempt.backend.name,
        method: this.req.method,
        url: this.req.url,
        err: describeError(err),
        retry: canRetry,
      },
      'proxied request failed',
    );
    if (canRetry) return this.send();
    if (this.responseStarted) {
      this.res.destroy(err);
      return;
    }
    const timedOut = code === 'UND_ERR_HEADERS_TIMEOUT';
    this.proxy.reject(
      this.res,
      timedOut ? 504 : 502,
      `liveroll: the child failed (${code || err.message})`,
    );
  }

  /** Starts the client's response from the child's status and headers. */
  respond(status: number, rawHeaders: readonly (Buffer | string)[], message?: string): void {
    this.responseStarted = true;
    const out = forwardResponseHeaders(rawHeaders);
    if (message) this.res.writeHead(status, message, out);
    else this.res.writeHead(status, out);
  }
}

/** One try of an exchange on one child: an undici dispatch handler. */
class Attempt implements Dispatcher.DispatchHandler {
  /** undici began writing the request to a connection. */
  started = false;
  private controller: Dispatcher.DispatchController | undefined;
  private waitingForDrain = false;
  readonly finish: () => void;

  constructor(
    private readonly exchange: Exchange,
    readonly backend: Backend,
  ) {
    this.finish = backend.begin();
  }

  abort(reason: Error): void {
    this.controller?.abort(reason);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    this.started = true;
    if (this.exchange.clientGone) controller.abort(new Error('the client closed the connection'));
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    status: number,
    headers: IncomingHttpHeaders,
    message?: string,
  ): void {
    if (status < 200) return;
    // The raw list keeps the child's order, spelling and repeated headers.
    const raw = controller.rawHeaders;
    this.exchange.respond(status, Array.isArray(raw) ? raw : flatten(headers), message);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const res = this.exchange.res;
    if (res.write(chunk) || this.waitingForDrain) return;
    this.waitingForDrain = true;
    controller.pause();
    res.once('drain', () => {
      this.waitingForDrain = false;
      controller.resume();
    });
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    this.finish();
    // Trailers (a checksum, gRPC-web's status) go on to the client after the body.
    if (trailers !== undefined && Object.keys(trailers).length > 0) {
      this.exchange.res.addTrailers(trailers);
    }
    this.exchange.res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.finish();
    this.exchange.failed(this, err);
  }
}

/** A header object as a flat `[name, value, ...]` list. */
function flatten(headers: IncomingHttpHeaders): string[] {
  const out: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (Array.isArray(value)) for (const v of value) out.push(name, v);
    else if (value !== undefined) out.push(name, value);
  }
  return out;
}
