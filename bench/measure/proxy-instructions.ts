/**
 * Benchmark: the user-space instructions a front executes per proxied request, counted by
 * valgrind's callgrind. Unlike time, a count does not move with what else a shared machine is
 * doing, so it shows the effect of a change to the proxy's code that a rate measured under wrk
 * would hide in noise. It counts neither the kernel's work (reads and writes) nor waiting.
 *
 * Fronts, each run under callgrind in front of the fixture app (hello world, GET /):
 *   plain Node pipe                   bench/programs/tcp-relay.ts: copies bytes, parses nothing
 *   liveroll proxy                    the CLI in proxy mode (the fast lane)
 *   liveroll proxy, http.Server only  the same with --fast-lane=false
 *
 * Each front gets warm-up requests (so V8 has optimized the hot path), then its counters are
 * zeroed and `--requests` keep-alive GETs from 8 connections are counted. Runs alternate
 * between fronts; the report gives each front's lowest and median count per request: a count
 * varies by a few percent with when the garbage collector and the compiler threads ran, and
 * only ever upwards. valgrind slows Node about 50 times, so a run takes about 30 s.
 *
 *   node dist/bench/measure/proxy-instructions.js [--runs 3] [--requests 3000] [--warmup 6000]
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { Agent, request } from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { hasCommand } from '../../scripts/node-lines.js';
import { ROOT, removeTempDir, tempDir } from '../support/processes.js';
import { median, table } from '../support/stats.js';

const APP = path.join(ROOT, 'dist/test/fixtures/liveroll-app.js');
const RELAY = path.join(ROOT, 'dist/bench/programs/tcp-relay.js');
const CLI = path.join(ROOT, 'dist/src/liveroll/cli.js');
const CONNECTIONS = 8;
/** The longest one step (a start, a batch of requests, a dump) may take under valgrind. */
const STEP_MS = 180_000;

export const FRONTS = ['plain Node pipe', 'liveroll proxy', 'liveroll proxy, http.Server only'];

interface Plan {
  runs: number;
  requests: number;
  warmup: number;
}

/** Resolves with the first match of `pattern` in the process's stdout, or rejects at the deadline. */
function awaitLine(proc: ChildProcess, pattern: RegExp, what: string): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`no ${what} within ${STEP_MS} ms`)), STEP_MS);
    proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      seen += chunk;
      const match = pattern.exec(seen);
      if (match === null) return;
      clearTimeout(timer);
      resolve(match);
    });
    proc.once('exit', (code) => reject(new Error(`${what}: the process exited (${code})`)));
  });
}

/**
 * `count` keep-alive GETs of `/` on `port` through `agent` (CONNECTIONS connections). The same
 * agent serves the warm-up and the counted requests: new connections in the counted part would
 * add what V8 spends re-optimizing the code they reach first (about 130 million instructions,
 * measured), which is not a cost per request.
 */
async function load(agent: Agent, port: number, count: number): Promise<void> {
  const get = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
        res.resume().once('end', resolve);
      });
      req.setTimeout(STEP_MS, () => req.destroy(new Error('a request timed out')));
      req.once('error', reject).end();
    });
  let left = count;
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (left-- > 0) await get();
    }),
  );
}

/** Starts `args` under callgrind, waits for its port; returns the process and its port. */
async function startCounted(
  args: string[],
  dir: string,
  port: (proc: ChildProcess) => Promise<number>,
): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(
    'valgrind',
    ['--tool=callgrind', `--callgrind-out-file=${dir}/cg.out`, process.execPath, ...args],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  return { proc, port: await port(proc) };
}

