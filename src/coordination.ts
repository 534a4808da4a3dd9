/**
 * The coordination directory: its safety checks, the `pid` file that is both the owner record
 * and the lock, and each process's upgrade socket `<dir>/<id>.sock`.
 *
 * The directory is the trust boundary: whoever can connect to an owner's socket can take its
 * listening sockets. So the directory must belong to us and be closed to other users, and the
 * files we create in it are owner-only.
 *
 * The calls a handoff makes go through the addon (native.open, native.stat ...) rather than
 * node:fs: the first call of each fs function compiles a chain of Node's internal JavaScript,
 * and a handoff runs once per process, cold.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ErrorCodes, TablerollError, hasCode } from './errors.js';
import { delay, type Deadline } from './deadline.js';
import { native, type FileStatus } from './native.js';
import type { Logger } from './logger.js';

const { S_IFMT, S_IFDIR, S_IFREG } = fs.constants;

/** Name of the owner record and lock file inside the coordination directory. */
export const PID_FILE = 'pid';
/** sun_path holds 108 bytes, the terminating NUL included. */
const SUN_PATH_MAX = 107;
/** flock is retried with a growing pause up to this; Go retries every 100 ms. */
const LOCK_RETRY_MAX_MS = 100;

/** The upgrade socket of process `id`. */
export function socketPath(dir: string, id: string): string {
  return path.join(dir, `${id}.sock`);
}

/** Rejects ids that cannot name a socket file in `dir`. */
export function validateId(dir: string, id: string): void {
  if (typeof id !== 'string' || id.length === 0) {
    throw new TablerollError(ErrorCodes.INVALID_ID, 'the id must be a non-empty string');
  }
  if (id.includes('/') || id.includes('\0') || id === '.' || id === '..') {
    throw new TablerollError(
      ErrorCodes.INVALID_ID,
      `the id ${JSON.stringify(id)} is not a file name`,
    );
  }
  const where = socketPath(dir, id);
  // A UTF-16 code unit is at most 3 bytes of UTF-8: most paths need no count (and a handoff
  // does not compile Buffer's byte counting for them).
  const length = where.length * 3 <= SUN_PATH_MAX ? where.length : Buffer.byteLength(where);
  if (length > SUN_PATH_MAX) {
    throw new TablerollError(
      ErrorCodes.INVALID_ID,
      `the socket path for id ${JSON.stringify(id)} is ${length} bytes; unix sockets allow ${SUN_PATH_MAX}`,
    );
  }
}

function myUid(): number {
  return process.getuid?.() ?? 0;
}

/** True when a peer with this uid may exchange descriptors with us: the same user, or root. */
export function isTrustedUid(uid: number): boolean {
  return uid === myUid() || uid === 0;
}

/**
 * Creates the directory (0700) if needed and refuses one that another user owns or may write
 * to. A world-writable directory is only allowed when it is sticky and ours.
 */
export function prepareDirectory(dir: string): void {
  if (typeof dir !== 'string' || dir.length === 0) {
    throw new TablerollError(
      ErrorCodes.INVALID_ARGUMENT,
      'the coordination directory must be a path',
    );
  }
  makeDirectory(dir);
  const stat = native.stat(dir);
  const unsafe = (why: string): TablerollError =>
    new TablerollError(ErrorCodes.UNSAFE_DIRECTORY, `coordination directory ${dir} ${why}`, {
      final: true,
    });
  if (!isKind(stat, S_IFDIR)) throw unsafe('is not a directory');
  if (stat.uid !== myUid()) throw unsafe(`belongs to uid ${stat.uid}, not to us (uid ${myUid()})`);
  const othersMayWrite = (stat.mode & 0o022) !== 0;
  const sticky = (stat.mode & 0o1000) !== 0;
  if (othersMayWrite && !sticky) {
    throw unsafe(`is writable by other users (mode ${(stat.mode & 0o7777).toString(8)})`);
  }
}

/**
 * mkdir -p with mode 0700; something else by that name is left for the caller's checks. Not
 * node:fs's recursive mkdir: it never returns for a path under /proc (Node 20 to 26 loop when
 * mkdir says ENOENT under a parent that exists).
 */
function makeDirectory(dir: string): void {
  try {
    native.mkdir(dir, 0o700);
    return;
  } catch (err) {
    if (hasCode(err, 'ENOTDIR')) return;
    if (!hasCode(err, 'ENOENT')) throw err;
    const parent = path.dirname(dir);
    if (parent === dir) throw err;
    makeDirectory(parent);
  }
  native.mkdir(dir, 0o700);
}

/** The `pid` file, opened for the duration of one lock. */
export class PidFile {
  private constructor(
    private readonly fd: number,
    readonly path: string,
  ) {}

