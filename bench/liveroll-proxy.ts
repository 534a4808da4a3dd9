/**
 * Benchmark: liveroll's reverse proxy against requests sent straight to the child.
 *
 * Starts the real CLI (`dist/src/liveroll/cli.js`) with the fixture app as its child, then
 * alternates rounds of keep-alive load on loopback, one straight to the child's port and one
 * through liveroll's public port, and prints the median throughput and p99 latency of each
 * side by side, with the CPU time liveroll itself spent per proxied request (what the proxy
 * costs wherever the clients are). Bounded in time and count; everything it starts is stopped
 * at the end.
 *
 * Workloads (the child's cost per request decides how much the proxy's own cost shows):
 *   /              hello world: the proxy's worst case, its cost is all there is to see
 *   /work?us=250   250 us of application CPU per request
 *   /work?us=1000  1 ms of application CPU per request
 *   /slow?ms=5     5 ms of waiting (a database call) per request
 *
 *   node dist/bench/liveroll-proxy.js [--rounds 5] [--seconds 1.5] [--connections 32] [--path P]...
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const cli = join(root, 'dist/src/liveroll/cli.js');
const app = join(root, 'dist/test/fixtures/liveroll-app.js');

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(process.argv[i + 1]);
}
const rounds = arg('rounds', 5);
const seconds = arg('seconds', 1.5);
const connections = arg('connections', 32);
const maxRequestsPerRound = 500_000;
const givenPaths = process.argv.flatMap((a, i) =>
  a === '--path' ? [process.argv[i + 1] ?? '/'] : [],
);
const paths =
  givenPaths.length > 0 ? givenPaths : ['/', '/work?us=250', '/work?us=1000', '/slow?ms=5'];

/** Starts liveroll and resolves with its public port and its child's port. */
function startLiveroll(
  dir: string,
): Promise<{ proc: ChildProcess; publicPort: number; childPort: number; pid: number }> {
  const exec = `'${process.execPath}' '${app}' --port <<PORT>>`;
  const proc = spawn(
    process.execPath,
    [
      cli,
      '--port',
      '0',
      '--child-port1',
      '0',
      '--child-port2',
      '0',
      '--id',
      'echo v1',
      '--exec',
      exec,
      '--interval',
      '0',
      '--log-format',
      'json',
      '--log-level',
      'info',
      '--coordination-dir',
      dir,
      '--instance-id',
      'bench',
      '--health-interval',
      '20ms',
    ],
    { detached: true, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return new Promise((resolvePorts, reject) => {
    let childPort = 0;
    let buffered = '';
    const timer = setTimeout(() => reject(new Error('liveroll did not start within 20 s')), 20_000);
    proc.on('exit', (code) => reject(new Error(`liveroll exited with ${code}`)));
    proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const text of lines) {
        const line = JSON.parse(text) as { msg?: string; port?: number };
        if (line.msg === 'child serving' && line.port !== undefined) childPort = line.port;
        if (line.msg === 'serving' && line.port !== undefined) {
          clearTimeout(timer);
          resolvePorts({ proc, publicPort: line.port, childPort, pid: proc.pid ?? 0 });
        }
      }
    });
  });
}

interface RoundResult {
  rps: number;
  p99Ms: number;
  errors: number;
  /** CPU time (user + system) liveroll spent per request in this round, in microseconds. */
  cpuUsPerRequest: number;
}

/** CPU time of a process so far, in microseconds (utime + stime from /proc). */
function cpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100;
}

/** pid of liveroll, whose CPU time the proxied rounds report. */
let liverollPid = 0;

/** One round of closed-loop load: `connections` loops, each one request at a time. */
async function round(port: number, path: string): Promise<RoundResult> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections });
  const latencies: number[] = [];
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  const loop = async (): Promise<void> => {
    while (performance.now() < end && latencies.length < maxRequestsPerRound) {
      const start = performance.now();
      try {
        const { statusCode, body } = await pool.request({ path, method: 'GET' });
        await body.dump({ limit: Infinity });
        if (statusCode !== 200) errors++;
      } catch {
        errors++;
      }
      latencies.push(performance.now() - start);
    }
  };
  const started = performance.now();
  const cpuBefore = cpuUs(liverollPid);
  await Promise.all(Array.from({ length: connections }, loop));
  const cpu = cpuUs(liverollPid) - cpuBefore;
  const elapsed = (performance.now() - started) / 1000;
  await pool.close();
  latencies.sort((a, b) => a - b);
  return {
    rps: latencies.length / elapsed,
    p99Ms: latencies[Math.floor(latencies.length * 0.99)] ?? 0,
    errors,
    cpuUsPerRequest: cpu / Math.max(1, latencies.length),
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

interface Comparison {
  path: string;
  direct: RoundResult[];
  proxied: RoundResult[];
}

/** Warm-up, then `rounds` alternating rounds straight to the child and through the proxy. */
async function compare(path: string, childPort: number, publicPort: number): Promise<Comparison> {
  await round(childPort, path);
  await round(publicPort, path);
  const result: Comparison = { path, direct: [], proxied: [] };
  for (let i = 0; i < rounds; i++) {
    result.direct.push(await round(childPort, path));
    result.proxied.push(await round(publicPort, path));
  }
  return result;
}

function report(results: Comparison[]): void {
  const med = (rs: RoundResult[], key: 'rps' | 'p99Ms' | 'cpuUsPerRequest'): number =>
    median(rs.map((r) => r[key]));
  const errors = (rs: RoundResult[]): number => rs.reduce((n, r) => n + r.errors, 0);
  console.log(
    `liveroll proxy vs direct: ${connections} keep-alive connections, ${rounds} alternating ` +
      `rounds of ${seconds} s per target (medians), loopback, ${cpus().length} CPUs`,
  );
  const header = [
    'workload',
    'direct req/s',
    'proxy req/s',
    'ratio',
    'direct p99',
    'proxy p99',
    'errors',
    'proxy CPU/req',
  ];
  console.log(header.map((h, i) => (i === 0 ? h.padEnd(16) : h.padStart(14))).join(''));
  for (const { path, direct, proxied } of results) {
    const cells = [
      med(direct, 'rps').toFixed(0),
      med(proxied, 'rps').toFixed(0),
      `${(med(proxied, 'rps') / med(direct, 'rps')).toFixed(2)}x`,
      `${med(direct, 'p99Ms').toFixed(2)} ms`,
      `${med(proxied, 'p99Ms').toFixed(2)} ms`,
      String(errors(direct) + errors(proxied)),
      `${med(proxied, 'cpuUsPerRequest').toFixed(0)} us`,
    ];
    console.log(path.padEnd(16) + cells.map((c) => c.padStart(14)).join(''));
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'lr-bench-'));
  const { proc, publicPort, childPort, pid } = await startLiveroll(dir);
  liverollPid = pid;
  try {
    const results: Comparison[] = [];
    for (const path of paths) results.push(await compare(path, childPort, publicPort));
    report(results);
  } finally {
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGTERM');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 15_000).unref())]);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
