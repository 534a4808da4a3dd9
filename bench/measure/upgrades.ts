/**
 * Consecutive upgrades of an HTTP server under continuous load: examples/http-server.js (the
 * old process drains with drainHttpServer) next to bench/naive-server.js (the old process calls
 * Node's server.close() and exits), each replaced by a fresh process again and again while
 * keep-alive and connection-per-request clients keep sending. Counts what the clients saw, and
 * the throughput dip around each handoff: the lowest 100 ms slot within +-300 ms of the moment
 * the newcomer was ready, relative to the median slot of the whole run.
 */
import path from 'node:path';
import type { Child } from '../../scripts/child.js';
import { slotOf, startLoad, type ClientStats, type Load } from '../../scripts/http-load.js';
import {
  ROOT,
  removeTempDir,
  sleep,
  startNode,
  stopProcess,
  tempDir,
} from '../support/processes.js';
import { median, summarize, type Summary } from '../support/stats.js';

/** The servers compared. */
export const VARIANTS = {
  drain: {
    label: 'examples/http-server.js: drainHttpServer',
    script: path.join(ROOT, 'dist/examples/http-server.js'),
  },
  naive: {
    label: 'bench/programs/naive-server.js: server.close(), exit',
    script: path.join(ROOT, 'dist/bench/programs/naive-server.js'),
  },
} as const;

/** How many upgrades, how far apart, with how many clients. */
export interface UpgradesPlan {
  upgrades: number;
  /** Pause after each newcomer is ready before the next one starts. */
  spacingMs: number;
  keepAliveClients: number;
  freshClients: number;
}

/** What one kind of client saw, with the dip around the handoffs. */
export interface ClientOutcome {
  served: number;
  failed: number;
  econnreset: number;
  socketHangUp: number;
  /** Other failures by reason. */
  other: Record<string, number>;
  /** Median requests per 100 ms slot over the run. */
  medianSlot: number;
  /** Lowest slot near each handoff / medianSlot: the median and the worst over all handoffs. */
  dip: { median: number; worst: number };
}

/** One server variant through the whole run. */
export interface VariantOutcome {
  variant: keyof typeof VARIANTS;
  label: string;
  upgrades: number;
  durationS: number;
  /** The newcomers' own handoff times (ms), under this load. */
  handoffMs: Summary;
  /** Old processes that did not exit cleanly (a forced drain, or a naive exit at the cap). */
  uncleanExits: number;
  keepAlive: ClientOutcome;
  fresh: ClientOutcome;
  all: ClientOutcome;
}

/** Lowest slot within +-300 ms of each moment, relative to the median slot. */
function dips(timeline: number[], slots: number[]): { medianSlot: number; ratios: number[] } {
  // The first slots ramp up and the last one is partial.
  const steady = timeline.slice(2, -1);
  const medianSlot = median(steady);
  const ratios = slots.map((slot) => {
    const window = timeline.slice(Math.max(0, slot - 3), slot + 4);
    return Math.min(...window) / medianSlot;
  });
  return { medianSlot, ratios };
}

function outcome(stats: ClientStats, handoffSlots: number[]): ClientOutcome {
  const { ECONNRESET = 0, 'socket hang up': hangUp = 0, ...other } = stats.reasons;
  const { medianSlot, ratios } = dips(stats.timeline, handoffSlots);
  return {
    served: stats.ok,
    failed: stats.failed,
    econnreset: ECONNRESET,
    socketHangUp: hangUp,
    other,
    medianSlot,
    dip: { median: median(ratios), worst: Math.min(...ratios) },
  };
}

/** Waits for old processes to exit; counts those that did not exit cleanly. */
async function reap(old: Child[]): Promise<number> {
  const clean = await Promise.all(
    old.map(async (child) => {
      const exitLine = await child.line('exit', 40_000).catch(() => undefined);
      await stopProcess(child, 5_000);
      return exitLine !== undefined && exitLine.forced !== true && exitLine.closed !== false;
    }),
  );
  return clean.filter((ok) => !ok).length;
}

/** Runs `plan.upgrades` upgrades of one variant under load. */
export async function measureUpgrades(
  variant: keyof typeof VARIANTS,
  plan: UpgradesPlan,
): Promise<VariantOutcome> {
  const { script, label } = VARIANTS[variant];
  const dir = tempDir('tr-upg-');
  const start = (generation: number): Child =>
    startNode(script, ['--dir', dir, '--id', `gen-${generation}`, '--port', '0']);
  let current = start(0);
  const old: Child[] = [];
  let load: Load | undefined;
  try {
    const { port } = (await current.line('ready', 30_000)) as { port: number };
    load = startLoad(
      { host: '127.0.0.1', port },
      {
        keepAliveClients: plan.keepAliveClients,
        freshClients: plan.freshClients,
        maxMs: 600_000,
      },
    );
    await sleep(600);
    const handoffs: number[] = [];
    const readyAt: number[] = [];
    for (let i = 1; i <= plan.upgrades; i++) {
      const next = start(i);
      const ready = await next.line('ready', 30_000);
      readyAt.push(performance.now());
      handoffs.push(ready.handoffMs as number);
      old.push(current);
      current = next;
      await sleep(plan.spacingMs);
    }
    await sleep(300);
    await load.stop();
    const uncleanExits = await reap(old);
    const slots = readyAt.map((at) => slotOf(load!, at));
    return {
      variant,
      label,
      upgrades: plan.upgrades,
      durationS: (performance.now() - load.startedAt) / 1000,
      handoffMs: summarize(handoffs),
      uncleanExits,
      keepAlive: outcome(load.result.keepAlive, slots),
      fresh: outcome(load.result.fresh, slots),
      all: outcome(load.result, slots),
    };
  } finally {
    await load?.stop();
    await stopProcess(current);
    for (const child of old) await stopProcess(child, 1_000);
    removeTempDir(dir);
  }
}
