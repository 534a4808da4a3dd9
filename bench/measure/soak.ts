/**
 * Soak: what a long-lived process gathers over many handoffs.
 *
 * - liveroll forced through many rolls (SIGHUP: a new child, health-checked, the old one drained
 *   and stopped) under a steady load;
 * - an owner through many failed handoffs (newcomers that connect, receive the descriptors and
 *   go away before ready()).
 *
 * Each process is sampled from outside: RSS and open descriptors from /proc, and the JavaScript
 * heap and libuv's active handles from a diagnostic report it writes on SIGUSR2
 * (`node --report-on-signal`), after a few rolls and at the end. Growth must be flat.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Upgrader } from 'tableroll';
import type { Child, Line } from '../../scripts/child.js';
import { startLoad } from '../../scripts/http-load.js';
import { APP, CLI, baseFlags } from '../../scripts/liveroll-launch.js';
import { ROOT, removeTempDir, startNode, stopProcess, tempDir } from '../support/processes.js';

/** How long the soak runs. */
export interface SoakPlan {
  rolls: number;
  failedHandoffs: number;
}

/** One sample of a process. */
export interface ProcessSample {
  after: number;
  rssMiB: number;
  heapUsedMiB: number;
  /** What V8 holds for its heap, used or not: it grows to a steady size and keeps it. */
  heapTotalMiB: number;
  fds: number;
  handles: number;
}

/** The whole soak. */
export interface SoakOutcome {
  liveroll: { samples: ProcessSample[]; served: number; failed: number };
  owner: { samples: ProcessSample[] };
}

const msg =
  (text: string, fields: Record<string, unknown> = {}) =>
  (line: Line): boolean =>
    line.msg === text && Object.entries(fields).every(([k, v]) => line[k] === v);

/**
 * Open descriptors of `pid`, not counting connected TCP sockets: the load's connections come and
 * go, and would hide a leak of one descriptor or show one that is not there.
 */
