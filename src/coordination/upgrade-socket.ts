/**
 * The upgrade sockets `<dir>/<id>.sock`: binding ours, checking a peer's before connecting,
 * and removing the ones crashed processes left behind.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ErrorCodes, TablerollError, hasCode } from '../errors.js';
import { native, type FileStatus } from '../native.js';
import type { Logger } from '../logger.js';
import { isKind, isTrustedUid, myUid, socketPath, unsafe } from './directory.js';
import { PidFile } from './pid-file.js';

const { S_IFLNK, S_IFSOCK } = fs.constants;

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
