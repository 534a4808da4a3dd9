/**
 * One connection of liveroll's HTTP/1.1 client (upstream.ts) to a child, carrying one exchange at
 * a time: the request written as one head string and its body, the response parsed by llhttp.
 */
import net from 'node:net';
import { createRequire } from 'node:module';
import { keepAliveMs, keepAliveValue } from './head-values.js';
import { ParserBinding, type ResponseParser } from './upstream-parser.js';
import { QuietClock } from './sweep.js';
import type {
  UpstreamControl,
  UpstreamHandler,
  UpstreamRequest,
  UpstreamSettings,
} from './upstream-types.js';
import { UpstreamError } from './upstream-types.js';

/** What a connection needs of its pool (upstream.ts). */
export interface ConnectionPool {
  readonly host: string;
  readonly port: number;
  /** The connection finished an exchange and may carry another. */
  idle(connection: Connection): void;
  /** The connection closed. */
  dropped(connection: Connection): void;
}

/** The longest an idle connection is kept when the child names no keep-alive timeout. */
const IDLE_MS = 4_000;

const binding = new ParserBinding(createRequire(import.meta.url));

/**
 * Bytes a connection reads into one buffer of its own, reused while no body chunk handed on
 * from it can still be in use. Node's default read makes a new buffer for every read, and a
 * stream event for it; a small response needs neither.
 */
const READ_SIZE = 64 * 1024;
/** A body chunk up to this size is lent off the read buffer, which then serves the next read. */
const LEND_MAX = 16 * 1024;

/** Chunked framing for a body whose length the client did not announce. */
function chunkHead(length: number): string {
  return `${length.toString(16)}\r\n`;
}

/** One connection to the child, carrying one exchange at a time. */
export class Connection implements UpstreamControl {
  readonly socket: net.Socket;
  private readonly parser: ResponseParser;
  private handler: UpstreamHandler | undefined;
  private phase: 'connect' | 'idle' | 'headers' | 'body' = 'connect';
  private requestDone = false;
  private closed = false;
  /** Detaches from the client's body (the exchange ended or failed before it was read whole). */
  private stopBody: () => void = () => {};
  /** How long this connection may stay idle, from what the child says (IDLE_MS at most). */
  idleMs = IDLE_MS;
  /** When the connection last went idle (Date.now()); the pool's sweep closes it idleMs later. */
  idleSince = 0;
  /** When the request was sent whole (Date.now()): the pool's sweep times the wait for headers. */
  private sentAt = 0;
  /** Moved by each read: the pool's sweep times silences inside a body from it. */
  private readonly quiet = new QuietClock();
  /** The last Keep-Alive value the child sent, and what it said in ms. */
  private keepAlive: string | undefined;
  /** The buffer the socket reads into. */
  private buffer = Buffer.allocUnsafe(READ_SIZE);
  /** A body chunk handed on is a slice of `buffer`: the next read needs a new one. */
  private lent = false;
  /** Reading stopped for a client that has not taken the last chunk yet. */
  private paused = false;

