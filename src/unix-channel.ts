/**
 * An upgrade session's connection: a non-blocking unix stream socket owned by the addon, read
 * and written with recvmsg/sendmsg so descriptors are never lost, and waited on with a Poller on
 * Node's event loop. One wait at a time: the protocol is strictly sequential.
 *
 * Never read ahead of what the protocol asks for: a descriptor is attached to specific bytes,
 * and bytes read as part of the wrong message lose it or pin it to the wrong entry.
 */
import { ErrorCodes, TablerollError, hasCode } from './errors.js';
import { delay, type Deadline } from './deadline.js';
import { DISCONNECT, READABLE, WRITABLE, native, type Poller } from './native.js';
import { protocolError } from './protocol.js';

/** What one read with descriptors returned. */
export interface FdMessage {
  data: Buffer;
  fds: number[];
}

/** Closes every fd in the list, ignoring errors (for cleanup paths). */
export function closeAll(fds: Iterable<number>): void {
  for (const fd of fds) {
    try {
      native.close(fd);
    } catch {
      // Already closed: nothing left to release.
    }
  }
}

/** An async, descriptor-safe wrapper around one connected unix stream socket. */
export class UnixChannel {
  readonly fd: number;
  private readonly poller: Poller;
  private pending: ((err: Error | null) => void) | null = null;
  private closed = false;

  constructor(fd: number) {
    this.fd = fd;
    this.poller = new native.Poller(fd, (err) => {
      this.poller.stop();
      const settle = this.pending;
      this.pending = null;
      settle?.(err);
    });
  }

  /** Connects to a unix socket, retrying while its backlog is full. */
  static async connect(path: string, limit: Deadline): Promise<UnixChannel> {
    for (let pause = 1; ; pause = Math.min(pause * 2, 50)) {
      try {
        return new UnixChannel(native.unixConnect(path));
      } catch (err) {
        if (!hasCode(err, 'EAGAIN')) throw err;
      }
      await delay(pause, limit);
    }
  }

  /** Reads exactly `length` bytes that must carry no descriptors. */
  async readExact(length: number, limit: Deadline): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    let offset = 0;
    while (offset < length) {
      const got = this.recv(buf, offset, length - offset);
      if (got === null) {
        await this.wait(READABLE, limit);
        continue;
      }
      if (got.fds.length > 0) {
        closeAll(got.fds);
        throw protocolError(`${got.fds.length} descriptor(s) arrived with protocol bytes`);
      }
      if (got.data.length === 0) throw peerClosed(offset, length);
      offset += got.data.length;
    }
    return buf;
  }

  /** One recvmsg of at most `maxLength` bytes, with whatever descriptors came with them. */
  async readWithFds(maxLength: number, limit: Deadline): Promise<FdMessage> {
    const buf = Buffer.allocUnsafe(maxLength);
    for (;;) {
      const got = this.recv(buf, 0, maxLength);
      if (got !== null) return got;
      await this.wait(READABLE, limit);
    }
  }

  /** One recvmsg if anything is there now, without waiting; null when nothing is. */
  readNow(maxLength: number): FdMessage | null {
    return this.recv(Buffer.allocUnsafe(maxLength), 0, maxLength);
  }

  /**
   * Up to `max` messages without waiting, each read into `buf` from its start; null when
   * nothing is there. Per message: [bytes, fd count, ...fds]; see native.recvEach.
   */
  readEachNow(buf: Buffer, max: number): number[] | null {
    return this.reading(() => native.recvEach(this.fd, buf, max));
  }

  /** Resolves once there is something to read (or the peer hung up). */
  readable(limit: Deadline): Promise<void> {
    return this.wait(READABLE, limit);
  }

  /**
   * One sendmsg of `data` without waiting, `passFd` (unless -1) with its first byte: the bytes
   * sent, possibly fewer than asked, or -1 when the socket is full (nothing was sent).
   */
  writeNow(data: Buffer, passFd = -1): number {
    try {
      return native.send(this.fd, data, passFd);
    } catch (err) {
      throw new TablerollError(ErrorCodes.HANDOFF_FAILED, 'could not write to the peer', {
        cause: err,
      });
    }
  }

  /** Writes all of `data`; `passFd` (unless -1) travels with its first byte. */
  async write(data: Buffer, limit: Deadline, passFd = -1): Promise<void> {
    let offset = 0;
    let fd = passFd;
    while (offset < data.length) {
      const sent = this.writeNow(offset === 0 ? data : data.subarray(offset), fd);
      if (sent < 0) {
        await this.wait(WRITABLE, limit);
        continue;
      }
      offset += sent;
      fd = -1;
    }
  }

  /**
   * Resolves when the peer closes its end or sends anything, which is an error while the
   * protocol expects silence. The watch does not keep the process alive.
   */
  async untilPeerSpeaks(limit: Deadline): Promise<void> {
    this.poller.unref();
    try {
      await this.wait(READABLE | DISCONNECT, limit);
    } finally {
      this.poller.ref();
    }
  }

  /** Closes the socket. Idempotent; a pending wait rejects. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const settle = this.pending;
    this.pending = null;
    this.poller.close();
    native.close(this.fd);
    settle?.(new TablerollError(ErrorCodes.HANDOFF_FAILED, 'the connection was closed'));
  }

  /** Runs a read of the addon on the open socket, its failure a HANDOFF_FAILED. */
  private reading<T>(read: () => T): T {
    if (this.closed)
      throw new TablerollError(ErrorCodes.HANDOFF_FAILED, 'the connection was closed');
    try {
      return read();
    } catch (err) {
      throw new TablerollError(ErrorCodes.HANDOFF_FAILED, 'could not read from the peer', {
        cause: err,
      });
    }
  }

  private recv(buf: Buffer, offset: number, length: number): FdMessage | null {
    const got = this.reading(() => native.recv(this.fd, buf, offset, length));
    if (got === null) return null;
    if (got.truncated) throw protocolError('descriptors were truncated (MSG_CTRUNC)');
    return { data: buf.subarray(offset, offset + got.bytes), fds: got.fds };
  }

  private wait(events: number, limit: Deadline): Promise<void> {
    if (this.pending) throw new TablerollError(ErrorCodes.BUG, 'BUG: two waits on one channel');
    if (limit.reason) return Promise.reject(limit.reason);
    return new Promise<void>((resolve, reject) => {
      const unsubscribe = limit.onFire((reason) => {
        this.pending = null;
        this.poller.stop();
        reject(reason);
      });
      this.pending = (err) => {
        unsubscribe();
        if (err instanceof TablerollError || err === null) {
          if (err) reject(err);
          else resolve();
        } else {
          // A reset peer shows up as a poll error (libuv reports EBADF).
          reject(
            new TablerollError(ErrorCodes.HANDOFF_FAILED, 'the connection failed', { cause: err }),
          );
        }
      };
      this.poller.start(events);
    });
  }
}

function peerClosed(got: number, wanted: number): TablerollError {
  const detail = got === 0 ? '' : ` after ${got} of ${wanted} bytes`;
  return new TablerollError(ErrorCodes.HANDOFF_FAILED, `the peer closed the connection${detail}`);
}
