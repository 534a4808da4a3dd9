/**
 * The HTTP response parser liveroll's client uses: llhttp, through the binding Node's own
 * `http.request` uses (`HTTPParser` from the built-in `_http_common` module, present and the
 * same from Node 20 to 26). Its callbacks are positional, so the binding is checked once, at
 * load, by parsing a known response: if a future Node changes it, liveroll refuses to start
 * with ERR_LIVEROLL_HTTP_PARSER instead of misreading responses.
 */
import type { createRequire } from 'node:module';
import { LiverollError, LiverollErrorCodes } from '../errors.js';
import { contentLength } from './head-values.js';

/** The callbacks of one parser. */
export interface ParserCallbacks {
  /** Final status and headers (1xx responses are skipped before they get here). */
  headers(status: number, headers: string[], message: string): void;
  body(chunk: Buffer): void;
  /** The message ended; trailers as a flat list. */
  complete(trailers: string[]): void;
}

/** One response parser, reused for every response on its connection. */
export interface ResponseParser {
  /** Parses bytes; returns a description of the error when they are not HTTP. */
  execute(data: Buffer): string | undefined;
  /** Ends a body delimited by the connection's end. */
  finish(): void;
  close(): void;
  /** Set before each request: a response to HEAD has no body whatever its headers say. */
  skipBody: boolean;
  /** Whether the last response allows another request on the connection. */
  readonly keepAlive: boolean;
}

interface NativeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  finish(): Error | undefined;
  close(): void;
  [slot: number]: unknown;
}

interface NativeParserClass {
  new (): NativeParser;
  REQUEST: number;
  RESPONSE: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
}

/** The head of a client's request, as llhttp read it. */
export interface RequestHead {
  method: string;
  /** The request target as sent. */
  url: string;
  /** Flat `[name, value, ...]`, in the client's order and spelling. */
  headers: string[];
  /** The minor version of HTTP/1.x. */
  minor: number;
  /** An upgrade (Connection: upgrade with Upgrade) or a CONNECT. */
  upgrade: boolean;
  /** Whether the client allows another request on the connection. */
  keepAlive: boolean;
  /** The head's length in bytes. */
  length: number;
}

/** Reads requests' heads, one at a time; their bodies are the caller's. */
export interface RequestParser {
  /**
   * Parses one request's head from the start of `data`. Returns it, or undefined when `data`
   * ends inside the head, or the parser's error code for bytes that are not a request. Each
   * call starts afresh: a head split across reads is not pieced together.
   */
  head(data: Buffer): RequestHead | string | undefined;
  close(): void;
}

/** The start-up failure on a Node whose HTTP parser binding is not the expected one. */
function parserMissing(detail: string): LiverollError {
  return new LiverollError(
    LiverollErrorCodes.HTTP_PARSER,
    `liveroll cannot use this Node's HTTP parser (${detail}); run it on Node 20 to 26, ` +
      `or report the Node version at the project's issue tracker`,
  );
}

/** Makes parsers; construction checks the binding with a known response. */
export class ParserBinding {
  private readonly Parser: NativeParserClass;
  /** Method names by llhttp's numbers. */
  private readonly methods: readonly string[];

  constructor(require: ReturnType<typeof createRequire>) {
    const common = require('_http_common') as {
      HTTPParser?: NativeParserClass;
      methods?: readonly string[];
    };
    const found = common.HTTPParser;
    if (typeof found !== 'function' || typeof found.kOnHeadersComplete !== 'number') {
      throw parserMissing('no HTTPParser in _http_common');
    }
    if (!Array.isArray(common.methods)) throw parserMissing('no methods in _http_common');
    this.Parser = found;
    this.methods = common.methods;
    this.selfCheck();
    this.requestSelfCheck();
  }

