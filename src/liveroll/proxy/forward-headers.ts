/**
 * Header rewriting between a client and a child: hop-by-hop headers stay on their own hop, and
 * the child learns who asked through X-Forwarded-For, -Proto and -Host. Incoming X-Forwarded-*
 * and Forwarded values are dropped unless the proxy in front of liveroll is trusted, since any
 * client could forge them.
 */
import type { IncomingMessage } from 'node:http';
import { isName } from './head-values.js';

/** Headers that describe one connection, never the message (RFC 9110 7.6.1). */
const hopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** What a client could forge about itself: dropped, then set by us (or kept when trusted). */
const forwarded = new Set([
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'forwarded',
]);

const none: ReadonlySet<string> = new Set();

/**
 * A table of name lengths: `table[n] === 1` when some name in `names` is n characters long.
 * A lookup is one load, where a `Set` of numbers hashes each length first (measured: 800
 * instructions a request, most of it in V8's integer hash).
 */
function lengthTable(names: Iterable<string>): Uint8Array {
  const table = new Uint8Array(32);
  for (const name of names) table[name.length] = 1;
  return table;
}

/**
 * The lengths of every name the request rewriting looks at: a name of another length is passed
 * on without being lower-cased, which most names of a request are.
 */
const requestNameLengths = lengthTable([...hopByHop, ...forwarded, 'host', 'expect']);
/** The lengths of the hop-by-hop names. */
const hopLengths = lengthTable(hopByHop);
/** Lower-case header names listed in a Connection header, which are hop-by-hop too. */
function connectionTokens(value: string | undefined): ReadonlySet<string> {
  // The usual values name no other header: skip the parsing on the hot path.
  if (value === undefined || value === 'keep-alive' || value === 'close') return none;
  return new Set(
    value
      .split(',')
      .map((t) => t.trim().toLowerCase())
      .filter((t) => t !== ''),
  );
}

/** An address without the IPv4-mapped prefix (`::ffff:127.0.0.1` -> `127.0.0.1`). */
export function plainAddress(address: string | undefined): string {
  if (address === undefined) return '';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/** The client's address without the IPv4-mapped prefix. */
export function clientAddress(req: IncomingMessage): string {
  return plainAddress(req.socket.remoteAddress);
}

/** How to build the headers of a forwarded request. */
export interface ForwardOptions {
  trustForwardHeaders: boolean;
  /** Keep `Connection: upgrade` and `Upgrade` (for a WebSocket tunnel). */
  upgrade: boolean;
}

/** Joins a repeated header's values the way Node's `req.headers` does. */
function join(prior: string | undefined, value: string): string {
  return prior === undefined ? value : `${prior}, ${value}`;
}

/**
 * The headers to send to the child, as a flat `[name, value, ...]` list in the client's order
 * and spelling. `Expect` is dropped: Node has already answered `100 Continue` to the client.
 */
export function forwardRequestHeaders(req: IncomingMessage, options: ForwardOptions): string[] {
  return forwardRawHeaders(req.rawHeaders, req.socket.remoteAddress, options);
}

/**
 * forwardRequestHeaders from the parts: the client's raw `[name, value, ...]` list and the
 * address it connected from.
 */
export function forwardRawHeaders(
  raw: readonly string[],
  remoteAddress: string | undefined,
  options: ForwardOptions,
): string[] {
  // One pass finds what the rewriting needs; a second copies what may go on.
  let connection: string | undefined;
  let upgrade: string | undefined;
  let host: string | undefined;
  let priorFor: string | undefined;
  let priorProto: string | undefined;
  let priorHost: string | undefined;
  let standard: string | undefined;
  // '' for a name that is passed on whatever its case.
  const lowered: string[] = new Array<string>(raw.length >> 1);
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] ?? '';
    const lower = requestNameLengths[name.length] === 1 ? name.toLowerCase() : '';
    lowered[i >> 1] = lower;
    if (lower === '') continue;
    const value = raw[i + 1] ?? '';
    switch (lower) {
      case 'connection':
        connection = join(connection, value);
        break;
      case 'upgrade':
        upgrade ??= value;
        break;
      case 'host':
        host ??= value;
        break;
      case 'x-forwarded-for':
        priorFor = join(priorFor, value);
        break;
      case 'x-forwarded-proto':
        priorProto = join(priorProto, value);
        break;
      case 'x-forwarded-host':
        priorHost = join(priorHost, value);
        break;
      case 'forwarded':
        standard = join(standard, value);
        break;
    }
  }
  const dropped = connectionTokens(connection);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = lowered[i >> 1] ?? '';
    const drop =
      lower !== '' &&
      (hopByHop.has(lower) || lower === 'expect' || forwarded.has(lower) || dropped.has(lower));
    // A name the Connection header lists may have any length.
    if (drop || (dropped.size > 0 && dropped.has((raw[i] ?? '').toLowerCase()))) continue;
    out.push(raw[i] ?? '', raw[i + 1] ?? '');
  }
  if (options.upgrade && upgrade !== undefined) {
    out.push('connection', 'upgrade', 'upgrade', upgrade);
  }
  const trust = options.trustForwardHeaders;
  const ip = plainAddress(remoteAddress);
  out.push('x-forwarded-for', trust && priorFor ? `${priorFor}, ${ip}` : ip);
  out.push('x-forwarded-proto', (trust ? priorProto : undefined) ?? 'http');
  const forwardedHost = (trust ? priorHost : undefined) ?? host;
  if (forwardedHost !== undefined) out.push('x-forwarded-host', forwardedHost);
  // RFC 7239's header says the same things; only a trusted proxy's is passed on.
  if (trust && standard !== undefined) out.push('forwarded', standard);
  return out;
}

