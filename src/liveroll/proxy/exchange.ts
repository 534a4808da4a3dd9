/**
 * One client request forwarded to a child through liveroll's upstream client (upstream.ts), with
 * the retry rules described in proxy.ts, and the response streamed back with backpressure.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { describeError } from '../errors.js';
import type { ProxyContext } from './context.js';
import { forwardRequestHeaders, forwardResponseHeaders } from './forward-headers.js';
import { isName } from './head-values.js';
import type { Backend } from './rotation.js';
import type { UpstreamControl, UpstreamError, UpstreamHandler } from './upstream.js';

/** Methods that may be sent twice without changing the outcome (RFC 9110 9.2.2). */
const idempotentMethods = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Errors that mean the connection to the child broke, as opposed to a timeout or a bad request. */
const connectionErrors = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'UPSTREAM_CLOSED',
  'UPSTREAM_CONNECT_TIMEOUT',
]);

/** More than one Host header: RFC 9112 3.2 says such a request gets 400. */
export function hostCount(raw: readonly string[]): number {
  let count = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] ?? '';
    if (isName(name, 'host')) count++;
  }
  return count;
}

/**
 * The client's half of an exchange: the request, and where its answer goes. Node's http.Server
 * gives one (HttpClient below), and so does the proxy's fast lane (fast-lane.ts).
 */
export interface ClientSide {
  readonly method: string;
  /** The request target, origin-form. */
  readonly url: string;
  /** The body: streamed from the client, or already read whole; undefined when there is none. */
  readonly body: IncomingMessage | Buffer | undefined;
  /** The headers to send to a child (forward-headers.ts). */
  forwardHeaders(): string[];
  /** Starts the response with the child's status and headers (raw, hop-by-hop included). */
  respond(status: number, rawHeaders: readonly string[], message: string): void;
  /**
   * Writes a chunk of the body; false asks the writer to wait for `onceDrained`. A `transient`
   * chunk is valid during the call only: one that is kept (queued in a socket) is copied.
   */
  write(chunk: Buffer, transient: boolean): boolean;
  /** Calls `listener` once when the client has taken what was written. */
  onceDrained(listener: () => void): void;
  /** Ends the response, with the child's trailers (a flat list, often empty). */
  end(trailers: string[]): void;
  /** Cuts a response that has started. */
  destroy(err: Error): void;
  /** Answers with liveroll's own status and message, or cuts a response that has started. */
  reject(status: number, message: string): void;
  /** Calls `exchange.clientLeft()` once if the client leaves before the response ended. */
  onGone(exchange: Exchange): void;
}

/** A request Node's http.Server parsed, answered through its ServerResponse. */
export class HttpClient implements ClientSide {
  readonly method: string;
  readonly url: string;
  readonly body: IncomingMessage | undefined;

  constructor(
    private readonly proxy: ProxyContext,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
  ) {
    this.method = req.method ?? 'GET';
    this.url = req.url ?? '/';
    const length = req.headers['content-length'];
    const hasBody =
      req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
    this.body = hasBody ? req : undefined;
  }

  forwardHeaders(): string[] {
    return forwardRequestHeaders(this.req, {
      trustForwardHeaders: this.proxy.options.trustForwardHeaders,
      upgrade: false,
    });
  }

  respond(status: number, rawHeaders: readonly string[], message: string): void {
    const out = forwardResponseHeaders(rawHeaders);
    if (message) this.res.writeHead(status, message, out);
    else this.res.writeHead(status, out);
  }

  write(chunk: Buffer, transient: boolean): boolean {
    return this.res.write(transient ? Buffer.from(chunk) : chunk);
  }

  onceDrained(listener: () => void): void {
    this.res.once('drain', listener);
  }

  end(trailers: string[]): void {
    // Trailers (a checksum, gRPC-web's status) go on to the client after the body.
    if (trailers.length > 0) {
      const pairs: [string, string][] = [];
      for (let i = 0; i < trailers.length; i += 2) pairs.push([trailers[i]!, trailers[i + 1]!]);
      this.res.addTrailers(pairs);
    }
    this.res.end();
  }

  destroy(err: Error): void {
    this.res.destroy(err);
  }

  reject(status: number, message: string): void {
    this.proxy.reject(this.res, status, message);
  }

  onGone(exchange: Exchange): void {
    this.res.on('close', () => {
      if (!this.res.writableFinished) exchange.clientLeft();
    });
  }
}