  requestParser(): RequestParser {
    const P = this.Parser;
    const native = new P();
    // The async resource llhttp's parser reports to async_hooks: one per parser will do.
    const resource = {};
    let headers: string[] = [];
    let url = '';
    let found: RequestHead | undefined;
    native[P.kOnHeaders] = (more: string[], urlPart: string) => {
      for (const item of more) headers.push(item);
      url += urlPart;
    };
    native[P.kOnHeadersComplete] = (
      _major: number,
      minor: number,
      list: string[] | undefined,
      method: number,
      urlRest: string | undefined,
      _status: unknown,
      _message: unknown,
      upgrade: boolean,
      keepAlive: boolean,
    ): number => {
      found = {
        method: this.methods[method] ?? '',
        url: urlRest || url,
        headers: list ?? headers,
        minor,
        upgrade,
        keepAlive,
        length: 0,
      };
      // 2 stops llhttp after the head, as for an upgrade: execute() returns the head's length.
      return 2;
    };
    native[P.kOnBody] = () => {};
    native[P.kOnMessageComplete] = () => {};
    return {
      head(data: Buffer): RequestHead | string | undefined {
        native.initialize(P.REQUEST, resource, 0, 0);
        headers = [];
        url = '';
        found = undefined;
        const result = native.execute(data);
        const head = found as RequestHead | undefined;
        found = undefined;
        if (result instanceof Error) return (result as NodeJS.ErrnoException).code ?? 'HPE_ERROR';
        if (head === undefined) return undefined;
        head.length = result;
        return head;
      },
      close(): void {
        setImmediate(() => native.close());
      },
    };
  }

  responseParser(callbacks: ParserCallbacks): ResponseParser {
    const P = this.Parser;
    const native = new P();
    const resource = {};
    native.initialize(P.RESPONSE, resource, 0, 0);
    let pending: string[] = [];
    let failure: string | undefined;
    /** The message being parsed is a 1xx, whose end is not the response's. */
    let interim = false;
    /**
     * Bytes still to come of a body announced by Content-Length. Such a body bypasses llhttp,
     * which would copy every chunk into a new buffer and call back into JavaScript for it: the
     * socket's own chunks are handed on, and the parser starts afresh after the last byte.
     */
    let rawLeft = 0;
    const state = {
      skipBody: false,
      keepAlive: false,
      execute(data: Buffer): string | undefined {
        if (rawLeft > 0) return passRaw(data);
        const result = native.execute(data);
        if (failure !== undefined) return failure;
        if (result instanceof Error) {
          return (result as NodeJS.ErrnoException).code ?? result.message;
        }
        if (rawLeft > 0 && result < data.length) return passRaw(data.subarray(result));
        return undefined;
      },
      finish(): void {
        if (rawLeft === 0) native.finish();
      },
      close(): void {
        // Node's own client closes a parser only after the stack has unwound.
        setImmediate(() => native.close());
      },
    };
    const passRaw = (data: Buffer): undefined => {
      const take = Math.min(rawLeft, data.length);
      rawLeft -= take;
      callbacks.body(take === data.length ? data : data.subarray(0, take));
      if (rawLeft > 0) return undefined;
      native.initialize(P.RESPONSE, resource, 0, 0);
      // Bytes past the announced length answer no request: this connection is not reused.
      if (take < data.length) state.keepAlive = false;
      callbacks.complete([]);
      return undefined;
    };
    native[P.kOnHeaders] = (headers: string[]) => {
      for (const item of headers) pending.push(item);
    };
    native[P.kOnHeadersComplete] = (
      _major: number,
      _minor: number,
      headers: string[] | undefined,
      _method: unknown,
      _url: unknown,
      status: number,
      message: string,
      _upgrade: boolean,
      keepAlive: boolean,
    ): number => {
      const list = headers ?? pending;
      pending = [];
      interim = status < 200;
      if (interim) {
        // 100 and 103 come before the real answer; a 101 we never asked for is a broken child.
        if (status === 101) failure = 'a 101 response to a request that asked for no upgrade';
        return 1;
      }
      state.keepAlive = keepAlive;
      callbacks.headers(status, list, message);
      if (state.skipBody) return 1;
      const length = status === 204 || status === 304 ? undefined : contentLength(list);
      if (length === undefined || length === 0) return 0;
      rawLeft = length;
      // 2 stops llhttp after the head, as for an upgrade; execute() returns the head's length.
      return 2;
    };
    native[P.kOnBody] = (chunk: Buffer) => callbacks.body(chunk);
    native[P.kOnMessageComplete] = () => {
      const trailers = pending;
      pending = [];
      // A 1xx ends before the response; a raw body's end is passRaw's to report.
      if (interim || rawLeft > 0) return;
      callbacks.complete(trailers);
    };
    return state;
  }

