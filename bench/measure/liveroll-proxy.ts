/**
 * Benchmark: liveroll's reverse proxy against requests sent straight to the child.
 *
 * Starts the real CLI (`dist/src/liveroll/cli.js`) with the fixture app as its child, then
 * alternates rounds of keep-alive load on loopback, one straight to the child's port and one
 * through liveroll's public port, and reports the median throughput and p99 latency of each
 * side by side, with the CPU time liveroll itself spent per proxied request (what the proxy
 * costs wherever the clients are). For hello world, a plain TCP relay process
 * (bench/tcp-relay.ts) takes a third turn in each round: a ceiling for a proxy in Node here, since
 * it only copies bytes. Bounded in time and count; everything it starts is stopped
 * at the end. `measureProxy()` is what bench/run.ts calls; run directly, it prints its table.
 *
 * Workloads (the child's cost per request decides how much the proxy's own cost shows):
 *   /              hello world: the proxy's worst case, its cost is all there is to see
 *   /work?us=250   250 us of application CPU per request
 *   /work?us=1000  1 ms of application CPU per request
 *   /slow?ms=5     5 ms of waiting (a database call) per request
 *
 *   node dist/bench/measure/liveroll-proxy.js [--rounds 5] [--seconds 1.5] [--connections 32] [--path P]...
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Pool } from 'undici';
import { startNode, stopProcess } from '../support/processes.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const cli = join(root, 'dist/src/liveroll/cli.js');
const app = join(root, 'dist/test/fixtures/liveroll-app.js');
const relayScript = join(root, 'dist/bench/programs/tcp-relay.js');

/** The workload that also goes through the plain TCP relay. */
const RELAYED_PATH = '/';

/** The workloads measured by default. */
export const DEFAULT_PATHS = ['/', '/work?us=250', '/work?us=1000', '/slow?ms=5'];

/** How much load, for how long. */
export interface ProxyPlan {
  /** Alternating rounds per target, after one warm-up round of each. */
  rounds: number;
  /** Length of a round. */
  seconds: number;
  /** Keep-alive connections (closed-loop clients). */
  connections: number;
  paths: string[];
  /** Bound on the requests of one round. */
  maxRequestsPerRound?: number;
}

/** A running liveroll CLI with the fixture app as its child. */
export interface StartedLiveroll {
  proc: ChildProcess;
  publicPort: number;
  childPort: number;
  childPid: number;
  pid: number;
}

/**
 * Starts liveroll (in `mode`) with the fixture app as its child, its coordination directory
 * under `dir`; resolves with its public port and its child's port and pid.
 */
export function startLiveroll(
  dir: string,
  mode: 'proxy' | 'direct' = 'proxy',
  /**
   * A second instance in the same `dir` needs its own name; `env` is added to ours, `args` to
   * liveroll's flags.
   */
  extra: { name?: string; env?: NodeJS.ProcessEnv; args?: string[] } = {},
): Promise<StartedLiveroll> {
  const name = extra.name ?? mode;
  const exec = `exec '${process.execPath}' '${app}' --port <<PORT>>`;
  const args = [
    cli,
    ...['--mode', mode, '--port', '0', '--child-port1', '0', '--child-port2', '0'],
    ...['--id', 'echo v1', '--exec', exec, '--interval', '0'],
    ...['--log-format', 'json', '--log-level', 'info'],
    ...['--coordination-dir', join(dir, `coord-${name}`), '--instance-id', name],
    ...['--health-interval', '20ms'],
    ...(extra.args ?? []),
  ];
  const proc = spawn(process.execPath, args, {
    env: { ...process.env, ...extra.env },
    detached: true,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolvePorts, reject) => {
    let childPort = 0;
    let childPid = 0;
    let buffered = '';
    const timer = setTimeout(
      () => reject(new Error(`liveroll (${name}) did not start within 30 s`)),
      30_000,
    );
    proc.on('exit', (code) => reject(new Error(`liveroll (${name}) exited with ${code}`)));
    proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const text of lines) {
        const line = JSON.parse(text) as { msg?: string; port?: number; childPid?: number };
        if (line.msg === 'child serving' && line.port !== undefined) {
          childPort = line.port;
          childPid = line.childPid ?? 0;
        }
        if (line.msg === 'serving' && line.port !== undefined) {
          clearTimeout(timer);
          resolvePorts({ proc, publicPort: line.port, childPort, childPid, pid: proc.pid ?? 0 });
        }
      }
    });
  });
}

