/**
 * The sockets behind the fd store's entries: binding TCP, UDP and unix listeners, telling what
 * a descriptor is, and checking what the application passes in.
 */
import dns from 'node:dns/promises';
import fs from 'node:fs';
import net from 'node:net';
import { ErrorCodes, TablerollError, hasCode } from './errors.js';
import { isStaleSocket } from './coordination/upgrade-socket.js';
import { native, type SocketInfo } from './native.js';
import type { FdKind } from './protocol.js';
import type {
  FdHandle,
  FdSource,
  StoredFd,
  TcpListenOptions,
  UdpListenOptions,
  UnixListenOptions,
} from './fd-types.js';

const DEFAULT_BACKLOG = 511;

export function describeId(id: unknown): string {
  return `id ${JSON.stringify(id)}`;
}

export function checkId(id: unknown): asserts id is string {
  if (typeof id !== 'string' || id.length === 0) {
    throw new TablerollError(ErrorCodes.INVALID_ARGUMENT, 'an fd id must be a non-empty string');
  }
}

export function checkOptionsObject(options: unknown): void {
  if (typeof options !== 'object' || options === null) {
    throw new TablerollError(ErrorCodes.INVALID_ARGUMENT, 'listen options must be an object');
  }
}

export function checkPort(port: unknown): void {
  if (!Number.isInteger(port) || (port as number) < 0 || (port as number) > 65535) {
    throw new TablerollError(
      ErrorCodes.INVALID_ARGUMENT,
      `port ${String(port)} is not in 0..65535`,
    );
  }
}

interface ResolvedHost {
  /** The host as the user gave it ('' for all addresses), for the informational addr. */
  given: string;
  address: string;
  family: 4 | 6;
}

export async function resolveHost(
  host: string | undefined,
  type?: 'udp4' | 'udp6',
): Promise<ResolvedHost> {
  const given = host ?? '';
  if (given === '') {
    return type === 'udp4'
      ? { given, address: '0.0.0.0', family: 4 }
      : { given, address: '::', family: 6 };
  }
  const numeric = net.isIP(given);
  if (numeric === 4 || numeric === 6) return { given, address: given, family: numeric };
  const family = type === 'udp4' ? 4 : type === 'udp6' ? 6 : 0;
  const found = await dns.lookup(given, { family });
  return { given, address: found.address, family: found.family === 6 ? 6 : 4 };
}

/** The port at the end of `host:port` or `[v6]:port`; undefined when there is none. */
export function portOf(addr: string): number | undefined {
  const match = /:(\d+)$/.exec(addr);
  return match ? Number(match[1]) : undefined;
}

function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export function bindTcp(
  options: TcpListenOptions,
  host: ResolvedHost,
): Omit<StoredFd, 'id' | 'inherited'> {
  const flags = { ipv6Only: options.ipv6Only ?? false, reusePort: options.reusePort ?? false };
  const backlog = options.backlog ?? DEFAULT_BACKLOG;
  let fd: number;
  try {
    fd = native.inetListen(host.address, options.port, host.family, backlog, flags);
  } catch (err) {
    // No IPv6 on this machine: "all addresses" falls back to IPv4, as Node's listen() does.
    if (host.given !== '' || !hasCode(err, 'EAFNOSUPPORT')) throw err;
    fd = native.inetListen('0.0.0.0', options.port, 4, backlog, flags);
  }
  return { kind: 'listener', fd, network: 'tcp', addr: joinHostPort(host.given, options.port) };
}

export function bindUdp(
  options: UdpListenOptions,
  host: ResolvedHost,
): Omit<StoredFd, 'id' | 'inherited'> {
  const fd = native.udpBind(host.address, options.port, host.family, {
    ipv6Only: options.ipv6Only ?? false,
    reuseAddr: options.reuseAddr ?? false,
    reusePort: options.reusePort ?? false,
  });
  return { kind: 'conn', fd, network: 'udp', addr: joinHostPort(host.given, options.port) };
}

