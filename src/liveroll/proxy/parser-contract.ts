/**
 * What liveroll's HTTP parsers (upstream-parser.ts) promise their users, and the checks run at
 * start-up that Node's llhttp binding, whose callbacks are positional, still keeps those
 * promises: a known request and a known response are parsed and compared.
 */
import { LiverollError, LiverollErrorCodes } from '../errors.js';

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
export function parserMissing(detail: string): LiverollError {
  return new LiverollError(
    LiverollErrorCodes.HTTP_PARSER,
    `liveroll cannot use this Node's HTTP parser (${detail}); run it on Node 20 to 26, ` +
      `or report the Node version at the project's issue tracker`,
  );
}

/** Parses requests' heads the way the proxy's fast lane relies on, and compares. */
export function checkRequestParser(make: () => RequestParser): void {
  const parser = make();
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
  if (seen.join('\n') !== expected.join('\n') || partial !== undefined || typeof bad !== 'string') {
    throw parserMissing(`the request check gave ${JSON.stringify([...seen, partial, bad])}`);
  }
}

/** Parses a response with every feature the client relies on, and compares. */
export function checkResponseParser(make: (callbacks: ParserCallbacks) => ResponseParser): void {
  const seen: string[] = [];
  const parser = make({
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
  // A head split inside its blank line, whose body holds one too; then one more response.
  const split = 'HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\na\r\n\r\nb';
  errors.push(parser.execute(Buffer.from(split.slice(0, 37), 'latin1')));
  errors.push(parser.execute(Buffer.from(split.slice(37), 'latin1')));
  const last = 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz';
  errors.push(parser.execute(Buffer.from(last, 'latin1')));
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
    '200 OK Content-Length|6',
    'a\r\n\r\nb',
    'end ',
    '200 OK Content-Length|1',
    'z',
    'end ',
  ];
  const err = errors.find((e) => e !== undefined);
  if (err !== undefined || seen.join('\n') !== expected.join('\n') || !parser.keepAlive) {
    throw parserMissing(`the check parse gave ${JSON.stringify(seen)} ${err ?? ''}`);
  }
}
