/**
 * liveroll under load: forced rolling updates (SIGHUP: a new child, health-checked, then the
 * old one drained and stopped) and then a takeover by a second liveroll instance on the same
 * coordination directory (as systemd template units app@1 and app@2 do), while keep-alive and
 * connection-per-request clients keep sending through the public port. Counts what the
 * clients saw in each phase. The proxy's own cost is bench/liveroll-proxy.ts.
 */
import type { Child, Line } from '../../scripts/child.js';
import { APP, CLI, baseFlags } from '../../scripts/liveroll-launch.js';
import { startLoad, type Load } from '../../scripts/http-load.js';
import { removeTempDir, sleep, startNode, stopProcess, tempDir } from '../support/processes.js';
import { summarize, type Summary } from '../support/stats.js';

/** How many updates, under how much load. */
export interface LiverollPlan {
  /** SIGHUP-forced updates before the takeover. */
  updates: number;
  keepAliveClients: number;
  freshClients: number;
  /** Load before, between and after the events. */
  settleMs: number;
}

/** What the clients saw in one phase. */
export interface PhaseOutcome {
  served: number;
  failed: number;
  reasons: Record<string, number>;
}

/** The whole run. */
export interface LiverollOutcome {
  updates: number;
  /** SIGHUP to the old child stopped, per update (ms). */
  updateMs: Summary;
  rolling: PhaseOutcome;
  /** Second instance started to the first one exited (ms). */
  takeoverMs: number;
  /** The first instance's exit code (0 expected). */
  firstInstanceExit: number | null;
  takeover: PhaseOutcome;
}

const msg =
  (text: string, fields: Record<string, unknown> = {}) =>
  (line: Line): boolean =>
    line.msg === text && Object.entries(fields).every(([k, v]) => line[k] === v);

function startInstance(dir: string, name: string): Child {
  const exec = `'${process.execPath}' '${APP}' --port <<PORT>> --health <<HEALTHCHECK>> --name ${name}`;
  return startNode(CLI, [...baseFlags(dir, name), '--id', 'echo v1', '--exec', exec]);
}

function total(load: Load): PhaseOutcome {
  const { ok, failed, reasons } = load.result;
  return { served: ok, failed, reasons: { ...reasons } };
}

function minus(after: PhaseOutcome, before: PhaseOutcome): PhaseOutcome {
  const reasons: Record<string, number> = {};
  for (const [k, v] of Object.entries(after.reasons)) {
    const d = v - (before.reasons[k] ?? 0);
    if (d > 0) reasons[k] = d;
  }
  return { served: after.served - before.served, failed: after.failed - before.failed, reasons };
}

/** Rolling updates, then a takeover, under load. */
export async function measureLiveroll(plan: LiverollPlan): Promise<LiverollOutcome> {
  const dir = tempDir('lr-roll-');
  const first = startInstance(dir, 'a');
  let second: Child | undefined;
  let load: Load | undefined;
  try {
    await first.line(msg('ready'), 30_000);
    const port = first.lines.find(msg('serving'))!.port as number;
    load = startLoad(
      { host: '127.0.0.1', port },
      {
        keepAliveClients: plan.keepAliveClients,
        freshClients: plan.freshClients,
        maxMs: 600_000,
      },
    );
    await sleep(plan.settleMs);
    const beforeRolling = total(load);
    const updateMs: number[] = [];
    for (let i = 1; i <= plan.updates; i++) {
      const from = first.lines.length;
      const asked = performance.now();
      first.proc.kill('SIGHUP');
      await first.line(msg('update complete', { child: `child-${i + 1}` }), 30_000, from);
      await first.line(msg('child stopped', { child: `child-${i}` }), 30_000, from);
      updateMs.push(performance.now() - asked);
      await sleep(plan.settleMs);
    }
    const beforeTakeover = total(load);
    const started = performance.now();
    second = startInstance(dir, 'b');
    await second.line(msg('ready'), 30_000);
    const exit = await first.exited;
    const takeoverMs = performance.now() - started;
    await sleep(plan.settleMs);
    await load.stop();
    const end = total(load);
    return {
      updates: plan.updates,
      updateMs: summarize(updateMs),
      rolling: minus(beforeTakeover, beforeRolling),
      takeoverMs,
      firstInstanceExit: exit.code,
      takeover: minus(end, beforeTakeover),
    };
  } finally {
    await load?.stop();
    if (second) await stopProcess(second, 20_000);
    await stopProcess(first, 20_000);
    removeTempDir(dir);
  }
}
