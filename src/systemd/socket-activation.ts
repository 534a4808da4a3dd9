/**
 * systemd socket activation: a unit started by a `.socket` unit (or with `Sockets=`) receives
 * its listening sockets as fds 3, 4, ... with LISTEN_FDS (how many), LISTEN_PID (for which
 * process) and LISTEN_FDNAMES (colon-separated FileDescriptorName= values). The fd store adopts
 * them under those names, so `fds.listen('web', ...)` returns the activated socket.
 */
import type { Logger } from '../logger.js';
import { native } from '../native.js';
import { inspectFd } from '../fd-sockets.js';
import type { StoredFd } from '../fd-types.js';

/** The first fd systemd passes (SD_LISTEN_FDS_START). */
const LISTEN_FDS_START = 3;

/**
 * The sockets systemd passed to this process, as store entries, and the environment variables
 * removed so that child processes do not think the sockets are theirs. Empty when there are none
 * or they are meant for another process.
 */
export function takeActivatedSockets(
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
): StoredFd[] {
  const count = Number(env.LISTEN_FDS);
  const forUs = Number(env.LISTEN_PID) === process.pid;
  if (!forUs || !Number.isInteger(count) || count <= 0) return [];
  const names = (env.LISTEN_FDNAMES ?? '').split(':');
  delete env.LISTEN_FDS;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDNAMES;
  if (names.length !== count) {
    log.warn({ count, names }, 'LISTEN_FDNAMES does not name every activated socket');
  }
  const taken = new Set<string>();
  const entries: StoredFd[] = [];
  for (let i = 0; i < count; i++) {
    const fd = LISTEN_FDS_START + i;
    let id = names[i] || 'unknown';
    if (taken.has(id)) id = `${id}#${i}`;
    taken.add(id);
    entries.push(describeActivated(id, fd));
  }
  log.info({ ids: entries.map((entry) => entry.id) }, 'adopted socket-activated descriptors');
  return entries;
}

function describeActivated(id: string, fd: number): StoredFd {
  // systemd passes them inheritable; ours are close-on-exec, so our children never get them.
  native.setCloexec(fd, true);
  return { ...inspectFd(fd), id, fd, inherited: true };
}

/** Inherited entries win: an activated socket of the same id is the same socket, a copy. */
export function mergeActivated(
  inherited: StoredFd[],
  activated: StoredFd[],
  log: Logger,
): StoredFd[] {
  const ids = new Set(inherited.map((entry) => entry.id));
  const merged = [...inherited];
  for (const entry of activated) {
    if (ids.has(entry.id)) {
      log.info({ id: entry.id }, 'the previous owner handed over this activated socket already');
      native.close(entry.fd);
    } else {
      merged.push(entry);
    }
  }
  return merged;
}
