/** The types of the fd store's entries and of the options that make them. */
import type fs from 'node:fs';
import type net from 'node:net';
import type { MetadataEntry } from './protocol.js';

/** What `server.listen(...)`, `socket.bind(...)` and `new net.Socket(...)` take: an fd. */
export interface FdHandle {
  fd: number;
}

/** Options of a TCP listener. `host` defaults to all addresses (dual-stack `::`). */
export interface TcpListenOptions {
  port: number;
  host?: string;
  backlog?: number;
  /** Accept IPv6 only on an IPv6 address (default false). */
  ipv6Only?: boolean;
  reusePort?: boolean;
}

/** Options of a unix stream listener. */
export interface UnixListenOptions {
  path: string;
  backlog?: number;
  /** chmod of the socket file after bind. */
  mode?: number;
  /** Remove a stale socket file (nobody accepts on it) before binding. Default true. */
  removeStale?: boolean;
}

/** Options of a UDP socket. The type follows `host`, else defaults to udp4. */
export interface UdpListenOptions {
  port: number;
  host?: string;
  type?: 'udp4' | 'udp6';
  reuseAddr?: boolean;
  reusePort?: boolean;
  ipv6Only?: boolean;
}

/** A public description of a stored descriptor. */
export interface FdInfo extends MetadataEntry {
  /** True when it came from the previous owner. */
  inherited: boolean;
}

/** A stored descriptor: the store's own fd and its metadata. */
export interface StoredFd extends FdInfo {
  fd: number;
}

/** A source of a descriptor to adopt: an fd, `{ fd }`, or a Node object holding one. */
export type FdSource = number | FdHandle | net.Server | net.Socket | fs.promises.FileHandle;
