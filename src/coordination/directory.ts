/**
 * The coordination directory's safety checks, and the checks shared by its files.
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
 * node:fs. Why is said once, in native.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ErrorCodes, TablerollError, hasCode } from '../errors.js';
import { native, type FileStatus } from '../native.js';

const { S_IFMT, S_IFDIR, S_IFLNK } = fs.constants;
/** Symlinks followed while checking the path to the directory, as the kernel's limit. */
const MAX_SYMLINKS = 40;
/** sun_path holds 108 bytes, the terminating NUL included. */
const SUN_PATH_MAX = 107;

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

export function myUid(): number {
  return process.getuid?.() ?? 0;
}

/** True when a peer with this uid may exchange descriptors with us: the same user, or root. */
export function isTrustedUid(uid: number): boolean {
  return uid === myUid() || uid === 0;
}

export function unsafe(what: string, why: string): TablerollError {
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

export function isKind(stat: FileStatus, kind: number): boolean {
  return (stat.mode & S_IFMT) === kind;
}

/** open(2) with O_NOFOLLOW: a symlink is refused with ERR_TABLEROLL_UNSAFE_DIRECTORY. */
export function openNoFollow(file: string, flags: number): number {
  try {
    return native.open(file, flags | fs.constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    if (hasCode(err, 'ELOOP')) throw unsafe(file, 'is a symlink');
    throw err;
  }
}
