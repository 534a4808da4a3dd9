/**
 * The HTTP response parser liveroll's client uses: llhttp, through the binding Node's own
 * `http.request` uses (`HTTPParser` from the built-in `_http_common` module, present and the
 * same from Node 20 to 26). Its callbacks are positional, so the binding is checked once, at
 * load, by parsing a known response: if a future Node changes it, liveroll refuses to start
 * with ERR_LIVEROLL_HTTP_PARSER instead of misreading responses.
 */
import type { createRequire } from 'node:module';
import { contentLength } from './head-values.js';
import {
  checkRequestParser,
  checkResponseParser,
  parserMissing,
  type ParserCallbacks,
  type RequestHead,
  type RequestParser,
  type ResponseParser,
} from './parser-contract.js';

export type { ParserCallbacks, RequestHead, RequestParser, ResponseParser };

/** The end of a head; a Buffer needle is searched for without being encoded first. */
const BLANK_LINE = Buffer.from('\r\n\r\n', 'latin1');

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
    checkResponseParser((callbacks) => this.responseParser(callbacks));
    checkRequestParser(() => this.requestParser());
  }

  requestParser(): RequestParser {
    const P = this.Parser;
    const native = new P();
    // The async resource llhttp's parser reports to async_hooks: one per parser will do.
    const resource = {};
    let headers: string[] = [];
    let url = '';
    let found: RequestHead | undefined;
    /**
     * Whether llhttp sits between two messages, ready for the next head without initialize(),
     * which costs about 1,500 instructions (it resets the parser's async_hooks identity).
     */
    let ready = false;
    /** What the head callback returns: 1 ends the message at its head, 2 stops llhttp there. */
    let afterHead = 2;
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
      return afterHead;
    };
    native[P.kOnBody] = () => {};
    native[P.kOnMessageComplete] = () => {};
    return {
      head(data: Buffer): RequestHead | string | undefined {
        // Given exactly one head, llhttp may end the message there (1: its body, if any, is
        // the caller's) and stays ready for the next. Otherwise it is stopped after the head
        // (2), and must be initialized again before the next one.
        const end = data.indexOf(BLANK_LINE);
        const whole = end >= 0;
        if (!ready) native.initialize(P.REQUEST, resource, 0, 0);
        ready = false;
        afterHead = whole ? 1 : 2;
        headers = [];
        url = '';
        found = undefined;
        const result = native.execute(whole ? data.subarray(0, end + 4) : data);
        const head = found as RequestHead | undefined;
        found = undefined;
        if (result instanceof Error) return (result as NodeJS.ErrnoException).code ?? 'HPE_ERROR';
        if (head === undefined) return undefined;
        // An upgrade or CONNECT leaves llhttp stopped whatever the callback said, and a message
        // that ends its connection leaves it refusing another.
        ready = whole && !head.upgrade && head.keepAlive;
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
     * socket's own chunks are handed on.
     */
    let rawLeft = 0;
    /**
     * llhttp is between two messages with nothing of the next one read: just initialized, or
     * its last message ended with the one head it was given. (After bytes handed to it whole,
     * it may hold the start of a message, so it is not taken to be fresh until initialized.)
     */
    let fresh = true;
    /**
     * llhttp was given one whole head and nothing past it. It may then end a message that has
     * a Content-Length body at its head (1), and stays ready for the next one. Given more, it
     * is stopped after the head (2) and must be initialized again after the body, which costs
     * about 1,500 instructions (the parser's async_hooks identity is reset).
     */
    let headOnly = false;
    const state = {
      skipBody: false,
      keepAlive: false,
      execute(data: Buffer): string | undefined {
        if (rawLeft > 0) return passRaw(data);
        const end = fresh ? data.indexOf(BLANK_LINE) + 4 : 0;
        if (end < 4) return parse(data);
        headOnly = true;
        const result = native.execute(end === data.length ? data : data.subarray(0, end));
        headOnly = false;
        if (failure !== undefined) return failure;
        if (result instanceof Error) {
          return (result as NodeJS.ErrnoException).code ?? result.message;
        }
        // The body, a chunked one's first bytes, or the answer after a 1xx.
        return end === data.length ? undefined : state.execute(data.subarray(end));
      },
      finish(): void {
        if (rawLeft === 0) native.finish();
      },
      close(): void {
        // Node's own client closes a parser only after the stack has unwound.
        setImmediate(() => native.close());
      },
    };
    /** Hands `data` to llhttp as it is. */
    const parse = (data: Buffer): string | undefined => {
      fresh = false;
      const result = native.execute(data);
      if (failure !== undefined) return failure;
      if (result instanceof Error) {
        return (result as NodeJS.ErrnoException).code ?? result.message;
      }
      if (rawLeft > 0 && result < data.length) return passRaw(data.subarray(result));
      return undefined;
    };
    const passRaw = (data: Buffer): undefined => {
      const take = Math.min(rawLeft, data.length);
      rawLeft -= take;
      callbacks.body(take === data.length ? data : data.subarray(0, take));
      if (rawLeft > 0) return undefined;
      if (!fresh) {
        native.initialize(P.RESPONSE, resource, 0, 0);
        fresh = true;
      }
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
      fresh = false;
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
      // Given the head only, 1 ends the message for llhttp (the body is passRaw's). Otherwise 2
      // stops llhttp after the head, as for an upgrade: execute() returns the head's length.
      return headOnly ? 1 : 2;
    };
    native[P.kOnBody] = (chunk: Buffer) => callbacks.body(chunk);
    native[P.kOnMessageComplete] = () => {
      if (headOnly) fresh = true;
      const trailers = pending;
      pending = [];
      // A 1xx ends before the response; a raw body's end is passRaw's to report.
      if (interim || rawLeft > 0) return;
      callbacks.complete(trailers);
    };
    return state;
  }
}
