/**
 * The native addon (native/addon.cc): a handful of syscalls over integer fds that Node core
 * cannot make (flock, SCM_RIGHTS, sockets whose fds we own). It decides nothing: policy,
 * timeouts, retries and error codes live in TypeScript.
 *
 * Every function is synchronous and non-blocking. Every descriptor the addon creates or receives
 * has FD_CLOEXEC set, so child processes never inherit our sockets. A syscall error is thrown as
 * a Node-style error: `code` ('ECONNREFUSED'), negative `errno`, `syscall`, and `path` when a
 * path was involved.
 *
 * Why the handoff calls the addon (and hand-written code) where Node has an API: a newcomer runs
 * its handoff once per process, cold, while it holds the coordination lock. The first call of
 * each node:fs function compiles a chain of Node's internal JavaScript; setTimeout, EventTarget
 * and Buffer's readers compile their own; the handoff would pay each of those once, inside the
 * lock. Comments at those places say "cold path" and point here; scripts/build.js compiles
 * tableroll's own functions ahead for the same reason.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, TablerollError } from './errors.js';

/** Credentials of the process at the other end of a unix socket (SO_PEERCRED). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/** What one `recv` call read. */
export interface ReceivedMessage {
  /** Bytes read into the buffer; 0 means the peer closed its end. */
  bytes: number;
  /** Descriptors that arrived with these bytes (SCM_RIGHTS), already close-on-exec. */
  fds: number[];
  /** MSG_CTRUNC was set: descriptors were lost; the addon closed those that arrived. */
  truncated: boolean;
}

/** The fields of stat(2) the coordination directory's checks need. */
export interface FileStatus {
  mode: number;
  uid: number;
  size: number;
  ino: number;
  dev: number;
  /** Hard links to the file. */
  nlink: number;
  /** Last modification, in ms since the epoch. */
  mtimeMs: number;
}

/** What the kernel says about a socket (getsockopt and getsockname). */
export interface SocketInfo {
  family: 'inet' | 'inet6' | 'unix' | 'other';
  type: 'stream' | 'dgram' | 'seqpacket' | 'other';
  /** SO_ACCEPTCONN: listen() was called on it. */
  listening: boolean;
  /** Numeric address for inet sockets, '' otherwise. */
  address: string;
  /** Port for inet sockets, 0 otherwise. */
  port: number;
  /** Bound path of a unix socket ('' when unbound; abstract names start with '@'). */
  path: string;
}

/** Flags of `inetListen` and `udpBind`. */
export interface InetFlags {
  /** IPV6_V6ONLY for an inet6 socket (default false: dual stack). */
  ipv6Only?: boolean;
  /** SO_REUSEPORT. */
  reusePort?: boolean;
  /** SO_REUSEADDR. `inetListen` always sets it; `udpBind` only when asked. */
  reuseAddr?: boolean;
}

/** Readiness events, the same values as libuv's uv_poll_event. */
export const READABLE = 1;
export const WRITABLE = 2;
export const DISCONNECT = 4;

/** Called on the event loop when a watched fd is ready; `err` is a Node-style error. */
export type PollCallback = (err: Error | null, events: number) => void;

/**
 * Watches one fd for readiness on Node's own event loop (uv_poll). It never owns the fd:
 * close the Poller before closing the fd. Referenced by default, like a Node handle.
 */
export interface Poller {
  /** Start or change watching; `events` is READABLE | WRITABLE | DISCONNECT. */
  start(events: number): void;
  /** Stop watching until the next `start`. */
  stop(): void;
  /** Release the watcher. Idempotent; no callback runs after it. */
  close(): void;
  /** Keep the process alive while watching (the default). */
  ref(): void;
  /** Let the process exit even while watching. */
  unref(): void;
}

