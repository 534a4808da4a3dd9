/**
 * Handoff time in the newcomer: a chain of bench/handoff-process.ts processes on one
 * coordination directory, each taking over N listeners from the previous one, timed from
 * Upgrader.create to ready() resolved (Node start-up excluded). The next newcomer starts once
 * the previous owner has exited, so no two handoffs overlap.
 */
import path from 'node:path';
import type { Child } from '../../scripts/child.js';
import {
  ROOT,
  removeTempDir,
  startNode,
  startProgram,
  stopProcess,
  tempDir,
} from '../support/processes.js';
import { summarize, type Summary } from '../support/stats.js';

const PROCESS = path.join(ROOT, 'dist/bench/programs/handoff-process.js');

/** Targets for the handoff (ms), by listener count. */
export const TARGET_MS: Record<number, number> = { 1: 1.5, 100: 4, 500: 20 };

/** One chain of handoffs. */
export interface HandoffPlan {
  listeners: number;
  /** Timed handoffs. */
  handoffs: number;
  /** Untimed handoffs first (file cache, the owner's code warming up). */
  warmup: number;
  /** Grow the newcomers' fd tables before the clock starts (a diagnostic). */
  pregrow?: boolean;
  /** Run one handoff inside each newcomer before the clock starts (a diagnostic). */
  prewarm?: boolean;
  /** Note the time of each handoff step through a logger (for the phase breakdown). */
  steps?: boolean;
  /** Extra node flags for the timed newcomers (--cpu-prof ...). */
  execArgv?: string[];
  /** Another build of the project to run the timed newcomers from (bench/lazy-build.ts). */
  buildRoot?: string;
  /**
   * An executable of another implementation run for every process of the chain instead of
   * bench/handoff-process.js (Go tableroll, through --go-peer). It takes `--dir D --id ID
   * --listeners N`, asks for listeners `l0`...`l<N-1>` on 127.0.0.1:0, calls Ready, and prints
   * the same JSON lines: `ready` (handoffMs from New to Ready returned, createMs, listenMs,
   * readyMs, inherited) and `exit` once taken over.
   */
  program?: string;
  /** Environment added to every process of the chain (NODE_COMPILE_CACHE ...). */
  env?: NodeJS.ProcessEnv;
}

/** The ready line of one newcomer. */
export interface HandoffSample {
  handoffMs: number;
  createMs: number;
  listenMs: number;
  readyMs: number;
  /** With `steps`: ms since the clock started at each step. */
  steps?: Record<string, number>;
  startUs: number;
  endUs: number;
  pid: number;
}

/** The phases of a handoff between the steps the Upgrader logs, in order. */
export const PHASES: [name: string, from: string, to: string][] = [
  ['lock: directory, upgrade socket, pid file, flock', 'start', 'locked'],
  ['dial the owner, receive the metadata', 'locked', 'metadata-received'],
  ['receive the descriptors', 'metadata-received', 'last-fd'],
  ['create() returns', 'last-fd', 'created'],
  ['fds.listen() for each id', 'created', 'listened'],
  ['send the ready message', 'listened', 'ready-sent'],
  ["the owner's reply", 'ready-sent', 'reply-received'],
  ['write pid', 'reply-received', 'pid-written'],
  ['end the session, release the lock', 'pid-written', 'done'],
];

/** Durations of each phase, from the steps of one newcomer. */
function phaseDurations(sample: HandoffSample): number[] {
  const at: Record<string, number> = { start: 0, done: sample.handoffMs, ...sample.steps };
  at['last-fd'] ??= at['first-fd'] ?? at['metadata-received']!;
  return PHASES.map(([, from, to]) => (at[to] ?? NaN) - (at[from] ?? NaN));
}

