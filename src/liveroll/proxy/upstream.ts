/**
 * liveroll's HTTP/1.1 client to one child: a pool of keep-alive connections. A request is one
 * head string written to a socket, then its body; the response is parsed by llhttp through
 * Node's own binding (the parser behind `http.request`), and each body chunk is handed on as
 * the slice the socket read. No stream objects are made per request, which is where a general
 * client (undici, `http.request`) spends most of a small request's time.
 *
 * One request at a time per connection, no pipelining. An idle connection is closed before the
 * child would close it (its `Keep-Alive: timeout=N` less a second, 4 s at most), so a request is
 * rarely written to a connection the child is closing.
 */
import net from 'node:net';
import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import { ParserBinding, type ResponseParser } from './upstream-parser.js';

/** What a dispatch reports to its owner, in this order: start, response start, data, end or error. */
export interface UpstreamHandler {
  /** The request is being written to a connection: from here on the child may have seen it. */
  onRequestStart(): void;
  /** The final status line and headers (1xx responses are skipped). */
  onResponseStart(status: number, rawHeaders: string[], message: string): void;
  /** A chunk of the body; return false to pause the connection until `resume()`. */
  onResponseData(chunk: Buffer): boolean;
  /** The response ended; `trailers` is a flat `[name, value, ...]` list, often empty. */
  onResponseEnd(trailers: string[]): void;
  /** The exchange failed; `err.code` says how (see UpstreamError). */
  onResponseError(err: UpstreamError): void;
}

/** A request to forward: the head's parts and, when it has one, the body to stream. */
export interface UpstreamRequest {
  method: string;
  path: string;
  /** Flat `[name, value, ...]`, already free of hop-by-hop headers. */
  headers: string[];
  /**
   * The body: the client's request, read as it streams, or the whole body already read (its
   * Content-Length among `headers`); undefined when there is none.
   */
  body?: IncomingMessage | Buffer | undefined;
}

/** The hold an exchange's owner has on it. */
export interface UpstreamControl {
  abort(reason: string): void;
  /** Lets a response paused by `onResponseData` returning false flow again. */
  resume(): void;
}

/** Settings of a pool; durations in ms, 0 disables. */
export interface UpstreamSettings {
  connectTimeoutMs: number;
  /** From the end of the request to the response's headers. */
  headersTimeoutMs: number;
  /** Longest silence inside a response body. */
  bodyTimeoutMs: number;
}

/**
 * A failed exchange with a child. `code` says why: the socket's own code (ECONNREFUSED,
 * ECONNRESET, EPIPE) or one of ours: UPSTREAM_CONNECT_TIMEOUT, UPSTREAM_HEADERS_TIMEOUT, UPSTREAM_BODY_TIMEOUT, UPSTREAM_CLOSED
 * (the child closed before the response ended), UPSTREAM_BAD_RESPONSE (bytes that are not
 * HTTP), UPSTREAM_ABORTED (the client left), UPSTREAM_POOL_CLOSED (the child was forgotten).
 */
export class UpstreamError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

/** The longest an idle connection is kept when the child names no keep-alive timeout. */
const IDLE_MS = 4_000;

const binding = new ParserBinding(createRequire(import.meta.url));

/** The child's `Keep-Alive: timeout=N`, in ms, when it sent one. */
function keepAliveHint(headers: readonly string[]): number | undefined {
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i] ?? '';
    if (name.length !== 10 || name.toLowerCase() !== 'keep-alive') continue;
    const seconds = /timeout=(\d+)/i.exec(headers[i + 1] ?? '');
    if (seconds?.[1] !== undefined) return Number(seconds[1]) * 1_000;
  }
  return undefined;
}

/** Chunked framing for a body whose length the client did not announce. */
function chunkHead(length: number): string {
  return `${length.toString(16)}\r\n`;
}

/** One connection to the child, carrying one exchange at a time. */
class Connection {
  readonly socket: net.Socket;
  private readonly parser: ResponseParser;
  private handler: UpstreamHandler | undefined;
  private phase: 'connect' | 'idle' | 'headers' | 'body' = 'connect';
  private requestDone = false;
  private closed = false;
  /** Detaches from the client's body (the exchange ended or failed before it was read whole). */
  private stopBody: () => void = () => {};
  private idleMs = IDLE_MS;

