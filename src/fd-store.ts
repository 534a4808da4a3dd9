/**
 * The fd store: the descriptors a process hands to its successor, keyed by string id.
 *
 * The store keeps its own copy of every descriptor and hands the application duplicates, so the
 * application may close its servers at will without invalidating what the store will send, and
 * the store never closes an fd the application uses. Entries inherited from the previous owner
 * are returned for the same id instead of binding again. Inherited conns and files are passed
 * on whether or not this process used them (Go v3+ silently drops them). An inherited listener
 * that this process never asked for by `ready()` is closed there by default: kept, it would
 * queue connections that nobody accepts (a port the new version moved away from becomes a
 * black hole, where a closed port refuses at once).
 */
import { ErrorCodes, TablerollError, asTablerollError } from './errors.js';
import {
  bindTcp,
  bindUdp,
  bindUnix,
  checkId,
  checkInherited,
  checkOptionsObject,
  checkPort,
  describe,
  describeId,
  fdOf,
  portOf,
  resolveHost,
} from './fd-sockets.js';
import type {
  FdHandle,
  FdInfo,
  FdSource,
  StoredFd,
  TcpListenOptions,
  UdpListenOptions,
  UnixListenOptions,
} from './fd-types.js';
import type { FdKind } from './protocol.js';
import { native } from './native.js';
import type { Logger } from './logger.js';

/** How the Upgrader lets the store know whether it may change. */
export interface StoreGuard {
  /** Throws when the store may not change now (transfer in progress, completed, stopped). */
  assertMutable(): void;
  /** Throws when the store's descriptors are gone (stopped). */
  assertUsable(): void;
  /** Called after every change of the store's contents. */
  changed(): void;
}

/** The descriptors this process owns and will hand over, by id. */
export class Fds {
  private readonly entries = new Map<string, StoredFd>();
  /** Inherited ids this process has asked for (listen, listener, conn, file). */
  private readonly claimed = new Set<string>();

  /** @internal Created by the Upgrader. */
  constructor(
    private readonly guard: StoreGuard,
    inherited: readonly StoredFd[] = [],
    private readonly log?: Logger,
  ) {
    for (const entry of inherited) this.entries.set(entry.id, entry);
  }

  /**
   * A listening TCP or unix stream socket for `id`: the inherited one if there is one, else a
   * new one. Pass the result to `server.listen()`. Each call returns a new duplicate fd.
   */
  async listen(id: string, options: TcpListenOptions | UnixListenOptions): Promise<FdHandle> {
    try {
      return await this.listenOn(id, options);
    } catch (err) {
      throw asTablerollError(err, ErrorCodes.LISTEN_FAILED, `cannot listen for ${describeId(id)}`);
    }
  }

  private async listenOn(
    id: string,
    options: TcpListenOptions | UnixListenOptions,
  ): Promise<FdHandle> {
    checkId(id);
    checkOptionsObject(options);
    const found = this.lookup(id, 'listener');
    if (found) {
      this.warnIfMoved(id, options);
      return found;
    }
    if ('path' in options && typeof options.path === 'string')
      return this.create(id, () => bindUnix(options));
    const tcp = options as TcpListenOptions;
    checkPort(tcp.port);
    const address = await resolveHost(tcp.host);
    return this.lookup(id, 'listener') ?? this.create(id, () => bindTcp(tcp, address));
  }

  /**
   * A bound UDP socket for `id` (stored as a conn, as Go does): the inherited one if there is
   * one, else a new one. Pass the result to `dgram.Socket#bind()`.
   */
  async listenUdp(id: string, options: UdpListenOptions): Promise<FdHandle> {
    try {
      return await this.bindUdpFor(id, options);
    } catch (err) {
      throw asTablerollError(err, ErrorCodes.LISTEN_FAILED, `cannot bind ${describeId(id)}`);
    }
  }

  private async bindUdpFor(id: string, options: UdpListenOptions): Promise<FdHandle> {
    checkId(id);
    checkOptionsObject(options);
    const found = this.lookup(id, 'conn');
    if (found) return found;
    checkPort(options.port);
    const address = await resolveHost(options.host, options.type);
    return this.lookup(id, 'conn') ?? this.create(id, () => bindUdp(options, address));
  }

  /** Stores a listening socket the application made itself (a listening net.Server, or an fd). */
  addListener(id: string, source: FdSource): void {
    this.adopt(id, 'listener', source);
  }

  /** Stores a connection (a net.Socket, a connected or bound datagram socket's fd). */
  addConn(id: string, source: FdSource): void {
    this.adopt(id, 'conn', source);
  }

  /** Stores an open file. `name` is informational (sent to the successor). */
  addFile(id: string, source: FdSource, name = ''): void {
    this.adopt(id, 'file', source, name);
  }

  /** A duplicate of the listener stored under `id`, or undefined. */
  listener(id: string): FdHandle | undefined {
    return this.lookup(id, 'listener');
  }

  /** A duplicate of the conn stored under `id`, or undefined. */
  conn(id: string): FdHandle | undefined {
    return this.lookup(id, 'conn');
  }

