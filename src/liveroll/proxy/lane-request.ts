/**
 * One request of the proxy's fast lane (fast-lane.ts), as the client side of an Exchange: the
 * headers it sends to a child, and the response written straight to the client's socket (the
 * child's headers minus hop-by-hop ones, a Date when the child sent none, chunked framing when
 * the child's body has no length, and trailers after a chunked body).
 */
import { STATUS_CODES } from 'node:http';
import type net from 'node:net';
import type { ProxyOptions } from './context.js';
import type { ClientSide, Exchange } from './exchange.js';
import { forwardRawHeaders, responseHeadLines, type HeadFacts } from './forward-headers.js';
import type { RequestHead } from './upstream-parser.js';

/** A body chunk up to this size is copied behind its head, for one write instead of a writev. */
const SMALL = 16 * 1024;

/** What a request needs of the connection it came on. */
export interface LaneConnectionView {
  readonly socket: net.Socket;
  readonly options: ProxyOptions;
  /** Whether the response being written is the connection's last (Connection: close). */
  readonly lastResponse: boolean;
  /** The request's response was written whole. */
  responded(request: LaneRequest): void;
}

/** What the head being built holds (respond() is synchronous, so one object serves all). */
const facts: HeadFacts = { contentLength: false, date: false };

/** The Date header's value, made at most once a second. */
let dateValue = '';
let dateAt = 0;
function httpDate(): string {
  const now = Date.now();
  if (now - dateAt >= 1_000) {
    dateAt = now - (now % 1_000);
    dateValue = new Date(now).toUTCString();
  }
  return dateValue;
}

/** One fast-lane request: the client side of an Exchange, writing the response itself. */
export class LaneRequest implements ClientSide {
  readonly method: string;
  readonly url: string;
  /** The response head, kept to go out with the first chunk of the body in one write. */
  private head: string | undefined;
  private started = false;
  private chunked = false;
  private exchange: Exchange | undefined;
  private done = false;

  constructor(
    private readonly connection: LaneConnectionView,
    private readonly request: RequestHead,
    readonly body: Buffer | undefined,
  ) {
    this.method = request.method;
    this.url = request.url;
  }

  forwardHeaders(): string[] {
    return forwardRawHeaders(this.request.headers, this.connection.socket.remoteAddress, {
      trustForwardHeaders: this.connection.options.trustForwardHeaders,
      upgrade: false,
    });
  }

  respond(status: number, rawHeaders: readonly string[], message: string): void {
    this.started = true;
    let head = `HTTP/1.1 ${status} ${message || STATUS_CODES[status] || 'unknown'}\r\n`;
    head += responseHeadLines(rawHeaders, facts);
    // A proxy adds the Date a response lacks (RFC 9110 6.6.1), as http.Server does.
    if (!facts.date) head += `date: ${httpDate()}\r\n`;
    // 1xx responses never get here: the upstream client skips them.
    const bodyless = this.method === 'HEAD' || status === 204 || status === 304;
    if (!bodyless && !facts.contentLength) {
      // The child's own framing (chunked, or until it closed) does not cross the hop.
      this.chunked = true;
      head += 'transfer-encoding: chunked\r\n';
    }
    this.head = `${head}${this.connectionHeaders()}\r\n`;
  }

  write(chunk: Buffer, transient: boolean): boolean {
    const socket = this.connection.socket;
    if (chunk.length === 0) return true; // an empty chunk would end a chunked body
    const head = this.head;
    if (head === undefined && !this.chunked) {
      return socket.write(transient ? Buffer.from(chunk) : chunk);
    }
    this.head = undefined;
    const size = this.chunked ? `${chunk.length.toString(16)}\r\n` : '';
    const prefix = head === undefined ? size : head + size;
    if (chunk.length <= SMALL) {
      // A small answer, the usual case, goes out as one buffer in one plain write (a copy, so
      // a transient chunk needs no other).
      const suffix = this.chunked ? 2 : 0;
      const out = Buffer.allocUnsafe(prefix.length + chunk.length + suffix);
      out.write(prefix, 0, 'latin1');
      chunk.copy(out, prefix.length);
      if (suffix > 0) out.write('\r\n', prefix.length + chunk.length, 'latin1');
      return socket.write(out);
    }
    // A large chunk is not copied: head, chunk and framing go out in one writev.
    socket.cork();
    socket.write(prefix, 'latin1');
    let more = socket.write(transient ? Buffer.from(chunk) : chunk);
    if (this.chunked) more = socket.write('\r\n', 'latin1');
    socket.uncork();
    return more;
  }

  onceDrained(listener: () => void): void {
    this.connection.socket.once('drain', listener);
  }

  end(trailers: string[]): void {
    const socket = this.connection.socket;
    let tail = this.head ?? '';
    this.head = undefined;
    if (this.chunked) {
      tail += '0\r\n';
      for (let i = 0; i < trailers.length; i += 2) tail += `${trailers[i]}: ${trailers[i + 1]}\r\n`;
      tail += '\r\n';
    }
    if (tail !== '') socket.write(tail, 'latin1');
    this.finish();
  }

  destroy(): void {
    this.done = true;
    this.connection.socket.destroy();
  }

  reject(status: number, message: string): void {
    if (this.started) return this.destroy();
    const text = `${message}\n`;
    const seconds = this.connection.options.retryAfterSeconds ?? 1;
    const retry = status === 503 ? `retry-after: ${seconds}\r\n` : '';
    this.connection.socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
        `${retry}content-length: ${Buffer.byteLength(text)}\r\ndate: ${httpDate()}\r\n` +
        `${this.connectionHeaders()}\r\n${text}`,
      'utf8',
    );
    this.finish();
  }

  /** Connection and Keep-Alive, as http.Server sends them (its keep-alive timeout is 5 s). */
  private connectionHeaders(): string {
    return this.connection.lastResponse
      ? 'connection: close\r\n'
      : 'connection: keep-alive\r\nkeep-alive: timeout=5\r\n';
  }

  onGone(exchange: Exchange): void {
    this.exchange = exchange;
  }

  /** The client's connection closed while this request was current. */
  gone(): void {
    if (this.done) return;
    this.done = true;
    this.exchange?.clientLeft();
  }

  private finish(): void {
    this.done = true;
    this.connection.responded(this);
  }
}