export function bindUnix(options: UnixListenOptions): Omit<StoredFd, 'id' | 'inherited'> {
  const backlog = options.backlog ?? DEFAULT_BACKLOG;
  // Bound natively, not by Node: libuv unlinks a path it bound when the server closes, which
  // would delete the socket a successor is serving on.
  let fd: number;
  try {
    fd = native.unixListen(options.path, backlog);
  } catch (err) {
    if (
      !hasCode(err, 'EADDRINUSE') ||
      options.removeStale === false ||
      !isStaleSocket(options.path)
    ) {
      throw err;
    }
    fs.unlinkSync(options.path);
    fd = native.unixListen(options.path, backlog);
  }
  if (options.mode !== undefined) {
    try {
      fs.chmodSync(options.path, options.mode);
    } catch (err) {
      native.close(fd);
      throw err;
    }
  }
  return { kind: 'listener', fd, network: 'unix', addr: options.path };
}

export function fdOf(source: FdSource): number {
  if (typeof source === 'number') return source;
  if (source instanceof net.Server || source instanceof net.Socket) {
    const fd = (source as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) {
      throw new TablerollError(
        ErrorCodes.INVALID_ARGUMENT,
        'the server or socket has no open descriptor (not listening or connected yet?)',
      );
    }
    return fd;
  }
  if (typeof (source as FdHandle | null)?.fd === 'number') return source.fd;
  throw new TablerollError(
    ErrorCodes.INVALID_ARGUMENT,
    'expected an fd, { fd }, a server or a socket',
  );
}

export function describe(
  kind: FdKind,
  fd: number,
  name: string,
): Pick<StoredFd, 'kind' | 'network' | 'addr'> {
  if (kind === 'file') return { kind, network: '', addr: name };
  const found = inspectFd(fd);
  if (found.kind === 'file') {
    throw new TablerollError(
      ErrorCodes.INVALID_ARGUMENT,
      `a ${kind} must be a socket; use addFile`,
    );
  }
  if (kind === 'listener' && found.kind !== 'listener') {
    throw new TablerollError(
      ErrorCodes.INVALID_ARGUMENT,
      'a listener must be a listening stream socket',
    );
  }
  return { ...found, kind };
}

/**
 * An inherited descriptor is what its entry says, checked before the application first gets it:
 * a listening stream socket for a listener, a socket for a conn. The previous owner is trusted
 * to be one of ours, but a mistaken or hostile one would otherwise make `server.listen()` throw
 * EINVAL in the middle of the application's start-up.
 */
export function checkInherited(entry: StoredFd): void {
  if (entry.kind === 'file') return;
  const found = inspectFd(entry.fd);
  if (entry.kind === found.kind || (entry.kind === 'conn' && found.kind === 'listener')) return;
  const what =
    found.kind === 'file' ? 'not a socket' : `a ${found.network} socket that is not listening`;
  throw new TablerollError(
    ErrorCodes.KIND_MISMATCH,
    `the descriptor inherited as ${entry.kind} ${JSON.stringify(entry.id)} is ${what}`,
  );
}

/** What an fd is, as a store entry: a listening stream socket, another socket, or a file. */
export function inspectFd(fd: number): Pick<StoredFd, 'kind' | 'network' | 'addr'> {
  const info = native.socketInfo(fd);
  if (!info) return { kind: 'file', network: '', addr: '' };
  const kind = info.type === 'stream' && info.listening ? 'listener' : 'conn';
  return { kind, network: networkOf(info), addr: addressOf(info) };
}

function networkOf(info: SocketInfo): string {
  if (info.family === 'unix') {
    return info.type === 'dgram' ? 'unixgram' : info.type === 'seqpacket' ? 'unixpacket' : 'unix';
  }
  return info.type === 'dgram' ? 'udp' : 'tcp';
}

function addressOf(info: SocketInfo): string {
  return info.family === 'unix' ? info.path : joinHostPort(info.address, info.port);
}
