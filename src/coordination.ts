/**
 * The coordination directory: its safety checks, the `pid` file that is both the owner record
 * and the lock, and each process's upgrade socket `<dir>/<id>.sock`.
 *
 * The directory is the trust boundary: whoever can connect to an owner's socket can take its
 * listening sockets. So the directory must belong to us and be closed to other users, every
 * directory and symlink on the way to it must belong to us or to root, and the files we create
 * in it are owner-only. Only we (or root) can then add, replace or remove anything in it, and
 * no other user can swap a path component between our checks and our use of the path. Symlinks
 * in it are refused all the same: a `pid` or `<id>.sock` that is a symlink (or another kind of
 * file, or another user's) is never written, chmodded, unlinked or connected to.
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

const { S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, S_IFSOCK } = fs.constants;
/** Longest `pid` file read: an id fits a socket path, so anything longer is not an id. */
export const MAX_PID_FILE_BYTES = 4096;
/** Symlinks followed while checking the path to the directory, as the kernel's limit. */
const MAX_SYMLINKS = 40;

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

function unsafe(what: string, why: string): TablerollError {
  return new TablerollError(ErrorCodes.UNSAFE_DIRECTORY, `${what} ${why}`, { final: true });
}

/**
 * Creates the directory (0700) if needed and refuses it unless it is ours and closed to other
 * users (group and others may not write to it, sticky or not: a shared directory such as /tmp
 * lets another user plant names in it), and unless every directory and symlink on the way to it
 * belongs to us or root.
 */
export function prepareDirectory(dir: string): void {
  if (typeof dir !== 'string' || dir.length === 0) {
    throw new TablerollError(
      ErrorCodes.INVALID_ARGUMENT,
      'the coordination directory must be a path',
    );
  }
  const what = `coordination directory ${dir}`;
  const absolute = path.resolve(dir);
  // What exists of the path is checked before anything is made in it.
  if (checkPath(absolute, what, true) === null) makeDirectory(dir);
  const stat = checkPath(absolute, what, false)!;
  if (!isKind(stat, S_IFDIR)) throw unsafe(what, 'is not a directory');
  if (stat.uid !== myUid()) {
    throw unsafe(what, `belongs to uid ${stat.uid}, not to us (uid ${myUid()})`);
  }
  if ((stat.mode & 0o022) !== 0) {
    throw unsafe(
      what,
      `is writable by other users (mode ${(stat.mode & 0o7777).toString(8)}): use a private directory, such as one made 0700 inside it`,
    );
  }
}

/**
 * Walks `absolute` from the root as the kernel would, following symlinks, and refuses a symlink
 * or a directory on the way that belongs to another user (not us, not root), or a directory on
 * the way that others may write to unless it is sticky (then they cannot replace what is in it).
 * Returns the status of what the path names in the end; null if `allowMissing` and some
 * component does not exist (everything before it was checked).
 */
function checkPath(absolute: string, what: string, allowMissing: boolean): FileStatus | null {
  const pending = absolute.split('/').filter((part) => part !== '');
  let current = '/';
  let stat = native.lstat(current);
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '.') continue;
    checkAncestor(current, stat, what);
    const next = part === '..' ? path.dirname(current) : path.join(current, part);
    let found: FileStatus;
    try {
      found = native.lstat(next);
    } catch (err) {
      if (allowMissing && hasCode(err, 'ENOENT')) return null;
      throw err;
    }
    if (!isKind(found, S_IFLNK)) {
      current = next;
      stat = found;
      continue;
    }
    if (!isTrustedUid(found.uid)) {
      throw unsafe(what, `goes through ${next}, a symlink of uid ${found.uid}`);
    }
    if (++links > MAX_SYMLINKS) throw unsafe(what, 'goes through too many symlinks');
    const target = fs.readlinkSync(next);
    pending.unshift(...target.split('/').filter((p) => p !== ''));
    if (target.startsWith('/')) {
      current = '/';
      stat = native.lstat(current);
    }
  }
  return stat;
}