/** One run of one front: instructions per request. */
async function countFront(front: string, plan: Plan, appPort: number): Promise<number> {
  const dir = tempDir('tr-cg-');
  let started: { proc: ChildProcess; port: number } | undefined;
  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  try {
    if (front === 'plain Node pipe') {
      started = await startCounted([RELAY, String(appPort)], dir, async (proc) =>
        Number((await awaitLine(proc, /"port":(\d+)/, 'relay port'))[1]),
      );
    } else {
      const exec = `exec '${process.execPath}' '${APP}' --port <<PORT>>`;
      const args = [CLI, '--mode', 'proxy', '--port', '0', '--child-port1', '0'];
      args.push('--child-port2', '0', '--id', 'echo v1', '--exec', exec, '--interval', '0');
      args.push('--log-format', 'json', '--log-level', 'info', '--health-interval', '10s');
      args.push('--coordination-dir', `${dir}/c`, '--instance-id', 'cg');
      if (front.includes('http.Server')) args.push('--fast-lane=false');
      started = await startCounted(args, dir, async (proc) => {
        const line = /\{[^\n]*"msg":"serving"[^\n]*\}/;
        const found = await awaitLine(proc, line, 'liveroll serving');
        return (JSON.parse(found[0]) as { port: number }).port;
      });
    }
    const pid = String(started.proc.pid);
    await load(agent, started.port, plan.warmup);
    execFileSync('callgrind_control', ['-z', pid], { stdio: 'ignore', timeout: STEP_MS });
    await load(agent, started.port, plan.requests);
    execFileSync('callgrind_control', ['-d', pid], { stdio: 'ignore', timeout: STEP_MS });
    const dump = fs.readFileSync(`${dir}/cg.out.1`, 'utf8');
    const total = /^(?:summary|totals): (\d+)/m.exec(dump)?.[1];
    if (total === undefined) throw new Error(`no total in the callgrind dump of ${front}`);
    return Number(total) / plan.requests;
  } finally {
    agent.destroy();
    if (started !== undefined) {
      const exited = new Promise((resolve) => started!.proc.once('exit', resolve));
      started.proc.kill('SIGTERM');
      const timer = setTimeout(() => started!.proc.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
    removeTempDir(dir);
  }
}

/** Every front's counts per request, runs alternating; undefined (with why) without valgrind. */
export async function measureInstructions(
  plan: Plan,
): Promise<Map<string, number[]> | { skipped: string }> {
  if (!hasCommand('valgrind') || !hasCommand('callgrind_control')) {
    return { skipped: 'valgrind is not installed (Debian package valgrind)' };
  }
  const app = spawn(process.execPath, [APP, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  try {
    const appPort = Number((await awaitLine(app, /"port":(\d+)/, 'app port'))[1]);
    const counts = new Map<string, number[]>(FRONTS.map((f) => [f, []]));
    for (let run = 0; run < plan.runs; run++) {
      for (const front of FRONTS) counts.get(front)!.push(await countFront(front, plan, appPort));
    }
    return counts;
  } finally {
    app.kill('SIGTERM');
  }
}

export function instructionsReport(result: Map<string, number[]> | { skipped: string }): string {
  if (!(result instanceof Map)) return `proxy instructions: skipped: ${result.skipped}`;
  const pipe = Math.min(...(result.get('plain Node pipe') ?? [NaN]));
  const rows = [...result].map(([front, counts]) => {
    const low = Math.min(...counts);
    return [
      front,
      Math.round(low).toLocaleString('en-US'),
      Math.round(median(counts)).toLocaleString('en-US'),
      `${(low / pipe).toFixed(2)}x`,
    ];
  });
  return [
    'User-space instructions per proxied request (callgrind, GET / of hello world, keep-alive)',
    table(['front', 'lowest', 'median', 'lowest / pipe'], rows),
  ].join('\n');
}

const USAGE = `usage: node dist/bench/measure/proxy-instructions.js [--runs N] [--requests N]
    [--warmup N] [--help]

  Counts the user-space instructions per request of a plain Node pipe and of liveroll's proxy
  (fast lane, and http.Server only) under valgrind's callgrind; see docs/benchmarks.md.`;

async function main(): Promise<void> {
  let values;
  try {
    values = parseArgs({
      options: {
        runs: { type: 'string', default: '3' },
        requests: { type: 'string', default: '3000' },
        warmup: { type: 'string', default: '6000' },
        help: { type: 'boolean', default: false },
      },
    }).values;
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const plan = {
    runs: Number(values.runs),
    requests: Number(values.requests),
    warmup: Number(values.warmup),
  };
  if (![plan.runs, plan.requests, plan.warmup].every((n) => Number.isInteger(n) && n > 0)) {
    console.error(`--runs, --requests and --warmup take positive integers\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  console.log(instructionsReport(await measureInstructions(plan)));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