function descriptorsBesidesConnections(pid: number): number {
  const connections = new Set<string>();
  for (const table of ['tcp', 'tcp6']) {
    for (const row of fs.readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      const cols = row.trim().split(/\s+/);
      // cols[3] is the state (0A: listening), cols[9] the socket's inode.
      if (cols.length > 9 && cols[3] !== '0A') connections.add(`socket:[${cols[9]}]`);
    }
  }
  return fs.readdirSync(`/proc/${pid}/fd`).filter((fd) => {
    try {
      return !connections.has(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
    } catch {
      return false;
    }
  }).length;
}

function reportFlags(reports: string): string[] {
  return ['--report-on-signal', '--report-signal=SIGUSR2', `--report-directory=${reports}`];
}

/** Waits for a new file ending in `suffix` in `dir` whose size has stopped changing. */
async function newFile(dir: string, before: Set<string>, suffix: string): Promise<string> {
  const deadline = Date.now() + 60_000;
  let last = -1;
  for (;;) {
    const name = fs.readdirSync(dir).find((f) => !before.has(f) && f.endsWith(suffix));
    if (name !== undefined) {
      const size = fs.statSync(path.join(dir, name)).size;
      if (size > 0 && size === last) return path.join(dir, name);
      last = size;
    }
    if (Date.now() > deadline) throw new Error(`no ${suffix} file in ${dir}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The process's own view (heap, handles) from a report, and /proc's (RSS, descriptors). */
async function sample(
  child: Child,
  reports: string,
  after: number,
  collect = false,
): Promise<ProcessSample> {
  const status = fs.readFileSync(`/proc/${child.pid}/status`, 'utf8');
  const rssKiB = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
  const fds = descriptorsBesidesConnections(child.pid);
  // A process that takes commands collects its garbage first, so that its heap figure is what
  // is still reachable (a heap snapshot would do it for any process, but keeps the memory).
  if (collect) {
    const from = child.lines.length;
    child.send('gc');
    await child.line('gc', 10_000, from);
  }
  const before = new Set(fs.readdirSync(reports));
  child.proc.kill('SIGUSR2');
  const file = await newFile(reports, before, '.json');
  const report = JSON.parse(fs.readFileSync(file, 'utf8')) as {
    javascriptHeap: { usedMemory: number; totalMemory: number };
    libuv: { is_active: boolean }[];
  };
  fs.rmSync(file);
  return {
    after,
    rssMiB: rssKiB / 1024,
    heapUsedMiB: report.javascriptHeap.usedMemory / 1048576,
    heapTotalMiB: report.javascriptHeap.totalMemory / 1048576,
    fds,
    handles: report.libuv.filter((h) => h.is_active).length,
  };
}

async function soakLiveroll(
  plan: SoakPlan,
  checkpoints: number[],
): Promise<SoakOutcome['liveroll']> {
  const dir = tempDir('lr-soak-');
  const reports = path.join(dir, 'reports');
  fs.mkdirSync(reports);
  const exec = `exec '${process.execPath}' '${APP}' --port <<PORT>> --health <<HEALTHCHECK>>`;
  const liveroll = startNode(
    CLI,
    [...baseFlags(path.join(dir, 'coord'), 'soak'), '--id', 'echo v1', '--exec', exec],
    { execArgv: reportFlags(reports) },
  );
  try {
    await liveroll.line(msg('ready'), 30_000);
    const port = liveroll.lines.find(msg('serving'))!.port as number;
    const load = startLoad(
      { host: '127.0.0.1', port },
      { keepAliveClients: 2, freshClients: 2, maxMs: 3_600_000 },
    );
    const samples: ProcessSample[] = [];
    for (let roll = 1; roll <= plan.rolls; roll++) {
      const from = liveroll.lines.length;
      liveroll.proc.kill('SIGHUP');
      await liveroll.line(msg('child stopped', { child: `child-${roll}` }), 60_000, from);
      // Keep only the last lines: a long soak must not measure the bench's own memory.
      if (liveroll.lines.length > 1_000) liveroll.lines.splice(0, liveroll.lines.length - 100);
      if (checkpoints.includes(roll)) samples.push(await sample(liveroll, reports, roll));
    }
    const result = await load.stop();
    return { samples, served: result.ok, failed: result.failed };
  } finally {
    await stopProcess(liveroll, 20_000);
    removeTempDir(dir);
  }
}

async function soakOwner(plan: SoakPlan, checkpoints: number[]): Promise<SoakOutcome['owner']> {
  const dir = tempDir('owner-soak-');
  const reports = path.join(dir, 'reports');
  fs.mkdirSync(reports);
  const coord = path.join(dir, 'coord');
  const owner = startNode(
    path.join(ROOT, 'dist/test/fixtures/upgrader-process.js'),
    ['--dir', coord, '--id', 'owner', '--tcp', 'web', '--listeners', '3'],
    { execArgv: ['--expose-gc', ...reportFlags(reports)] },
  );
  try {
    await owner.line('ready', 30_000);
    const samples: ProcessSample[] = [];
    for (let attempt = 1; attempt <= plan.failedHandoffs; attempt++) {
      // A newcomer that inherits everything, then goes away before ready().
      const newcomer = await Upgrader.create(coord, `n${attempt}`, { upgradeTimeoutMs: 30_000 });
      newcomer.stop();
      await owner.line(
        (l) => l.event === 'upgrade-failed',
        30_000,
        owner.lines.findLastIndex((l) => l.event === 'upgrade-failed') + 1,
      );
      if (owner.lines.length > 1_000) owner.lines.splice(0, owner.lines.length - 100);
      if (checkpoints.includes(attempt)) samples.push(await sample(owner, reports, attempt, true));
    }
    return { samples };
  } finally {
    await stopProcess(owner, 20_000);
    removeTempDir(dir);
  }
}

/** Both soaks, sampled after 10 and at the end (and in between, for the trend). */
export async function measureSoak(plan: SoakPlan): Promise<SoakOutcome> {
  const marks = (n: number): number[] =>
    [...new Set([10, 50, Math.round(n / 4), Math.round(n / 2), Math.round((3 * n) / 4), n])].filter(
      (m) => m >= 10 && m <= n,
    );
  const liveroll = await soakLiveroll(plan, marks(plan.rolls));
  const owner = await soakOwner(plan, marks(plan.failedHandoffs));
  return { liveroll, owner };
}

/** The soak as a table: one row per sample, then the growth from the first sample to the last. */
export function soakReport(outcome: SoakOutcome): string {
  const rows = (name: string, unit: string, samples: ProcessSample[]): string[] => {
    const lines = samples.map(
      (s) =>
        `| ${name} | ${s.after} ${unit} | ${s.rssMiB.toFixed(1)} | ${s.heapUsedMiB.toFixed(1)} | ${s.heapTotalMiB.toFixed(1)} | ${s.fds} | ${s.handles} |`,
    );
    const first = samples[0];
    const last = samples.at(-1);
    if (first && last && last !== first) {
      lines.push(
        `| ${name} | growth ${first.after} -> ${last.after} | ${(last.rssMiB - first.rssMiB).toFixed(1)} | ${(last.heapUsedMiB - first.heapUsedMiB).toFixed(1)} | ${(last.heapTotalMiB - first.heapTotalMiB).toFixed(1)} | ${last.fds - first.fds} | ${last.handles - first.handles} |`,
      );
    }
    return lines;
  };
  const { liveroll, owner } = outcome;
  return [
    'soak: a long-lived process over many handoffs (target: flat, under 10 MiB RSS growth, no descriptor gained)',
    '| process | after | RSS MiB | heap used MiB | heap held MiB | fds (besides TCP connections) | active handles |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows('liveroll', 'rolls', liveroll.samples),
    ...rows('owner', 'failed handoffs', owner.samples),
    `liveroll under load during the rolls: ${liveroll.served} requests served, ${liveroll.failed} failed`,
  ].join('\n');
}
