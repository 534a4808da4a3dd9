/**
 * Header rewriting between a client and a child: hop-by-hop headers stay on their own hop, and
 * the child learns who asked through X-Forwarded-For, -Proto and -Host. Incoming X-Forwarded-*
 * and Forwarded values are dropped unless the proxy in front of liveroll is trusted, since any
 * client could forge them.
 */
import type { IncomingMessage } from 'node:http';

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

/** Lower-case header names listed in a Connection header, which are hop-by-hop too. */
function connectionTokens(value: string | string[] | undefined): ReadonlySet<string> {
  // The usual values name no other header: skip the parsing on the hot path.
  if (value === undefined || value === 'keep-alive' || value === 'close') return none;
  const text = Array.isArray(value) ? value.join(',') : value;
  return new Set(
    text
      .split(',')
      .map((t) => t.trim().toLowerCase())
      .filter((t) => t !== ''),
  );
}

/** The client's address without the IPv4-mapped prefix (`::ffff:127.0.0.1` -> `127.0.0.1`). */
export function clientAddress(req: IncomingMessage): string {
  const address = req.socket.remoteAddress ?? '';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/** How to build the headers of a forwarded request. */
export interface ForwardOptions {
  trustForwardHeaders: boolean;
  /** Keep `Connection: upgrade` and `Upgrade` (for a WebSocket tunnel). */
  upgrade: boolean;
}

/**
 * The headers to send to the child, as a flat `[name, value, ...]` list in the client's order
 * and spelling. `Expect` is dropped: Node has already answered `100 Continue` to the client.
 */
export function forwardRequestHeaders(req: IncomingMessage, options: ForwardOptions): string[] {
  const dropped = connectionTokens(req.headers.connection);
  const out: string[] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] ?? '';
    const lower = name.toLowerCase();
    if (hopByHop.has(lower) || dropped.has(lower) || lower === 'expect' || forwarded.has(lower)) {
      continue;
    }
    out.push(name, raw[i + 1] ?? '');
  }
  if (options.upgrade && req.headers.upgrade !== undefined) {
    out.push('connection', 'upgrade', 'upgrade', req.headers.upgrade);
  }
  appendForwarded(out, req, options.trustForwardHeaders);
  return out;
}

function appendForwarded(out: string[], req: IncomingMessage, trust: boolean): void {
  const h = req.headers;
  const joined = (v: string | string[] | undefined): string | undefined =>
    Array.isArray(v) ? v.join(', ') : v;
  const priorFor = trust ? joined(h['x-forwarded-for']) : undefined;
  const ip = clientAddress(req);
  out.push('x-forwarded-for', priorFor ? `${priorFor}, ${ip}` : ip);
  out.push('x-forwarded-proto', (trust ? joined(h['x-forwarded-proto']) : undefined) ?? 'http');
  const host = (trust ? joined(h['x-forwarded-host']) : undefined) ?? h.host;
  if (host !== undefined) out.push('x-forwarded-host', host);
  // RFC 7239's header says the same things; only a trusted proxy's is passed on.
  const standard = trust ? joined(h.forwarded) : undefined;
  if (standard !== undefined) out.push('forwarded', standard);
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