/**
 * The child's response headers minus hop-by-hop ones, as the flat `[name, value, ...]` list
 * `writeHead` takes. Bytes pass through as latin1, which round-trips any header value. `Trailer`
 * is kept: it announces the trailers the proxy forwards after the body.
 */
export function forwardResponseHeaders(raw: readonly (Buffer | string)[]): string[] {
  const out: string[] = [];
  let dropped: ReadonlySet<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]?.toString('latin1') ?? '';
    const value = raw[i + 1]?.toString('latin1') ?? '';
    const lower = name.toLowerCase();
    if (lower === 'connection') dropped = connectionTokens(value);
    if (hopByHop.has(lower) && lower !== 'trailer') continue;
    out.push(name, value);
  }
  if (dropped === undefined || dropped.size === 0) return out;
  return out.filter((_, i) => {
    const nameIndex = i - (i % 2);
    return !dropped.has((out[nameIndex] ?? '').toLowerCase());
  });
}

/** What responseHeadLines found among the headers it kept. */
export interface HeadFacts {
  contentLength: boolean;
  date: boolean;
}

/**
 * forwardResponseHeaders for a writer that builds the head itself: the kept headers as
 * `name: value` lines, in one pass that makes no lower-cased copy of the usual names.
 */
export function responseHeadLines(raw: readonly string[], facts: HeadFacts): string {
  facts.contentLength = false;
  facts.date = false;
  let lines = '';
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] ?? '';
    const value = raw[i + 1] ?? '';
    switch (name.length) {
      case 14:
        if (isName(name, 'content-length')) facts.contentLength = true;
        break;
      case 4:
        if (isName(name, 'date')) facts.date = true;
        break;
      case 10:
        if (isName(name, 'keep-alive')) continue;
        if (!isName(name, 'connection')) break;
        // A Connection header that names other headers, of any length: the general path.
        if (connectionTokens(value).size > 0) {
          return responseHeadLines(forwardResponseHeaders(raw), facts);
        }
        continue;
      default:
        if (hopLengths[name.length] === 1) {
          const lower = name.toLowerCase();
          if (lower !== 'trailer' && hopByHop.has(lower)) continue;
        }
    }
    lines += `${name}: ${value}\r\n`;
  }
  return lines;
}