  constructor(
    private readonly pool: UpstreamPool,
    private readonly settings: UpstreamSettings,
  ) {
    this.socket = net.connect({ host: pool.host, port: pool.port, noDelay: true });
    this.socket.setTimeout(settings.connectTimeoutMs);
    this.parser = binding.responseParser({
      headers: (status, headers, message) => this.onHeaders(status, headers, message),
      body: (chunk) => this.onBody(chunk),
      complete: (trailers) => this.onComplete(trailers),
    });
    this.socket.on('data', (data: Buffer) => {
      if (this.handler === undefined) return this.destroy(); // bytes nobody asked for
      const err = this.parser.execute(data);
      if (err !== undefined) this.fail('UPSTREAM_BAD_RESPONSE', `bad response: ${err}`);
    });
    this.socket.on('end', () => {
      if (this.handler !== undefined) this.parser.finish(); // a body that ends with the connection
      this.fail('UPSTREAM_CLOSED', 'the child closed the connection');
    });
    this.socket.on('timeout', () => {
      if (this.phase === 'idle') return this.destroy();
      const code =
        this.phase === 'connect'
          ? 'UPSTREAM_CONNECT_TIMEOUT'
          : this.phase === 'headers'
            ? 'UPSTREAM_HEADERS_TIMEOUT'
            : 'UPSTREAM_BODY_TIMEOUT';
      this.fail(code, `timed out waiting for the child (${this.phase})`);
    });
    this.socket.on('error', (err: NodeJS.ErrnoException) =>
      this.fail(err.code ?? 'UPSTREAM_CLOSED', err.message),
    );
    this.socket.on('close', () => {
      this.fail('UPSTREAM_CLOSED', 'the connection to the child closed');
      this.closed = true;
      this.pool.dropped(this);
      this.parser.close();
    });
  }

  /** Starts an exchange: at once on an idle connection, on connect for a new one. */
  send(request: UpstreamRequest, handler: UpstreamHandler): void {
    this.handler = handler;
    this.requestDone = false;
    this.parser.skipBody = request.method === 'HEAD';
    if (this.phase === 'connect') this.socket.once('connect', () => this.write(request));
    else this.write(request);
  }

  private write(request: UpstreamRequest): void {
    const handler = this.handler;
    if (handler === undefined) return;
    this.phase = 'headers';
    const { headers, body } = request;
    // No timeout while a body is sent; the headers timeout starts once it is.
    this.socket.setTimeout(0);
    const whole = Buffer.isBuffer(body);
    const chunked = body !== undefined && !whole && body.headers['content-length'] === undefined;
    let head = `${request.method} ${request.path} HTTP/1.1\r\n`;
    for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
    // Content-Length is among the forwarded headers; Transfer-Encoding, hop-by-hop, is not:
    // a body of unannounced length is chunked again on this hop.
    if (chunked) head += 'transfer-encoding: chunked\r\n';
    handler.onRequestStart();
    if (this.handler !== handler) return; // aborted by the start callback
    // Header values come from Node's parser as latin1 strings: write them back byte for byte.
    if (whole) {
      this.socket.cork();
      this.socket.write(`${head}\r\n`, 'latin1');
      this.socket.write(body);
      this.socket.uncork();
      return this.requestSent();
    }
    this.socket.write(`${head}\r\n`, 'latin1');
    if (body === undefined) return this.requestSent();
    const onData = (chunk: Buffer): void => {
      if (chunked) this.socket.write(chunkHead(chunk.length));
      const more = this.socket.write(chunk);
      if (chunked) this.socket.write('\r\n');
      if (!more && !body.isPaused()) {
        body.pause();
        this.socket.once('drain', () => body.resume());
      }
    };
    const onEnd = (): void => {
      stop();
      if (chunked) this.socket.write('0\r\n\r\n');
      this.requestSent();
    };
    const stop = (): void => {
      body.off('data', onData);
      body.off('end', onEnd);
      this.stopBody = () => {};
    };
    this.stopBody = stop;
    body.on('data', onData);
    body.on('end', onEnd);
  }

