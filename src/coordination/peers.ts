/**
 * Whether a peer process is alive, dying or gone, from /proc: a peer's hang-up alone does not
 * say whether it died (and left us its sockets) or refused.
 */
import fs from 'node:fs';
import { hasCode } from '../errors.js';

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
