/**
 * `npm run demo`: starts the example server, keeps a bounded HTTP load on it (keep-alive and
 * connection-per-request clients), replaces it with a fresh process several times, and prints
 * what the clients saw: `demo: <N> ok, <M> failed, <K> upgrades`, then the handoff times.
 *
 *   node dist/scripts/demo.js [--upgrades 5] [--example http-server|express|fastify|koa|hono|cluster]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Child } from './child.js';
import { startLoad } from './http-load.js';

/** The HTTP examples the demo can run: each takes --dir, --id and --port. */
const HTTP_EXAMPLES = ['http-server', 'express', 'fastify', 'koa', 'hono', 'cluster'];

const { values } = parseArgs({
  options: {
    upgrades: { type: 'string', default: '5' },
    example: { type: 'string', default: 'http-server' },
  },
});
const upgrades = Number(values.upgrades);
if (!HTTP_EXAMPLES.includes(values.example)) {
  console.error(`--example: one of ${HTTP_EXAMPLES.join(', ')}`);
  process.exit(2);
}
const example = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  `../examples/${values.example}.js`,
);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tableroll-demo-'));

function startServer(generation: number): Child {
  return new Child(process.execPath, [
    example,
    '--dir',
    dir,
    '--id',
    `gen-${generation}`,
    '--port',
    '0',
  ]);
}

/** Waits until the load has completed `count` more requests, so every process serves some. */
async function served(load: ReturnType<typeof startLoad>, count: number): Promise<void> {
  const target = load.result.ok + count;
  const end = Date.now() + 10_000;
  while (load.result.ok < target && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
};

let current = startServer(0);
const first = await current.line('ready');
const port = first.port as number;
console.log(`example server pid ${current.pid} listening on http://127.0.0.1:${port}/`);
const load = startLoad(
  { host: '127.0.0.1', port },
  { keepAliveClients: 4, freshClients: 4, maxMs: 120_000 },
);
await served(load, 200);

const handoffs: number[] = [];
const drains: number[] = [];
for (let i = 1; i <= upgrades; i++) {
  const startedAt = performance.now();
  const next = startServer(i);
  const ready = await next.line('ready');
  const readyAt = performance.now();
  // Only http-server measures its own handoff; the others are timed from their start.
  const handoffMs = typeof ready.handoffMs === 'number' ? ready.handoffMs : readyAt - startedAt;
  await current.line('exit');
  const { code } = await current.exited;
  const drainMs = performance.now() - readyAt;
  handoffs.push(handoffMs);
  drains.push(drainMs);
  console.log(
    `upgrade ${i}: pid ${current.pid} -> ${next.pid}, handoff ${handoffMs.toFixed(2)} ms, ` +
      `old process drained and exited (code ${code}) ${drainMs.toFixed(0)} ms after`,
  );
  current = next;
  await served(load, 200);
}

const result = await load.stop();
await current.kill('SIGTERM');
fs.rmSync(dir, { recursive: true, force: true });

const servers = Object.keys(result.bodies).length;
console.log(
  `requests answered by ${servers} processes in ${(result.durationMs / 1000).toFixed(1)} s`,
);
if (result.failed > 0) console.log(`failures: ${JSON.stringify(result.reasons)}`);
console.log(`demo: ${result.ok} ok, ${result.failed} failed, ${upgrades} upgrades`);
const what =
  values.example === 'http-server'
    ? 'handoff (newcomer, Upgrader.create to ready() resolved)'
    : `${values.example}: process start to ready (Node and the framework's start included)`;
console.log(
  `${what}: median ${median(handoffs).toFixed(2)} ms, max ${Math.max(...handoffs).toFixed(2)} ms`,
);
console.log(`old process drain to exit: median ${median(drains).toFixed(0)} ms`);
process.exitCode = result.failed === 0 ? 0 : 1;
