/**
 * The floor under a handoff: the addon's raw fd round trip for N descriptors between two
 * pre-started Node processes (bench/fd-floor-peer.ts), from the first send to the receiver's
 * one-byte answer. Each pair of processes is fresh: its first trial runs cold code, as a
 * newcomer's handoff does; the trials after it show the warm floor.
 */
import path from 'node:path';
import { ROOT, removeTempDir, startNode, stopProcess, tempDir } from '../support/processes.js';
import { summarize, type Summary } from '../support/stats.js';

const PEER = path.join(ROOT, 'dist/bench/programs/fd-floor-peer.js');

/** How many pairs and trials per size. */
export interface FloorPlan {
  sizes: number[];
  /** Fresh pairs of processes per size (one cold trial each). */
  pairs: number;
  /** Warm trials per pair after the cold one. */
  warmTrials: number;
  /** Sizes that also get pairs whose receiver grew its fd table first (a diagnostic). */
  pregrowSizes: number[];
}

/** The floor for one number of descriptors, in milliseconds. */
export interface FloorResult {
  fds: number;
  /** The first round trip of each fresh pair. */
  cold: Summary;
  /** Every later round trip. */
  warm: Summary;
  /** The first round trip of fresh pairs whose receiver grew its fd table first. */
  coldPregrown?: Summary;
}

async function onePair(fds: number, trials: number, pregrow = false): Promise<number[]> {
  const dir = tempDir('tr-floor-');
  const socket = path.join(dir, 'floor.sock');
  const receiver = startNode(PEER, [
    ...['--role', 'receiver', '--path', socket],
    ...['--pregrow', String(pregrow ? fds : 0)],
  ]);
  try {
    await receiver.line('ready');
    const sender = startNode(PEER, ['--role', 'sender', '--path', socket, '--fds', String(fds)]);
    try {
      await sender.line('ready');
      const times: number[] = [];
      for (let i = 0; i < trials; i++) {
        const from = receiver.lines.length;
        receiver.send(`expect ${fds}`);
        await receiver.line('armed', 10_000, from);
        const sent = sender.lines.length;
        sender.send(`go ${fds}`);
        const done = await sender.line('round-trip', 10_000, sent);
        await receiver.line('received', 10_000, from);
        times.push(done.ms as number);
      }
      return times;
    } finally {
      await stopProcess(sender);
    }
  } finally {
    await stopProcess(receiver);
    removeTempDir(dir);
  }
}

/** Measures the floor for each size. */
export async function measureFdFloor(plan: FloorPlan): Promise<FloorResult[]> {
  const results: FloorResult[] = [];
  for (const fds of plan.sizes) {
    const cold: number[] = [];
    const warm: number[] = [];
    for (let p = 0; p < plan.pairs; p++) {
      const [first, ...rest] = await onePair(fds, 1 + plan.warmTrials);
      cold.push(first!);
      warm.push(...rest);
    }
    const result: FloorResult = { fds, cold: summarize(cold), warm: summarize(warm) };
    if (plan.pregrowSizes.includes(fds)) {
      const pregrown: number[] = [];
      for (let p = 0; p < plan.pairs; p++) pregrown.push(...(await onePair(fds, 1, true)));
      result.coldPregrown = summarize(pregrown);
    }
    results.push(result);
  }
  return results;
}
