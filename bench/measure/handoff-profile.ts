/**
 * Where a newcomer's handoff time goes: a chain of handoffs whose newcomers run with
 * `node --cpu-prof`, each profile cut to that newcomer's handoff (Upgrader.create to ready()
 * resolved, by the monotonic clock both V8's profiler and process.hrtime use), and the samples
 * of all of them added up by kind of code, by function (self time), and by tableroll function
 * on the stack (inclusive time). The profiler's own overhead inflates the total; the shares
 * are what to read.
 */
import fs from 'node:fs';
import path from 'node:path';
import { handoffChain, type HandoffSample } from './handoff.js';
import { removeTempDir, tempDir } from '../support/processes.js';

/** One row of a breakdown: milliseconds per handoff and the share of the total. */
export interface ProfileRow {
  name: string;
  msPerHandoff: number;
  share: number;
}

/** The breakdown of one listener count. */
export interface HandoffProfile {
  listeners: number;
  handoffs: number;
  /** Sampled time inside the handoff windows, per handoff (inflated by the profiler). */
  sampledMsPerHandoff: number;
  byKind: ProfileRow[];
  topSelf: ProfileRow[];
  tablerollInclusive: ProfileRow[];
}

interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

type ProfileNode = CpuProfile['nodes'][number];

/** What kind of code a frame is. */
function kindOf(frame: ProfileNode['callFrame']): string {
  const { url, functionName } = frame;
  // The addon's functions get no frame of their own: their time (syscalls, and the kernel's
  // work inside them) is the calling tableroll function's.
  if (url.includes('/dist/src/')) return 'tableroll code (dist/src) and its addon calls';
  if (url.includes('/dist/bench/')) return 'the benchmark process itself';
  if (url.includes('/node_modules/')) return 'dependencies (node_modules)';
  if (url.startsWith('node:')) return `Node internals: ${url.slice(5).replace(/^internal\//, '')}`;
  if (functionName === '(idle)') return '(idle: waiting on the event loop)';
  if (functionName.startsWith('(')) return functionName;
  return 'native functions (addon, fs, V8 builtins)';
}

function frameName(frame: ProfileNode['callFrame']): string {
  const file = frame.url.replace(/^.*\//, '');
  const fn = frame.functionName || '(anonymous)';
  return file ? `${fn} ${file}:${frame.lineNumber + 1}` : fn;
}

class Tally {
  private readonly totals = new Map<string, number>();
  add(name: string, us: number): void {
    this.totals.set(name, (this.totals.get(name) ?? 0) + us);
  }
  rows(handoffs: number, sampledUs: number, limit: number): ProfileRow[] {
    return [...this.totals]
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(([name, us]) => ({ name, msPerHandoff: us / 1000 / handoffs, share: us / sampledUs }));
  }
}

/** Adds the samples of `profile` that fall in [startUs, endUs] to the tallies. */
function addProfile(
  profile: CpuProfile,
  window: HandoffSample,
  tallies: { kind: Tally; self: Tally; inclusive: Tally },
): number {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes)
    for (const child of node.children ?? []) parent.set(child, node.id);
  let sampled = 0;
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i]!;
    // A sample stands for the time until the next one.
    const us = profile.timeDeltas[i + 1] ?? 0;
    if (at < window.startUs || at > window.endUs) continue;
    const node = byId.get(profile.samples[i]!)!;
    sampled += us;
    tallies.kind.add(kindOf(node.callFrame), us);
    tallies.self.add(frameName(node.callFrame), us);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id)!.callFrame;
      if (!frame.url.includes('/dist/src/')) continue;
      const name = frameName(frame);
      if (!seen.has(name)) tallies.inclusive.add(name, us);
      seen.add(name);
    }
  }
  return sampled;
}

/** Profiles `handoffs` newcomers taking over `listeners` listeners. */
export async function profileHandoff(
  listeners: number,
  handoffs: number,
  options: { intervalUs?: number; prewarm?: boolean } = {},
): Promise<HandoffProfile> {
  const intervalUs = options.intervalUs ?? 100;
  const dir = tempDir('tr-prof-');
  try {
    const execArgv = [
      '--cpu-prof',
      '--cpu-prof-dir',
      dir,
      `--cpu-prof-interval`,
      String(intervalUs),
    ];
    const samples = await handoffChain({
      listeners,
      handoffs,
      warmup: 1,
      execArgv,
      prewarm: options.prewarm,
    });
    const tallies = { kind: new Tally(), self: new Tally(), inclusive: new Tally() };
    let sampled = 0;
    const files = fs.readdirSync(dir);
    for (const sample of samples) {
      const file = files.find((f) => f.split('.')[3] === String(sample.pid));
      if (!file) throw new Error(`no CPU profile for newcomer ${sample.pid}`);
      const profile = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as CpuProfile;
      sampled += addProfile(profile, sample, tallies);
    }
    return {
      listeners,
      handoffs: samples.length,
      sampledMsPerHandoff: sampled / 1000 / samples.length,
      byKind: tallies.kind.rows(samples.length, sampled, 12),
      topSelf: tallies.self.rows(samples.length, sampled, 15),
      tablerollInclusive: tallies.inclusive.rows(samples.length, sampled, 15),
    };
  } finally {
    removeTempDir(dir);
  }
}