  /** Opens (creating, owner-only) `<dir>/pid`; refuses a pid file that another user owns. */
  static open(dir: string): PidFile {
    const file = path.join(dir, PID_FILE);
    const fd = native.open(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    try {
      const stat = native.fstat(fd);
      if (!isKind(stat, S_IFREG) || stat.uid !== myUid()) {
        throw new TablerollError(
          ErrorCodes.UNSAFE_DIRECTORY,
          `${file} is not a regular file of ours (uid ${stat.uid})`,
          { final: true },
        );
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
    return readWhole(this.fd);
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

function isKind(stat: FileStatus, kind: number): boolean {
  return (stat.mode & S_IFMT) === kind;
}

/** All of an open file, read from its start. */
function readWhole(fd: number): Buffer {
  const buf = Buffer.allocUnsafe(native.fstat(fd).size);
  let offset = 0;
  while (offset < buf.length) {
    const n = native.pread(fd, buf.subarray(offset), offset);
    if (n === 0) break;
    offset += n;
  }
  return buf.subarray(0, offset);
}

/** True when nobody holds the coordination lock: taken without waiting and released at once. */
export function lockIsFree(dir: string): boolean {
  const file = PidFile.open(dir);
  try {
    return file.tryLock();
  } finally {
    file.close();
  }
}

/** The owner's id as `pid` holds it now, read without the lock; empty when missing. */
export function readPidFile(dir: string): Buffer {
  let fd: number;
  try {
    fd = native.open(path.join(dir, PID_FILE), fs.constants.O_RDONLY, 0);
  } catch {
    return Buffer.alloc(0);
  }
  try {
    return readWhole(fd);
  } finally {
    native.close(fd);
  }
}

/** The upgrade listener of this process, with the file identity needed to unlink only ours. */
export interface UpgradeSocket {
  fd: number;
  path: string;
  ino: number;
  dev: number;
}

/**
 * Binds `<dir>/<id>.sock`. A stale socket of our own id (a crash left it; nobody accepts on it)
 * is removed and bound again; Go never removes it and can then never start that id again.
 */
export function bindUpgradeSocket(dir: string, id: string, log: Logger): UpgradeSocket {
  const file = socketPath(dir, id);
  let fd: number;
  try {
    fd = native.unixListen(file, 128);
  } catch (err) {
    if (!hasCode(err, 'EADDRINUSE')) throw err;
    if (!isStaleSocket(file)) {
      throw new TablerollError(
        ErrorCodes.ID_IN_USE,
        `another live process is listening on ${file}: ids must be unique per process`,
        { cause: err, final: true },
      );
    }
    log.warn({ path: file }, 'removing a stale upgrade socket of our own id');
    fs.unlinkSync(file);
    fd = native.unixListen(file, 128);
  }
  try {
    native.chmod(file, 0o600);
    const stat = native.stat(file);
    return { fd, path: file, ino: stat.ino, dev: stat.dev };
  } catch (err) {
    native.close(fd);
    throw err;
  }
}

/** True when `file` is a unix socket nobody accepts on. */
export function isStaleSocket(file: string): boolean {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(file);
  } catch {
    return false;
  }
  if (!stat.isSocket()) return false;
  try {
    native.close(native.unixConnect(file));
    return false;
  } catch (err) {
    return hasCode(err, 'ECONNREFUSED');
  }
}

/** Unlinks the upgrade socket, but only if the file is still the one we bound. */
export function unlinkUpgradeSocket(sock: UpgradeSocket): void {
  try {
    const stat = fs.lstatSync(sock.path);
    if (stat.ino === sock.ino && stat.dev === sock.dev) fs.unlinkSync(sock.path);
  } catch {
    // Already gone.
  }
}

/**
 * True when process `pid` exits within `withinMs`. A dying process closes its fds before it
 * becomes a zombie, so a peer's hang-up can be seen a moment before the exit is.
 */
export async function processExited(pid: number, withinMs = 500): Promise<boolean> {
  const end = Date.now() + withinMs;
  for (;;) {
    if (isProcessGone(pid)) return true;
    if (Date.now() >= end) return false;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * True when process `pid` no longer exists, or is a zombie with no thread left running: then it
 * holds nothing any more. A zombie alone is not enough: /proc shows the state of the main
 * thread, and a SIGKILLed Node process's other threads may still be exiting, holding its
 * descriptors (a listener's port stays bound) until the last of them is done.
 */
export function isProcessGone(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return hasCode(err, 'ESRCH');
  }
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const state = /^State:\s+(\S)/m.exec(status)?.[1];
    const threads = Number(/^Threads:\s+(\d+)/m.exec(status)?.[1]);
    return (state === 'Z' || state === 'X') && threads <= 1;
  } catch {
    return true;
  }
}