/** One round against one target. */
export interface RoundResult {
  rps: number;
  p99Ms: number;
  errors: number;
  /** CPU time (user + system) the proxy (liveroll or the relay) spent per request, in us. */
  cpuUsPerRequest: number;
}

/** The fields of /proc/<pid>/stat after the command name (state first); null once it exited. */
function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** CPU time (utime + stime from /proc) of processes so far, in us; 0 for one that is gone. */
export function cpuUs(...pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const fields = statFields(pid);
    if (fields !== null) ticks += Number(fields[11]) + Number(fields[12]);
  }
  return (ticks * 1e6) / 100;
}

/** Minor page faults of a process so far (minflt from /proc); 0 for one that is gone. */
export function minorFaults(pid: number): number {
  return Number(statFields(pid)?.[7] ?? 0);
}

/** One round of closed-loop load: `connections` loops, each one request at a time. */
async function round(
  plan: ProxyPlan,
  port: number,
  path: string,
  proxyPid: number,
): Promise<RoundResult> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: plan.connections });
  const latencies: number[] = [];
  const maxRequests = plan.maxRequestsPerRound ?? 500_000;
  let errors = 0;
  const end = performance.now() + plan.seconds * 1000;
  const loop = async (): Promise<void> => {
    while (performance.now() < end && latencies.length < maxRequests) {
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
  const cpuBefore = cpuUs(proxyPid);
  await Promise.all(Array.from({ length: plan.connections }, loop));
  const cpu = cpuUs(proxyPid) - cpuBefore;
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

/** Every round of one workload. */
export interface Comparison {
  path: string;
  direct: RoundResult[];
  proxied: RoundResult[];
  /** Hello world only: the same rounds through the plain TCP relay. */
  relayed?: RoundResult[];
}

/** The medians of one workload's rounds. */
export interface ProxySummary {
  path: string;
  directRps: number;
  proxiedRps: number;
  /** proxied / direct throughput. */
  ratio: number;
  directP99Ms: number;
  proxiedP99Ms: number;
  errors: number;
  proxyCpuUsPerRequest: number;
  /** Hello world only: the plain TCP relay's throughput and its ratio to direct. */
  relayedRps?: number;
  relayRatio?: number;
  relayCpuUsPerRequest?: number;
}

/**
 * Warm-up, then `rounds` alternating rounds straight to the child and through the proxy (and,
 * given a relay, through it too).
 */
async function compare(
  plan: ProxyPlan,
  path: string,
  ports: { childPort: number; publicPort: number; pid: number },
  relay?: { port: number; pid: number },
): Promise<Comparison> {
  const warm = { ...plan, seconds: Math.min(plan.seconds, 0.5) };
  await round(warm, ports.childPort, path, ports.pid);
  await round(warm, ports.publicPort, path, ports.pid);
  if (relay) await round(warm, relay.port, path, relay.pid);
  const result: Comparison = { path, direct: [], proxied: [], relayed: relay ? [] : undefined };
  for (let i = 0; i < plan.rounds; i++) {
    result.direct.push(await round(plan, ports.childPort, path, ports.pid));
    result.proxied.push(await round(plan, ports.publicPort, path, ports.pid));
    if (relay) result.relayed!.push(await round(plan, relay.port, path, relay.pid));
  }
  return result;
}

/** The medians of each workload. */
export function summarizeProxy(results: Comparison[]): ProxySummary[] {
  const med = (rs: RoundResult[], key: 'rps' | 'p99Ms' | 'cpuUsPerRequest'): number =>
    median(rs.map((r) => r[key]));
  const errors = (rs: RoundResult[]): number => rs.reduce((n, r) => n + r.errors, 0);
  return results.map(({ path, direct, proxied, relayed }) => ({
    path,
    ...(relayed && {
      relayedRps: med(relayed, 'rps'),
      relayRatio: med(relayed, 'rps') / med(direct, 'rps'),
      relayCpuUsPerRequest: med(relayed, 'cpuUsPerRequest'),
    }),
    directRps: med(direct, 'rps'),
    proxiedRps: med(proxied, 'rps'),
    ratio: med(proxied, 'rps') / med(direct, 'rps'),
    directP99Ms: med(direct, 'p99Ms'),
    proxiedP99Ms: med(proxied, 'p99Ms'),
    errors: errors(direct) + errors(proxied),
    proxyCpuUsPerRequest: med(proxied, 'cpuUsPerRequest'),
  }));
}

function report(plan: ProxyPlan, results: Comparison[]): void {
  console.log(
    `liveroll proxy vs direct: ${plan.connections} keep-alive connections, ${plan.rounds} alternating ` +
      `rounds of ${plan.seconds} s per target (medians), loopback, ${cpus().length} CPUs`,
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
  for (const s of summarizeProxy(results)) {
    const cells = [
      s.directRps.toFixed(0),
      s.proxiedRps.toFixed(0),
      `${s.ratio.toFixed(2)}x`,
      `${s.directP99Ms.toFixed(2)} ms`,
      `${s.proxiedP99Ms.toFixed(2)} ms`,
      String(s.errors),
      `${s.proxyCpuUsPerRequest.toFixed(0)} us`,
    ];
    console.log(s.path.padEnd(16) + cells.map((c) => c.padStart(14)).join(''));
  }
}

/** Starts liveroll, compares every workload, stops liveroll. */
export async function measureProxy(plan: ProxyPlan): Promise<Comparison[]> {
  const dir = mkdtempSync(join(tmpdir(), 'lr-bench-'));
  let started: Awaited<ReturnType<typeof startLiveroll>> | undefined;
  try {
    started = await startLiveroll(dir);
    const results: Comparison[] = [];
    for (const path of plan.paths) {
      if (path !== RELAYED_PATH) {
        results.push(await compare(plan, path, started));
        continue;
      }
      const relay = startNode(relayScript, [String(started.childPort)]);
      try {
        const { port } = (await relay.line('listening', 10_000)) as { port: number };
        results.push(await compare(plan, path, started, { port, pid: relay.pid }));
      } finally {
        await stopProcess(relay);
      }
    }
    return results;
  } finally {
    if (started) await stopLiveroll(started.proc);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** SIGTERM, then SIGKILL of its process group if it has not exited within 20 s. */
export async function stopLiveroll(proc: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  proc.kill('SIGTERM');
  const late = new Promise((resolve) => setTimeout(() => resolve('late'), 20_000).unref());
  if ((await Promise.race([exited, late])) === 'late') {
    // Its children run in their own groups; liveroll's group is its own (detached).
    process.kill(-proc.pid!, 'SIGKILL');
  }
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(process.argv[i + 1]);
}

async function main(): Promise<void> {
  const givenPaths = process.argv.flatMap((a, i) =>
    a === '--path' ? [process.argv[i + 1] ?? '/'] : [],
  );
  const plan: ProxyPlan = {
    rounds: arg('rounds', 5),
    seconds: arg('seconds', 1.5),
    connections: arg('connections', 32),
    paths: givenPaths.length > 0 ? givenPaths : DEFAULT_PATHS,
  };
  report(plan, await measureProxy(plan));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
