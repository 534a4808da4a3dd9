/**
 * Memory of idle processes, as VmRSS in /proc/<pid>/status after they settled: a bare
 * `node -e` process for reference, a process holding an Upgrader with 1 and with 500
 * listeners, and an idle liveroll with its child (its own RSS, and its whole process tree's),
 * then with two children: liveroll keeps one in steady state, two while a roll retires the old
 * one, held here by a child that ignores SIGTERM until liveroll's stop timeout.
 * Several copies of each run side by side; the median is reported.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Child, Line } from '../../scripts/child.js';
import { APP, CLI, baseFlags } from '../../scripts/liveroll-launch.js';
import {
  ROOT,
  removeTempDir,
  sleep,
  startNode,
  stopProcess,
  tempDir,
} from '../support/processes.js';
import { median } from '../support/stats.js';

const IDLE = path.join(ROOT, 'dist/bench/programs/idle-upgrader.js');

/** How many copies, how long they settle. */
export interface MemoryPlan {
  copies: number;
  settleMs: number;
}

/** RSS figures in MiB (medians over the copies). */
export interface MemoryOutcome {
  bareNodeMiB: number;
  upgrader1MiB: number;
  upgrader500MiB: number;
  liverollMiB: number;
  /** liveroll, its child's shell (if any) and the child app. */
  liverollTreeMiB: number;
  liverollTreeProcesses: number;
  /** The same tree during a roll, old and new child both alive. */
  liverollTwoChildrenTreeMiB: number;
  liverollTwoChildrenProcesses: number;
}

/** VmRSS of a process in MiB; NaN when it is gone. */
export function rssMiB(pid: number): number {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return kb ? Number(kb[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** `pid` and all its descendants (by parent pid in /proc). */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // Gone meanwhile.
    }
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]!) ?? []));
  return tree;
}

/** Starts `copies` processes, waits until each is ready and settled, measures, stops them. */
async function measureIdle(
  copies: number,
  settleMs: number,
  start: () => Child,
  ready: (line: Line) => boolean,
  measure: (child: Child) => number[],
  then?: (child: Child) => Promise<void>,
): Promise<number[][]> {
  const children = Array.from({ length: copies }, start);
  try {
    await Promise.all(children.map((child) => child.line(ready, 30_000)));
    if (then) await Promise.all(children.map(then));
    await sleep(settleMs);
    return children.map(measure);
  } finally {
    await Promise.all(children.map((child) => stopProcess(child, 20_000)));
  }
}

const isReady = (line: Line): boolean => line.event === 'ready' || line.msg === 'ready';

/** Measures every kind of idle process. */
export async function measureMemory(plan: MemoryPlan): Promise<MemoryOutcome> {
  const dir = tempDir('tr-mem-');
  try {
    const own = (child: Child): number[] => [rssMiB(child.pid)];
    const bare = await measureIdle(
      plan.copies,
      plan.settleMs,
      () =>
        startNode(
          'console.log(JSON.stringify({ event: "ready" })); setInterval(() => {}, 60000)',
          [],
          { execArgv: ['-e'] },
        ),
      isReady,
      own,
    );
    const upgrader = async (listeners: number): Promise<number[][]> => {
      let n = 0;
      return measureIdle(
        plan.copies,
        plan.settleMs,
        () =>
          startNode(IDLE, [
            '--dir',
            path.join(dir, `u${listeners}-${n++}`),
            '--listeners',
            String(listeners),
          ]),
        isReady,
        own,
      );
    };
    const one = await upgrader(1);
    const many = await upgrader(500);
    let m = 0;
    const startLiveroll = (appFlags: string[], flags: string[]) => (): Child => {
      // `exec`, so that the shell is replaced by the child: an old child that outlives its
      // shell's SIGTERM stays liveroll's own child, and in the tree measured.
      const exec = [process.execPath, APP, '--port', '<<PORT>>', '--health', '<<HEALTHCHECK>>']
        .map((word) => (word.startsWith('<<') ? word : `'${word}'`))
        .concat(appFlags)
        .join(' ');
      const coord = path.join(dir, `lr-${m++}`);
      const base = baseFlags(coord, 'mem');
      return startNode(CLI, [...base, '--id', 'echo v1', '--exec', `exec ${exec}`, ...flags]);
    };
    const tree = (child: Child): number[] => {
      const pids = processTree(child.pid);
      return [
        rssMiB(child.pid),
        pids.reduce((sum, pid) => sum + (rssMiB(pid) || 0), 0),
        pids.length,
      ];
    };
    const liveroll = await measureIdle(
      plan.copies,
      plan.settleMs,
      startLiveroll([], []),
      isReady,
      tree,
    );
    // A forced roll (SIGHUP); the old child ignores its SIGTERM, so both stay until the stop
    // timeout, well after the measurement.
    const roll = async (child: Child): Promise<void> => {
      process.kill(child.pid, 'SIGHUP');
      await child.line(
        (line) => line.msg === 'stopping child (SIGTERM to its process group)',
        30_000,
      );
    };
    const stopTimeoutMs = plan.settleMs + 3000;
    const twoChildren = await measureIdle(
      plan.copies,
      plan.settleMs,
      startLiveroll(['--ignore-sigterm'], ['--stop-timeout', `${stopTimeoutMs}ms`]),
      isReady,
      tree,
      roll,
    );
    const col = (rows: number[][], i = 0): number => median(rows.map((r) => r[i]!));
    return {
      bareNodeMiB: col(bare),
      upgrader1MiB: col(one),
      upgrader500MiB: col(many),
      liverollMiB: col(liveroll),
      liverollTreeMiB: col(liveroll, 1),
      liverollTreeProcesses: col(liveroll, 2),
      liverollTwoChildrenTreeMiB: col(twoChildren, 1),
      liverollTwoChildrenProcesses: col(twoChildren, 2),
    };
  } finally {
    removeTempDir(dir);
  }
}
