/**
 * The `pid` file: the owner record (the owner's id, no newline) and, by its flock, the
 * coordination lock.
 */
import fs from 'node:fs';
import path from 'node:path';
import { delay, type Deadline } from '../deadline.js';
import { native } from '../native.js';
import type { Logger } from '../logger.js';
import { isKind, myUid, openNoFollow, unsafe } from './directory.js';

const { S_IFREG } = fs.constants;
/** Longest `pid` file read: an id fits a socket path, so anything longer is not an id. */
export const MAX_PID_FILE_BYTES = 4096;

/** Name of the owner record and lock file inside the coordination directory. */
export const PID_FILE = 'pid';
/** flock is retried with a growing pause up to this; Go retries every 100 ms. */
const LOCK_RETRY_MAX_MS = 100;

/** The `pid` file, opened for the duration of one lock. */
export class PidFile {
  private constructor(
    private readonly fd: number,
    readonly path: string,
  ) {}

  /**
   * Opens (creating, owner-only) `<dir>/pid`, never through a symlink; refuses anything but a
   * regular file of ours with one link before changing it in any way.
   */
  static open(dir: string): PidFile {
    const file = path.join(dir, PID_FILE);
    const fd = openNoFollow(file, fs.constants.O_RDWR | fs.constants.O_CREAT);
    try {
      const stat = native.fstat(fd);
      if (!isKind(stat, S_IFREG) || stat.uid !== myUid() || stat.nlink !== 1) {
        const kind = isKind(stat, S_IFREG) ? `a file with ${stat.nlink} links` : 'not a file';
        throw unsafe(file, `is not a regular file of ours (uid ${stat.uid}, ${kind})`);
      }
      // Go creates it 0755: tighten it, nobody else needs to read who the owner is.
      if ((stat.mode & 0o077) !== 0) native.fchmod(fd, 0o600);
    } catch (err) {
      native.close(fd);
      throw err;
    }
    return new PidFile(fd, file);
  }

  /** Takes the exclusive flock, retrying until it is free or `limit` fires. */
  async lock(limit: Deadline, log: Logger): Promise<void> {
    let pause = 5;
    let logged = false;
    while (!native.flockExclusive(this.fd)) {
      if (!logged) {
        log.info({ path: this.path }, 'waiting for the coordination lock');
        logged = true;
      }
      await delay(pause, limit);
      pause = Math.min(pause * 2, LOCK_RETRY_MAX_MS);
    }
  }

  /** Takes the exclusive flock if it is free now; false when someone else holds it. */
  tryLock(): boolean {
    return native.flockExclusive(this.fd);
  }

  /** The owner's id as raw bytes; empty when there is no owner. Not trimmed. */
  read(): Buffer {
    const data = readCapped(this.fd);
    if (data.length > MAX_PID_FILE_BYTES) {
      throw unsafe(this.path, `holds more than ${MAX_PID_FILE_BYTES} bytes: not an owner id`);
    }
    return data;
  }

  /** Records `id` as the owner, no newline. Only while holding the lock. */
  write(id: string): void {
    const data = Buffer.from(id, 'utf8');
    // Emptied first only when the old id is longer: emptying frees the file's block, and on
    // ext4 the write then allocates one again and the close flushes it (auto_da_alloc), 0.3 to
    // 5 ms. A same-length or longer id replaces the old one in a single write.
    if (native.fstat(this.fd).size > data.length) native.ftruncate(this.fd, 0);
    let offset = 0;
    while (offset < data.length)
      offset += native.pwrite(this.fd, offset === 0 ? data : data.subarray(offset), offset);
  }

  /** Closing the file releases the lock. */
  close(): void {
    native.close(this.fd);
  }
}

/** An open file from its start, at most MAX_PID_FILE_BYTES + 1 bytes of it. */
function readCapped(fd: number): Buffer {
  const size = Math.min(native.fstat(fd).size, MAX_PID_FILE_BYTES + 1);
  const buf = Buffer.allocUnsafe(size);
  let offset = 0;
  while (offset < buf.length) {
    const n = native.pread(fd, buf.subarray(offset), offset);
    if (n === 0) break;
    offset += n;
  }
  return buf.subarray(0, offset);
}

/** The owner's id as `pid` holds it now, read without the lock; empty when missing. */
export function readPidFile(dir: string): Buffer {
  let fd: number;
  try {
    fd = native.open(path.join(dir, PID_FILE), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW, 0);
  } catch {
    return Buffer.alloc(0);
  }
  try {
    return readCapped(fd);
  } finally {
    native.close(fd);
  }
}