function checkAncestor(dir: string, stat: FileStatus, what: string): void {
  if (!isTrustedUid(stat.uid)) {
    throw unsafe(what, `is inside ${dir}, which belongs to uid ${stat.uid}`);
  }
  if ((stat.mode & 0o022) !== 0 && (stat.mode & 0o1000) === 0) {
    throw unsafe(what, `is inside ${dir}, which other users may write to and is not sticky`);
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

function isKind(stat: FileStatus, kind: number): boolean {
  return (stat.mode & S_IFMT) === kind;
}

/** open(2) with O_NOFOLLOW: a symlink is refused with ERR_TABLEROLL_UNSAFE_DIRECTORY. */
function openNoFollow(file: string, flags: number): number {
  try {
    return native.open(file, flags | fs.constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    if (hasCode(err, 'ELOOP')) throw unsafe(file, 'is a symlink');
    throw err;
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
    checkSocketFile(file, 'our upgrade socket');
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

/**
 * Refuses `<dir>/<id>.sock` unless it is a socket (not a symlink to one, nor another kind of
 * file) of a user we trust: connecting through a planted symlink would hand our listeners to,
 * or take them from, whatever it points at. Returns false when there is no such file.
 */
export function checkSocketFile(file: string, what: string): boolean {
  let stat: FileStatus;
  try {
    stat = native.lstat(file);
  } catch (err) {
    if (hasCode(err, 'ENOENT')) return false;
    throw err;
  }
  if (isKind(stat, S_IFLNK)) throw unsafe(file, `(${what}) is a symlink`);
  if (!isKind(stat, S_IFSOCK)) throw unsafe(file, `(${what}) is not a socket`);
  if (!isTrustedUid(stat.uid)) throw unsafe(file, `(${what}) belongs to uid ${stat.uid}`);
  return true;
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

/**
 * A socket older than this that refuses connections belongs to a process that is gone. A live
 * process's socket refuses only between its bind() and its listen(), which tableroll's addon
 * and Go's net.Listen make back to back in one call: microseconds, never seconds.
 */
export const STALE_SOCKET_AGE_MS = 2_000;

/**
 * Removes the `<id>.sock` files of processes that are gone, as their owner would have: each a
 * socket of ours, other than `keep`'s and the recorded owner's, at least STALE_SOCKET_AGE_MS
 * old, that refuses connections (a live process's, even one that is not the owner, accepts
 * and closes). Runs only if it gets the coordination lock at once (a newcomer holding it will
 * sweep in its turn). Returns the names removed.
 */
export function sweepStaleSockets(dir: string, keep: string): string[] {
  let file: PidFile;
  try {
    file = PidFile.open(dir);
  } catch {
    return [];
  }
  try {
    if (!file.tryLock()) return [];
    const owner = file.read().toString('utf8');
    const bound = boundUnixPaths();
    return fs.readdirSync(dir).filter((name) => {
      if (!name.endsWith('.sock')) return false;
      const id = name.slice(0, -'.sock'.length);
      const where = path.join(dir, name);
      // Bound by a live socket: not stale, whatever kind it is.
      if (id === keep || id === owner || bound.has(where)) return false;
      return removeIfStale(where);
    });
  } finally {
    file.close();
  }
}

/**
 * The paths of this network namespace's bound unix sockets of any type, listening or not, as
 * they were bound. A file listed here has a live socket behind it: an upgrade socket, or a
 * datagram socket of someone else's that merely refuses a stream connection. A socket bound
 * under another spelling of the path, or in another namespace, is missing here: that only costs
 * a connection attempt, which an upgrade socket answers.
 */
function boundUnixPaths(): Set<string> {
  const paths = new Set<string>();
  let table: string;
  try {
    table = fs.readFileSync('/proc/net/unix', 'utf8');
  } catch {
    return paths;
  }
  for (const row of table.split('\n')) {
    const cols = row.trim().split(/\s+/);
    // Num RefCount Protocol Flags Type St Inode Path: the path is there once bound.
    if (cols.length >= 8 && cols[7]?.startsWith('/')) paths.add(cols.slice(7).join(' '));
  }
  return paths;
}

function removeIfStale(file: string): boolean {
  let stat: FileStatus;
  try {
    stat = native.lstat(file);
  } catch {
    return false;
  }
  if (!isKind(stat, S_IFSOCK) || stat.uid !== myUid()) return false;
  if (Date.now() - stat.mtimeMs < STALE_SOCKET_AGE_MS || !isStaleSocket(file)) return false;
  unlinkUpgradeSocket({ fd: -1, path: file, ino: stat.ino, dev: stat.dev });
  return true;
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

/** PF_EXITING in /proc/<pid>/stat's flags: the thread is in exit(), its descriptors closing. */
const PF_EXITING = 0x4;

/**
 * True when process `pid` is gone, a zombie, or exiting: unlike isProcessGone, a process killed
 * a moment ago counts already, from the point where its descriptors and locks start closing.
 * A process we cannot see (pid 0: another pid namespace) does not count as dying.
 */
export function isProcessDying(pid: number): boolean {
  if (pid <= 0) return false;
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return true;
  }
  // After "pid (comm) ": state is field 3, flags field 9.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  const flags = Number(fields[6]);
  return state === 'Z' || state === 'X' || (flags & PF_EXITING) !== 0;
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
