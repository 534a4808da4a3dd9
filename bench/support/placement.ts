/**
 * Where the fronts benchmark runs its processes. On 2 cores wrk, the app and the front share the
 * CPU, and where the scheduler puts them moves a front's rate by a third: nginx's worker on the
 * app's core gave 16,600-19,000 req/s where the same nginx on a core of its own gave 25,600-29,100
 * in the same run (docs/benchmarks.md). Pinning the app to one core and each front in turn to
 * the other gives every front the same placement, run after run; wrk is left to the scheduler.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { hasCommand } from '../../scripts/node-lines.js';

/** The two CPUs used: the app's and the front's. */
export interface Layout {
  app: number;
  front: number;
  /** Every CPU this process may run on, as taskset writes a list ("0-3"). */
  all: string;
}

/** The CPUs this process may run on, from /proc (Linux), or undefined. */
function allowedCpus(): { list: string; cpus: number[] } | undefined {
  try {
    const status = fs.readFileSync('/proc/self/status', 'utf8');
    const list = /^Cpus_allowed_list:\s*(\S+)$/m.exec(status)?.[1];
    if (list === undefined) return undefined;
    const cpus: number[] = [];
    for (const part of list.split(',')) {
      const [from, to] = part.split('-').map(Number);
      for (let cpu = from!; cpu <= (to ?? from!); cpu++) cpus.push(cpu);
    }
    return { list, cpus };
  } catch {
    return undefined;
  }
}

/** The layout to pin to, or why the processes are left to the scheduler. */
export function chooseLayout(): Layout | { unpinned: string } {
  if (!hasCommand('taskset')) return { unpinned: 'taskset is not installed (util-linux)' };
  const allowed = allowedCpus();
  if (allowed === undefined) return { unpinned: 'the allowed CPUs cannot be read from /proc' };
  if (allowed.cpus.length < 2) return { unpinned: 'fewer than 2 CPUs are allowed' };
  return { app: allowed.cpus[0]!, front: allowed.cpus[1]!, all: allowed.list };
}

/**
 * Pins every thread of each process to `cpus` (a taskset list). A thread that exits while
 * taskset walks them fails the call, which is then made once more; a process gone is skipped.
 */
export function pin(pids: readonly number[], cpus: string): void {
  for (const pid of pids) {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        execFileSync('taskset', ['--all-tasks', '--pid', '--cpu-list', cpus, String(pid)], {
          stdio: 'ignore',
        });
        break;
      } catch {
        if (!fs.existsSync(`/proc/${pid}`)) break;
      }
    }
  }
}