  private requestSent(): void {
    this.requestDone = true;
    if (this.phase === 'headers') this.socket.setTimeout(this.settings.headersTimeoutMs);
  }

  private onHeaders(status: number, headers: string[], message: string): void {
    if (this.handler === undefined) return this.destroy(); // a second response to one request
    this.phase = 'body';
    this.socket.setTimeout(this.settings.bodyTimeoutMs);
    const hint = keepAliveHint(headers);
    if (hint !== undefined) this.idleMs = Math.max(0, Math.min(IDLE_MS, hint - 1_000));
    this.handler.onResponseStart(status, headers, message);
  }

  private onBody(chunk: Buffer): void {
    const handler = this.handler;
    if (handler !== undefined && !handler.onResponseData(chunk)) this.socket.pause();
  }

  private onComplete(trailers: string[]): void {
    const handler = this.handler;
    this.handler = undefined;
    // A response that came before the request's body was sent whole: the rest of that body
    // cannot be skipped on this connection, so neither is read and the connection goes.
    if (!this.requestDone) {
      this.stopBody();
      this.destroy();
    } else if (!this.parser.keepAlive) this.socket.end();
    else this.release();
    handler?.onResponseEnd(trailers);
  }

  /** Back to the pool when both directions are done and the connection may be kept. */
  private release(): void {
    if (this.closed || this.socket.destroyed) return;
    // The child closes idle connections within a second: one more request would race it.
    if (this.idleMs <= 0) return this.destroy();
    // The last chunk may have paused the socket for a client that has not drained it yet:
    // that client's backpressure is not the next exchange's.
    this.socket.resume();
    this.phase = 'idle';
    this.socket.setTimeout(this.idleMs);
    this.pool.idle(this);
  }

  /** Lets the paused response of `handler` flow again, if this connection still carries it. */
  resume(handler: UpstreamHandler): void {
    if (this.handler === handler) this.socket.resume();
  }

  /** Aborts the exchange of `handler` if this connection still carries it. */
  abort(handler: UpstreamHandler, reason: string): void {
    if (this.handler === handler) this.fail('UPSTREAM_ABORTED', reason);
  }

  /** Ends the exchange in progress, if any, with `code`; the connection cannot be reused. */
  fail(code: string, message: string): void {
    const handler = this.handler;
    this.handler = undefined;
    this.stopBody();
    if (!this.closed) this.destroy();
    handler?.onResponseError(new UpstreamError(code, message));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** The connections to one child. */
export class UpstreamPool {
  private readonly idleList: Connection[] = [];
  private readonly open = new Set<Connection>();
  private destroyed = false;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly settings: UpstreamSettings,
  ) {}

  /** Sends `request`; the returned control aborts the exchange or resumes a paused response. */
  dispatch(request: UpstreamRequest, handler: UpstreamHandler): UpstreamControl {
    if (this.destroyed) {
      queueMicrotask(() =>
        handler.onResponseError(new UpstreamError('UPSTREAM_POOL_CLOSED', 'the child is gone')),
      );
      return { abort: () => {}, resume: () => {} };
    }
    let connection = this.idleList.pop();
    if (connection === undefined) {
      connection = new Connection(this, this.settings);
      this.open.add(connection);
    }
    connection.send(request, handler);
    const used = connection;
    return { abort: (reason) => used.abort(handler, reason), resume: () => used.resume(handler) };
  }

  /** Called by a connection that finished an exchange and may carry another. */
  idle(connection: Connection): void {
    if (this.destroyed) connection.destroy();
    else this.idleList.push(connection);
  }

  /** Called by a connection that closed. */
  dropped(connection: Connection): void {
    this.open.delete(connection);
    const at = this.idleList.indexOf(connection);
    if (at >= 0) this.idleList.splice(at, 1);
  }

  /** Closes every connection; exchanges still running fail with UPSTREAM_POOL_CLOSED. */
  destroy(): Promise<void> {
    this.destroyed = true;
    const closing = [...this.open].map(
      (c) =>
        new Promise<void>((resolve) => {
          c.socket.once('close', () => resolve());
          c.fail('UPSTREAM_POOL_CLOSED', 'the child is gone');
        }),
    );
    return Promise.all(closing).then(() => {});
  }
}