  /** A duplicate of the file stored under `id`, or undefined. */
  file(id: string): FdHandle | undefined {
    return this.lookup(id, 'file');
  }

  /** Forgets `id` and closes the store's copy; true if it was there. */
  remove(id: string): boolean {
    this.guard.assertMutable();
    const entry = this.entries.get(id);
    if (!entry) return false;
    this.entries.delete(id);
    native.close(entry.fd);
    this.guard.changed();
    return true;
  }

  /**
   * The address the socket stored under `id` is bound to, as the kernel reports it: the port
   * picked for a listen on port 0, say (`list()` keeps the address as it was asked for, as Go
   * does on the wire). Undefined when `id` is not stored or is not a socket.
   */
  localAddress(
    id: string,
  ): { family: 'IPv4' | 'IPv6'; address: string; port: number } | { path: string } | undefined {
    const entry = this.entries.get(id);
    const info = entry === undefined ? undefined : native.socketInfo(entry.fd);
    if (!info || info.family === 'other') return undefined;
    if (info.family === 'unix') return { path: info.path };
    const family = info.family === 'inet' ? 'IPv4' : 'IPv6';
    return { family, address: info.address, port: info.port };
  }

  /** True when `id` is stored. */
  has(id: string): boolean {
    return this.entries.has(id);
  }

  /** Every stored descriptor, in the order they will be handed over. */
  list(): FdInfo[] {
    return [...this.entries.values()].map(({ fd: _fd, ...info }) => info);
  }

  /** @internal The entries and fds to send to a newcomer, in order. */
  snapshot(): StoredFd[] {
    return [...this.entries.values()];
  }

  /**
   * @internal At ready(): closes the store's copy of every inherited listener this process never
   * asked for, and logs what it does with each unclaimed entry. Returns the ids closed.
   */
  closeUnclaimedListeners(keep: boolean): string[] {
    const closed: string[] = [];
    for (const entry of this.entries.values()) {
      if (!entry.inherited || this.claimed.has(entry.id)) continue;
      const fields = { fdId: entry.id, kind: entry.kind, addr: entry.addr };
      if (entry.kind !== 'listener' || keep) {
        this.log?.info(fields, 'passing on an inherited descriptor this process did not use');
        continue;
      }
      this.log?.warn(fields, 'closing an inherited listener this process did not ask for');
      this.entries.delete(entry.id);
      native.close(entry.fd);
      closed.push(entry.id);
    }
    if (closed.length > 0) this.guard.changed();
    return closed;
  }

  /** @internal Closes the store's copies (never the duplicates handed out). */
  closeAll(): void {
    for (const entry of this.entries.values()) {
      try {
        native.close(entry.fd);
      } catch {
        // Nothing else to release.
      }
    }
    this.entries.clear();
  }

  private lookup(id: string, kind: FdKind): FdHandle | undefined {
    this.guard.assertUsable();
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    if (entry.kind !== kind) {
      throw new TablerollError(
        ErrorCodes.KIND_MISMATCH,
        `id ${JSON.stringify(id)} holds a ${entry.kind}, not a ${kind}`,
      );
    }
    if (entry.inherited && !this.claimed.has(id)) checkInherited(entry);
    const copy = { fd: native.dup(entry.fd) };
    this.claimed.add(id);
    return copy;
  }

  /** An inherited listener is returned as it is: say so when the caller asked for another address. */
  private warnIfMoved(id: string, options: TcpListenOptions | UnixListenOptions): void {
    const entry = this.entries.get(id);
    if (!entry?.inherited) return;
    const wanted =
      'path' in options && typeof options.path === 'string'
        ? options.path
        : (options as TcpListenOptions).port;
    const had = entry.network === 'unix' ? entry.addr : portOf(entry.addr);
    // Port 0 asks for any port; an address Go left empty says nothing.
    if (wanted === 0 || had === 0 || had === undefined || had === '' || had === wanted) return;
    this.log?.warn(
      { fdId: id, inherited: entry.addr, asked: wanted },
      'returning the inherited listener, which differs from the address asked for: use another id for another address',
    );
  }

  private create(id: string, make: () => Omit<StoredFd, 'id' | 'inherited'>): FdHandle {
    this.guard.assertMutable();
    const made = make();
    this.entries.set(id, { ...made, id, inherited: false });
    this.guard.changed();
    return { fd: native.dup(made.fd) };
  }

  private adopt(id: string, kind: FdKind, source: FdSource, name = ''): void {
    checkId(id);
    this.guard.assertMutable();
    if (this.entries.has(id)) {
      throw new TablerollError(
        ErrorCodes.DUPLICATE_ID,
        `id ${JSON.stringify(id)} is already stored`,
      );
    }
    let fd: number;
    try {
      fd = native.dup(fdOf(source));
    } catch (err) {
      throw asTablerollError(
        err,
        ErrorCodes.INVALID_ARGUMENT,
        `${describeId(id)}: not an open descriptor`,
      );
    }
    try {
      const described = describe(kind, fd, name);
      this.entries.set(id, { ...described, id, fd, inherited: false });
    } catch (err) {
      native.close(fd);
      throw err;
    }
    this.guard.changed();
  }
}
