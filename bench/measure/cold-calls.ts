/**
 * Whether the addon's stand-ins for Node's API earn their place: the calls a newcomer makes once
 * per process (the coordination directory's file calls, a deadline's timer), cold, in fresh
 * processes, through the addon and through Node, alternated (bench/programs/cold-calls.ts).
 * A stand-in stays only if it saves more than the runs' own spread.
 */
import path from 'node:path';
import { ROOT, removeTempDir, startNode, tempDir } from '../support/processes.js';
import { fmt, quantile, summarize, table, type Summary } from '../support/stats.js';

const PROGRAM = path.join(ROOT, 'dist/bench/programs/cold-calls.js');

export interface ColdCallsPlan {
  /** Fresh processes per group and way. */
  runs: number;
}

export interface ColdCallsRow {
  calls: 'files' | 'timer';
  /** Microseconds from the first call to the last, the clock's own cost taken off. */
  addon: Summary;
  node: Summary;
  /** Interquartile range of each way: how much runs of the same thing differ. */
  spread: { addon: number; node: number };
}

export interface ColdCallsOutcome {
  clockUs: Summary;
  rows: ColdCallsRow[];
}

async function once(calls: string, via: string, dir: string): Promise<number> {
  const child = startNode(PROGRAM, ['--calls', calls, '--via', via, '--dir', dir]);
  const line = await child.line('cold', 30_000);
  await child.exited;
  return line.us as number;
}

function iqr(values: number[]): number {
  return quantile(values, 0.75) - quantile(values, 0.25);
}

export async function measureColdCalls(plan: ColdCallsPlan): Promise<ColdCallsOutcome> {
  const dir = tempDir('tr-cold-');
  try {
    const clock: number[] = [];
    const samples: Record<string, number[]> = {};
    for (let i = 0; i < plan.runs; i++) {
      clock.push(await once('none', 'none', dir));
      for (const calls of ['files', 'timer']) {
        const ways = i % 2 ? ['node', 'addon'] : ['addon', 'node'];
        for (const via of ways)
          (samples[`${calls} ${via}`] ??= []).push(await once(calls, via, dir));
      }
    }
    const clockUs = summarize(clock);
    const net = (key: string) => samples[key]!.map((us) => us - clockUs.median);
    const rows = (['files', 'timer'] as const).map((calls) => {
      const addon = net(`${calls} addon`);
      const node = net(`${calls} node`);
      return {
        calls,
        addon: summarize(addon),
        node: summarize(node),
        spread: { addon: iqr(addon), node: iqr(node) },
      };
    });
    return { clockUs, rows };
  } finally {
    removeTempDir(dir);
  }
}

const LABELS = {
  files: 'joining a directory: lstat walk, mkdir, pid file, socket file',
  timer: "a deadline's timer, armed and cancelled",
};

export function coldCallsReport(outcome: ColdCallsOutcome): string {
  const rows = outcome.rows.map((row) => {
    const saved = row.node.median - row.addon.median;
    const noise = Math.max(row.spread.addon, row.spread.node);
    return [
      LABELS[row.calls],
      fmt(row.addon.median, 0),
      fmt(row.node.median, 0),
      fmt(saved, 0),
      fmt(noise, 0),
      saved > noise ? 'keep the addon' : 'use Node',
    ];
  });
  return [
    `Cold first calls, once per fresh process, microseconds (medians of ${outcome.rows[0]?.addon.n ?? 0};`,
    `the clock's own ${fmt(outcome.clockUs.median, 0)} us taken off; noise = the larger interquartile range):`,
    table(['calls', 'addon', 'node:fs / setTimeout', 'saved', 'noise', 'verdict'], rows),
  ].join('\n');
}