  /** Parses requests' heads the way the proxy's fast lane relies on, and compares. */
  private requestSelfCheck(): void {
    const parser = this.requestParser();
    const two = Buffer.from(
      'POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.0\r\n\r\n',
      'latin1',
    );
    const first = parser.head(two);
    const second = typeof first === 'object' ? parser.head(two.subarray(first.length + 2)) : first;
    const partial = parser.head(Buffer.from('GET / HTTP/1.1\r\nHost:', 'latin1'));
    const upgrade = parser.head(
      Buffer.from('GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n', 'latin1'),
    );
    const bad = parser.head(Buffer.from('GET / HTTP/1.1\r\nBad Name: 1\r\n\r\n', 'latin1'));
    parser.close();
    const seen = [first, second, upgrade].map((h) =>
      typeof h === 'object'
        ? `${h.method} ${h.url} 1.${h.minor} ${h.headers.join('|')} ${h.upgrade} ${h.keepAlive} ${h.length}`
        : String(h),
    );
    const expected = [
      'POST /a?b=1 1.1 Host|x|Content-Length|2 false true 52',
      'GET / 1.0  false false 18',
      'GET / 1.1 Connection|upgrade|Upgrade|x true true 51',
    ];
    if (
      seen.join('\n') !== expected.join('\n') ||
      partial !== undefined ||
      typeof bad !== 'string'
    ) {
      throw parserMissing(`the request check gave ${JSON.stringify([...seen, partial, bad])}`);
    }
  }

  /** Parses a response with every feature the client relies on, and compares. */
  private selfCheck(): void {
    const seen: string[] = [];
    const parser = this.responseParser({
      headers: (status, headers, message) => seen.push(`${status} ${message} ${headers.join('|')}`),
      body: (chunk) => seen.push(chunk.toString('latin1')),
      complete: (trailers) => seen.push(`end ${trailers.join('|')}`),
    });
    const sample =
      'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n' +
      'X-A: 1\r\n\r\n3\r\nabc\r\n0\r\nX-T: 2\r\n\r\n';
    const errors = [parser.execute(Buffer.from(sample, 'latin1'))];
    // A Content-Length body split across reads, then a response with no body.
    const sized = 'HTTP/1.1 201 Created\r\nContent-Length: 6\r\n\r\nxyzuvw';
    errors.push(parser.execute(Buffer.from(sized.slice(0, 45), 'latin1')));
    errors.push(parser.execute(Buffer.from(sized.slice(45), 'latin1')));
    errors.push(parser.execute(Buffer.from('HTTP/1.1 204 No Content\r\n\r\n', 'latin1')));
    parser.close();
    const expected = [
      '200 OK Transfer-Encoding|chunked|X-A|1',
      'abc',
      'end X-T|2',
      '201 Created Content-Length|6',
      'xy',
      'zuvw',
      'end ',
      '204 No Content ',
      'end ',
    ];
    const err = errors.find((e) => e !== undefined);
    if (err !== undefined || seen.join('\n') !== expected.join('\n') || !parser.keepAlive) {
      throw parserMissing(`the check parse gave ${JSON.stringify(seen)} ${err ?? ''}`);
    }
  }
}
