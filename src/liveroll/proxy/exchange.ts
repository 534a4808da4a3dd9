/**
 * One client request forwarded to a child through liveroll's upstream client (upstream.ts), with
 * the retry rules described in proxy.ts, and the response streamed back with backpressure.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { describeError } from '../errors.js';
import type { ProxyContext } from './context.js';
import { forwardRequestHeaders, forwardResponseHeaders } from './forward-headers.js';
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
function hostCount(raw: readonly string[]): number {
  let count = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] ?? '';
    if (name.length === 4 && name.toLowerCase() === 'host') count++;
  }
  return count;
}

/** One client request, forwarded to one child or, when allowed, retried on another. */
export class Exchange {
  private readonly tried = new Set<Backend>();
  private readonly idempotent: boolean;
  private readonly hasBody: boolean;
  private headers: string[] | undefined;
  private bodyStarted = false;
  private responseStarted = false;
  clientGone = false;
  private attempt: Attempt | undefined;

  constructor(
    readonly proxy: ProxyContext,
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
    if (hostCount(this.req.rawHeaders) > 1) {
      this.proxy.reject(this.res, 400, 'liveroll: a request has one Host header at most');
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
    const attempt = new Attempt(this, backend);
    this.attempt = attempt;
    // Every failure, a refused connection included, comes back through the handler.
    attempt.control = backend.pool.dispatch(
      {
        path: this.req.url ?? '/',
        method: this.req.method ?? 'GET',
        headers: this.headers,
        body: this.hasBody ? this.req : undefined,
      },
      attempt,
    );
  }

  /** The request reached a connection: a body read from here on cannot be sent again. */
  requestStarted(): void {
    if (this.hasBody) this.bodyStarted = true;
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
    const timedOut = code === 'UPSTREAM_HEADERS_TIMEOUT';
    this.proxy.reject(
      this.res,
      timedOut ? 504 : 502,
      `liveroll: the child failed (${code || err.message})`,
    );
  }

  /** Starts the client's response from the child's status and headers. */
  respond(status: number, rawHeaders: readonly string[], message?: string): void {
    this.responseStarted = true;
    const out = forwardResponseHeaders(rawHeaders);
    if (message) this.res.writeHead(status, message, out);
    else this.res.writeHead(status, out);
  }
}

/** One try of an exchange on one child. */
class Attempt implements UpstreamHandler {
  /** The request began to be written to a connection: the child may have seen it. */
  started = false;
  control: UpstreamControl | undefined;
  private waitingForDrain = false;
  readonly finish: () => void;

  constructor(
    private readonly exchange: Exchange,
    readonly backend: Backend,
  ) {
    this.finish = backend.begin();
  }

  abort(reason: Error): void {
    this.control?.abort(reason.message);
  }

  onRequestStart(): void {
    this.started = true;
    this.exchange.requestStarted();
    if (this.exchange.clientGone) this.control?.abort('the client closed the connection');
  }

  onResponseStart(status: number, rawHeaders: string[], message: string): void {
    // The raw list keeps the child's order, spelling and repeated headers.
    this.exchange.respond(status, rawHeaders, message);
  }

  onResponseData(chunk: Buffer): boolean {
    const res = this.exchange.res;
    if (res.write(chunk) || this.waitingForDrain) return true;
    this.waitingForDrain = true;
    res.once('drain', () => {
      this.waitingForDrain = false;
      this.control?.resume();
    });
    return false;
  }

  onResponseEnd(trailers: string[]): void {
    this.finish();
    // Trailers (a checksum, gRPC-web's status) go on to the client after the body.
    if (trailers.length > 0) {
      const pairs: [string, string][] = [];
      for (let i = 0; i < trailers.length; i += 2) pairs.push([trailers[i]!, trailers[i + 1]!]);
      this.exchange.res.addTrailers(pairs);
    }
    this.exchange.res.end();
  }

  onResponseError(err: UpstreamError): void {
    this.finish();
    this.exchange.failed(this, err);
  }
}