/** Handoff times for one listener count, in milliseconds. */
export interface HandoffResult {
  listeners: number;
  pregrow: boolean;
  prewarm: boolean;
  handoff: Summary;
  /** Upgrader.create: lock, dial, receive every descriptor. */
  create: Summary;
  /** fds.listen for every id: a dup of each inherited descriptor. */
  listen: Summary;
  /** ready(): the ready message, the owner's reply, pid written, lock released. */
  ready: Summary;
  /** With `steps`: each phase of PHASES, by name. */
  phases?: Record<string, Summary>;
  /** With `steps`: handoffs whose newcomer found the lock taken and waited for it. */
  lockWaits?: number;
}

function spawnProcess(dir: string, id: string, plan: HandoffPlan, timed: boolean): Child {
  const args = ['--dir', dir, '--id', id, '--listeners', String(plan.listeners)];
  if (plan.program !== undefined) return startProgram(plan.program, args);
  if (plan.pregrow) args.push('--pregrow');
  if (plan.prewarm) args.push('--prewarm');
  if (plan.steps) args.push('--steps');
  if (!timed) return startNode(PROCESS, args, { env: plan.env });
  const script = plan.buildRoot
    ? path.join(plan.buildRoot, 'dist/bench/programs/handoff-process.js')
    : PROCESS;
  return startNode(script, args, { execArgv: plan.execArgv, env: plan.env });
}

/** Runs one chain and returns every timed newcomer's ready line. */
export async function handoffChain(plan: HandoffPlan): Promise<HandoffSample[]> {
  const dir = tempDir('tr-handoff-');
  let owner = spawnProcess(dir, 'p0', plan, false);
  const samples: HandoffSample[] = [];
  try {
    await owner.line('ready', 30_000);
    for (let i = 1; i <= plan.warmup + plan.handoffs; i++) {
      const timed = i > plan.warmup;
      const next = spawnProcess(dir, `p${i}`, plan, timed);
      const ready = await next.line('ready', 30_000);
      if (ready.inherited !== plan.listeners) {
        throw new Error(`newcomer ${i} inherited ${String(ready.inherited)} descriptors`);
      }
      await owner.line('exit', 30_000);
      await owner.exited;
      owner = next;
      if (timed) samples.push(ready as unknown as HandoffSample);
    }
    return samples;
  } finally {
    await stopProcess(owner);
    removeTempDir(dir);
  }
}

/** Measures one chain and summarizes it. */
export async function measureHandoff(plan: HandoffPlan): Promise<HandoffResult> {
  return summarizeChain(plan, await handoffChain(plan));
}

/**
 * Measures several plans to compare them: each plan's handoffs are split into `rounds` chains,
 * and the rounds alternate the plans' order, so a noisy spell on the machine falls on all alike.
 */
export async function measureHandoffsAlternated(
  plans: HandoffPlan[],
  rounds: number,
): Promise<HandoffResult[]> {
  const samples: HandoffSample[][] = plans.map(() => []);
  for (let round = 0; round < rounds; round++) {
    const order = plans.map((_, i) => i);
    if (round % 2) order.reverse();
    for (const i of order) {
      const plan = plans[i]!;
      const handoffs = Math.ceil(plan.handoffs / rounds);
      samples[i]!.push(...(await handoffChain({ ...plan, handoffs })));
    }
  }
  return plans.map((plan, i) => summarizeChain(plan, samples[i]!));
}

function summarizeChain(plan: HandoffPlan, samples: HandoffSample[]): HandoffResult {
  const of = (key: 'handoffMs' | 'createMs' | 'listenMs' | 'readyMs'): Summary =>
    summarize(samples.map((s) => s[key]));
  return {
    listeners: plan.listeners,
    pregrow: plan.pregrow === true,
    prewarm: plan.prewarm === true,
    handoff: of('handoffMs'),
    create: of('createMs'),
    listen: of('listenMs'),
    ready: of('readyMs'),
    phases: plan.steps
      ? Object.fromEntries(
          PHASES.map(([name], i) => [name, summarize(samples.map((s) => phaseDurations(s)[i]!))]),
        )
      : undefined,
    lockWaits: plan.steps
      ? samples.filter((s) => s.steps?.['lock-wait'] !== undefined).length
      : undefined,
  };
}
