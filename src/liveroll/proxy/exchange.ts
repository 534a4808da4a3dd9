/**
 * One client request forwarded to a child through undici, with the retry rules described in
 * proxy.ts, and the response streamed back with backpressure.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { describeError } from '../errors.js';
import type { ProxyContext } from './context.js';
import { forwardRequestHeaders, forwardResponseHeaders } from './forward-headers.js';
import type { Backend } from './rotation.js';

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

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
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