  constructor(
    private readonly pool: ConnectionPool,
    private readonly settings: UpstreamSettings,
  ) {
    this.socket = net.connect({
      host: pool.host,
      port: pool.port,
      noDelay: true,
      onread: {
        buffer: () => this.readBuffer(),
        callback: (length, buffer) => {
          this.onRead(length, buffer);
          return true;
        },
      },
    });
    // The socket's timeout covers the connect only. The waits of an exchange (for the headers,
    // and silences inside a body) are timed by the pool's sweep: a socket timeout is re-armed
    // on every read and write, which costs more than the sweep's look at a counter.
    this.socket.setTimeout(settings.connectTimeoutMs);
    this.socket.once('connect', () => this.socket.setTimeout(0));
    this.parser = binding.responseParser({
      headers: (status, headers, message) => this.onHeaders(status, headers, message),
      body: (chunk) => this.onBody(chunk),
      complete: (trailers) => this.onComplete(trailers),
    });
    this.socket.on('end', () => {
      if (this.handler !== undefined) this.parser.finish(); // a body that ends with the connection
      this.fail('UPSTREAM_CLOSED', 'the child closed the connection');
    });
    this.socket.on('timeout', () => {
      if (this.phase === 'connect') {
        this.fail('UPSTREAM_CONNECT_TIMEOUT', 'timed out waiting for the child (connect)');
      }
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

  /** The buffer for the next read: the same one unless part of it was handed on. */
  private readBuffer(): Buffer {
    if (this.lent) {
      this.lent = false;
      this.buffer = Buffer.allocUnsafe(READ_SIZE);
    }
    return this.buffer;
  }

  private onRead(length: number, buffer: Uint8Array): void {
    if (this.handler === undefined) return this.destroy(); // bytes nobody asked for
    this.quiet.touch();
    // Node reads into the buffer readBuffer() gave last; were it another, its bytes are copied.
    const data =
      buffer === this.buffer
        ? this.buffer.subarray(0, length)
        : Buffer.from(buffer.subarray(0, length));
    const err = this.parser.execute(data);
    if (err !== undefined) this.fail('UPSTREAM_BAD_RESPONSE', `bad response: ${err}`);
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
    const whole = Buffer.isBuffer(body);
    const streamed = body !== undefined && !whole;
    const chunked = streamed && body.headers['content-length'] === undefined;
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
    // The headers timeout counts from here: no timeout while a body streams.
    if (this.phase === 'headers') this.sentAt = Date.now();
  }

  /**
   * Called by the pool every few hundred ms: closes this connection if it has been idle for
   * idleMs, or fails its exchange if the child has not answered within the headers timeout
   * (at most one sweep late) or has sent nothing of a body for the body timeout (two).
   */
  sweep(now: number): void {
    if (this.phase === 'idle') {
      if (now - this.idleSince >= this.idleMs) this.destroy();
      return;
    }
    if (this.phase === 'headers') {
      const limit = this.settings.headersTimeoutMs;
      if (this.requestDone && limit > 0 && now - this.sentAt >= limit) {
        this.fail('UPSTREAM_HEADERS_TIMEOUT', 'timed out waiting for the child (headers)');
      }
      return;
    }
    if (this.phase !== 'body') return;
    const limit = this.settings.bodyTimeoutMs;
    if (limit > 0 && this.quiet.quietFor(now) >= limit) {
      this.fail('UPSTREAM_BODY_TIMEOUT', 'timed out waiting for the child (body)');
    }
  }

  private onHeaders(status: number, headers: string[], message: string): void {
    if (this.handler === undefined) return this.destroy(); // a second response to one request
    this.phase = 'body';
    // The same value comes with every response: it is read once.
    const keepAlive = keepAliveValue(headers);
    if (keepAlive !== undefined && keepAlive !== this.keepAlive) {
      this.keepAlive = keepAlive;
      const hint = keepAliveMs(keepAlive);
      if (hint !== undefined) this.idleMs = Math.max(0, Math.min(IDLE_MS, hint - 1_000));
    }
    this.handler.onResponseStart(status, headers, message);
  }

  private onBody(chunk: Buffer): void {
    const handler = this.handler;
    if (handler === undefined) return;
    let transient = false;
    if (chunk.buffer === this.buffer.buffer) {
      // A slice of the read buffer: a small one is lent for the call only (the handler copies
      // it if it keeps it), so the buffer serves the next read; a large one is handed on as it
      // is, and the next read gets a new buffer.
      if (chunk.length <= LEND_MAX) transient = true;
      else this.lent = true;
    }
    if (!handler.onResponseData(chunk, transient)) {
      this.paused = true;
      this.socket.pause();
    }
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
    this.unpause();
    this.phase = 'idle';
    // The pool's sweep closes it when idleMs have passed.
    this.idleSince = Date.now();
    this.pool.idle(this);
  }

  /** Lets the paused response of `handler` flow again, if this connection still carries it. */
  resume(handler: UpstreamHandler): void {
    if (this.handler === handler) this.unpause();
  }

  /** Resumes reading if a response paused it (a resume() of a flowing socket costs as much). */
  private unpause(): void {
    if (!this.paused) return;
    this.paused = false;
    this.socket.resume();
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
