/**
 * The process of the handoff benchmark: joins a coordination directory through the Upgrader
 * with N TCP listeners (inherited from the owner, or bound when there is none), becomes the
 * owner, and exits once a newcomer took over. Its ready line times the handoff as the fixture
 * test/fixtures/upgrader-process.ts does (Upgrader.create to ready() resolved, Node start-up
 * excluded), split into phases, with the monotonic clock (in us) at both ends so that a CPU
 * profile's samples can be cut to the handoff.
 *
 *   node dist/bench/programs/handoff-process.js --dir D --id ID --listeners N [--steps] [--pregrow]
 *     [--prewarm]
 *
 * --steps passes a logger that notes the time of each handoff step the Upgrader logs at debug
 * level (locked, metadata-received, fd-received, ready-sent, reply-received, pid-written) and
 * when it had to wait for the lock (lock-wait), and the ready line gives them as `steps`, in ms
 * since the clock started.
 *
 * Two diagnostics, run before the clock starts:
 * --pregrow opens and closes 2N+64 descriptors, so the kernel's fd table is already large
 *   enough (growing it past 256 slots costs an RCU grace period in a multi-threaded process,
 *   which every Node process is).
 * --prewarm runs a whole handoff of N listeners between two Upgraders of this process in a
 *   scratch directory, so the timed handoff runs code that is already compiled and Node
 *   internals that are already loaded.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Upgrader, type Logger } from 'tableroll';

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    id: { type: 'string' },
    listeners: { type: 'string', default: '1' },
    pregrow: { type: 'boolean', default: false },
    prewarm: { type: 'boolean', default: false },
    steps: { type: 'boolean', default: false },
  },
});
const count = Number(values.listeners);
const print = (line: object): void => {
  process.stdout.write(JSON.stringify({ pid: process.pid, ...line }) + '\n');
};
const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);
performance.now(); // Loads the perf_hooks internals now, not inside the timed window.

/** When each logged handoff step happened (ms since the clock started). */
const steps: Record<string, number> = {};
let started = 0;

/** Notes the steps; of the per-descriptor steps only the first and the last. */
function stepRecorder(): Logger {
  const note = (fields: object | string): void => {
    const at = fields as { step?: string; index?: number };
    if (at.step === undefined) return;
    const name = at.step === 'fd-received' ? (at.index === 0 ? 'first-fd' : 'last-fd') : at.step;
    steps[name] = performance.now() - started;
  };
  const info = (fields: object | string, message?: string): void => {
    const text = typeof fields === 'string' ? fields : message;
    if (text === 'waiting for the coordination lock')
      steps['lock-wait'] = performance.now() - started;
  };
  const quiet = (): void => {};
  return { debug: note, info, warn: quiet, error: quiet };
}

/** Takes (or binds) every listener, closing the application's duplicates at once. */
async function takeListeners(upgrader: Upgrader): Promise<void> {
  for (let i = 0; i < count; i++) {
    const handle = await upgrader.fds.listen(`l${i}`, { host: '127.0.0.1', port: 0 });
    fs.closeSync(handle.fd); // Only the store's copy matters here.
  }
}

/** One handoff between two Upgraders of this process, to compile and load what it runs. */
async function prewarm(): Promise<void> {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'tr-warm-'));
  try {
    const first = await Upgrader.create(scratch, 'a');
    await takeListeners(first);
    await first.ready();
    const second = await Upgrader.create(scratch, 'b');
    await takeListeners(second);
    await second.ready();
    await first.upgradeComplete();
    first.stop();
    second.stop();
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

if (values.pregrow) {
  const fds = Array.from({ length: 2 * count + 64 }, () => fs.openSync('/dev/null', 'r'));
  for (const fd of fds) fs.closeSync(fd);
}
if (values.prewarm) await prewarm();

const startUs = monotonicUs();
started = performance.now();
const upgrader = await Upgrader.create(values.dir!, values.id ?? String(process.pid), {
  logger: values.steps ? stepRecorder() : undefined,
});
const created = performance.now();
const inherited = upgrader.fds.list().length;
await takeListeners(upgrader);
const listened = performance.now();
await upgrader.ready();
const done = performance.now();
print({
  event: 'ready',
  inherited,
  handoffMs: done - started,
  createMs: created - started,
  listenMs: listened - created,
  readyMs: done - listened,
  steps: { ...steps, created: created - started, listened: listened - started },
  startUs,
  endUs: monotonicUs(),
});

process.once('SIGTERM', () => upgrader.stop());
// Alive until handed over, whatever the Upgrader's own handles do about it.
const alive = setInterval(() => {}, 60_000);
const reason = await upgrader.upgradeComplete();
clearInterval(alive);
upgrader.stop();
print({ event: 'exit', reason });
process.exit(0);