/** Forwards a request Node's http.Server parsed, after the checks its parser leaves to us. */
export function forwardHttpRequest(
  proxy: ProxyContext,
  req: IncomingMessage,
  res: ServerResponse,
): void {
  const client = new HttpClient(proxy, req, res);
  if (!client.url.startsWith('/')) {
    client.reject(400, 'liveroll: only origin-form request targets are proxied');
  } else if (hostCount(req.rawHeaders) > 1) {
    client.reject(400, 'liveroll: a request has one Host header at most');
  } else {
    new Exchange(proxy, client).start();
  }
}

/** One client request, forwarded to one child or, when allowed, retried on another. */
export class Exchange {
  private readonly tried: Backend[] = [];
  private readonly idempotent: boolean;
  private headers: string[] | undefined;
  private bodyStarted = false;
  private responseStarted = false;
  clientGone = false;
  private attempt: Attempt | undefined;

  constructor(
    readonly proxy: ProxyContext,
    readonly client: ClientSide,
  ) {
    this.idempotent = idempotentMethods.has(client.method);
  }

  start(): void {
    this.client.onGone(this);
    this.send();
  }

  /** The client left before its response ended. */
  clientLeft(): void {
    this.clientGone = true;
    this.attempt?.abort('the client closed the connection');
  }

  /** Sends the request to the next child not tried yet. */
  private send(): void {
    const backend = this.proxy.rotation.pick(this.tried);
    if (backend === undefined) {
      if (this.tried.length === 0) this.client.reject(503, 'liveroll: no healthy child');
      else this.client.reject(502, 'liveroll: no child could be reached');
      return;
    }
    this.tried.push(backend);
    this.headers ??= this.client.forwardHeaders();
    const attempt = new Attempt(this, backend);
    this.attempt = attempt;
    // Every failure, a refused connection included, comes back through the handler.
    attempt.control = backend.pool.dispatch(
      {
        path: this.client.url,
        method: this.client.method,
        headers: this.headers,
        body: this.client.body,
      },
      attempt,
    );
  }

  /** The request reached a connection: a body read from here on cannot be sent again. */
  requestStarted(): void {
    if (this.client.body !== undefined) this.bodyStarted = true;
  }

  /** Called when an attempt failed before a response started; retries or answers 502/504. */
  failed(attempt: Attempt, err: UpstreamError): void {
    if (this.clientGone) return;
    const code = err.code;
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
        method: this.client.method,
        url: this.client.url,
        err: describeError(err),
        retry: canRetry,
      },
      'proxied request failed',
    );
    if (canRetry) return this.send();
    if (this.responseStarted) {
      this.client.destroy(err);
      return;
    }
    const timedOut = code === 'UPSTREAM_HEADERS_TIMEOUT';
    this.client.reject(timedOut ? 504 : 502, `liveroll: the child failed (${code || err.message})`);
  }

  /** Starts the client's response from the child's status and headers. */
  respond(status: number, rawHeaders: readonly string[], message: string): void {
    this.responseStarted = true;
    this.client.respond(status, rawHeaders, message);
  }
}

/** One try of an exchange on one child. */
class Attempt implements UpstreamHandler {
  /** The request began to be written to a connection: the child may have seen it. */
  started = false;
  control: UpstreamControl | undefined;
  private waitingForDrain = false;
  /** The exchange is counted in on its child until the attempt ends. */
  private counted = true;

  constructor(
    private readonly exchange: Exchange,
    readonly backend: Backend,
  ) {
    backend.enter();
  }

  private finish(): void {
    if (!this.counted) return;
    this.counted = false;
    this.backend.leave();
  }

  abort(reason: string): void {
    this.control?.abort(this, reason);
  }

  onRequestStart(): void {
    this.started = true;
    this.exchange.requestStarted();
    if (this.exchange.clientGone) this.control?.abort(this, 'the client closed the connection');
  }

  onResponseStart(status: number, rawHeaders: string[], message: string): void {
    // The raw list keeps the child's order, spelling and repeated headers.
    this.exchange.respond(status, rawHeaders, message);
  }

  onResponseData(chunk: Buffer, transient: boolean): boolean {
    const client = this.exchange.client;
    // A chunk that comes while we wait (the rest of one read) is written all the same.
    if (client.write(chunk, transient) || this.waitingForDrain) return true;
    this.waitingForDrain = true;
    client.onceDrained(this.drained);
    return false;
  }

  private readonly drained = (): void => {
    this.waitingForDrain = false;
    this.control?.resume(this);
  };

  onResponseEnd(trailers: string[]): void {
    this.finish();
    this.exchange.client.end(trailers);
  }

  onResponseError(err: UpstreamError): void {
    this.finish();
    this.exchange.failed(this, err);
  }
}