/** The addon's exports. */
export interface NativeAddon {
  /** flock(fd, LOCK_EX | LOCK_NB): true when taken, false when someone else holds it. */
  flockExclusive(fd: number): boolean;
  /** A non-blocking AF_UNIX stream socket bound to `path` and listening. */
  unixListen(path: string, backlog: number): number;
  /**
   * A non-blocking AF_UNIX stream socket connected to `path`. Throws EAGAIN when the listener's
   * backlog is full (the caller retries), ECONNREFUSED for a stale socket, ENOENT for no file.
   */
  unixConnect(path: string): number;
  /** accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC; -1 when no connection is pending. */
  accept(fd: number): number;
  /**
   * sendmsg with MSG_NOSIGNAL of `data`, with `passFd` attached as one SCM_RIGHTS descriptor
   * unless it is -1. Returns the bytes written (possibly fewer than asked) or -1 on EAGAIN.
   */
  send(fd: number, data: Uint8Array, passFd: number): number;
  /**
   * recvmsg with MSG_CMSG_CLOEXEC into `buf[offset, offset + length)`, with room for 253
   * descriptors. Returns null on EAGAIN.
   */
  recv(fd: number, buf: Uint8Array, offset: number, length: number): ReceivedMessage | null;
  /**
   * Up to `max` messages read without waiting, each into `buf` from its start: per message the
   * numbers bytes, fd count (-1: truncated, its descriptors closed), then the fds. Stops after
   * the end of stream or a message without exactly one descriptor. Null when nothing was there.
   * A reset met after some messages reads as the end of stream (the kernel reports it once).
   */
  recvEach(fd: number, buf: Uint8Array, max: number): number[] | null;
  /** close(2); never retried (on Linux the fd is gone even on EINTR). */
  close(fd: number): void;
  /**
   * fcntl(F_DUPFD_CLOEXEC): the lowest free fd number not below `lowest` (default 0). A copy at a
   * high number grows the process's fd table in one step.
   */
  dup(fd: number, lowest?: number): number;
  /** Sets or clears FD_CLOEXEC on this fd. */
  setCloexec(fd: number, on: boolean): void;
  /**
   * Grows the fd table to hold `highest`, on a thread of its own that copies `fd` (which the
   * caller keeps open) there and closes the copy; returns at once. Best effort: nothing is
   * reported (a low RLIMIT_NOFILE just leaves the table as it is).
   */
  growFdTable(fd: number, highest: number): void;
  /** A one-shot timerfd (CLOCK_MONOTONIC, close-on-exec) that becomes readable in `ms`. */
  timerFd(ms: number): number;
  /** SO_PEERCRED of a connected unix socket. */
  peerCredentials(fd: number): PeerCredentials;
  /** A non-blocking TCP socket with SO_REUSEADDR, bound to a numeric address and listening. */
  inetListen(
    address: string,
    port: number,
    family: 4 | 6,
    backlog: number,
    flags: InetFlags,
  ): number;
  /** A non-blocking UDP socket bound to a numeric address. */
  udpBind(address: string, port: number, family: 4 | 6, flags: InetFlags): number;
  /** What a socket is and where it is bound; null when `fd` is open but not a socket. */
  socketInfo(fd: number): SocketInfo | null;
  /** One datagram to a unix datagram socket at `path` ('@name' for the abstract namespace). */
  sendDatagram(path: string, data: Uint8Array): void;
  /** mkdir(2): true when created, false when something by that name exists already. */
  mkdir(path: string, mode: number): boolean;
  stat(path: string): FileStatus;
  fstat(fd: number): FileStatus;
  /** lstat(2): a symlink itself, not its target. */
  lstat(path: string): FileStatus;
  /** open(2), always with O_CLOEXEC added. */
  open(path: string, flags: number, mode: number): number;
  chmod(path: string, mode: number): void;
  fchmod(fd: number, mode: number): void;
  /** One pread(2) into all of `buf` at `position`: the bytes read, 0 at the end of the file. */
  pread(fd: number, buf: Uint8Array, position: number): number;
  /** One pwrite(2) of `data` at `position`: the bytes written, possibly fewer. */
  pwrite(fd: number, data: Uint8Array, position: number): number;
  ftruncate(fd: number, length: number): void;
  Poller: new (fd: number, callback: PollCallback) => Poller;
  /**
   * mallopt(M_TRIM_THRESHOLD): free memory at the top of the C heap is kept until it passes
   * `bytes`, instead of 128 KiB. For a process that moves bulk data through sockets (liveroll's
   * proxy): Node reads into fresh malloc'ed blocks, and giving them back to the kernel after
   * each burst makes the next reads fault every page in again. False where the C library has no
   * such setting (musl).
   */
  setMallocTrimThreshold(bytes: number): boolean;
}

/** The package's root: node-gyp-build looks in its build/Release, then in its prebuilds/. */
const PACKAGE_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Loads the addon as node-gyp-build finds it: a local build (build/Release, made at install
 * when no prebuilt binary fits, or in a checkout) first, else the binary shipped prebuilt for
 * this platform in prebuilds/<platform>-<arch>/.
 */
function loadAddon(): NativeAddon {
  const require = createRequire(import.meta.url);
  try {
    const load = require('node-gyp-build') as (dir: string) => unknown;
    return load(PACKAGE_ROOT) as NativeAddon;
  } catch (cause) {
    throw new TablerollError(
      ErrorCodes.ADDON_MISSING,
      `tableroll's native addon was found neither prebuilt for linux-${process.arch} nor built ` +
        'in build/Release. Build it with `npm rebuild tableroll --build-from-source` (in a ' +
        'checkout: `npm run build:native`); this needs python3, make and a C++ compiler. ' +
        'tableroll runs on Linux only.',
      { cause, final: true },
    );
  }
}

/** The loaded addon. Importing tableroll throws ERR_TABLEROLL_ADDON_MISSING when it is absent. */
export const native: NativeAddon = loadAddon();
