/**
 * Benchmark: what a user would put in front of a Node app, side by side in one run, with `wrk`
 * as the load generator (a generator written in Node takes the CPU the fronts need).
 *
 * Fronts, each in front of the fixture app (dist/test/fixtures/liveroll-app.js; the same
 * process for the first three, each liveroll its own child):
 *   direct            wrk straight to the app's port: the ceiling
 *   nginx             nginx, one worker, upstream keep-alive (skipped with the reason when absent)
 *   liveroll proxy    liveroll --mode proxy, its default: plain requests proxied in C++ (the
 *                     addon's native lane), the rest through Node's http.Server
 *   liveroll proxy, JavaScript lane
 *                     the same with --native-lane=false: plain requests proxied in JavaScript
 *   liveroll proxy, http.Server only
 *                     the same with --fast-lane=false: every request through Node's http.Server
 *   plain Node pipe   bench/programs/tcp-relay.ts: a Node proxy that copies bytes, parses nothing
 *   plain C relay     bench/programs/c-relay.c: the same in C with one epoll loop, a floor under
 *                     every front (skipped with the reason when it cannot be built)
 *   liveroll direct   liveroll --mode direct: the app accepts on the public socket itself
 *
 * The app is pinned to one CPU and the front being measured to another, so each front gets the
 * same placement (support/placement.ts; --no-pin leaves it to the scheduler).
 *
 * Rounds alternate the fronts, so a noisy spell on the machine falls on all alike; medians of
 * requests/s and of wrk's p99 are reported, with each front's ratio to direct and to nginx.
 *
 * Bulk transfers: a 1 GiB download and a 1 GiB upload with curl, straight to the app, through
 * nginx, through the plain Node pipe and the plain C relay (copying bytes), through liveroll's
 * proxy, and through a second liveroll proxy left on glibc's default heap trimming
 * (`MALLOC_TRIM_THRESHOLD_=131072`, see src/memory.ts); MB/s medians, and the minor page
 * faults per MiB of the relaying process where it is one we started.
 *
 *   node dist/bench/measure/http-front.js [--rounds 3] [--seconds 3] [--connections 32]
 *     [--path /] [--bulk-rounds 2] [--bulk-bytes 1073741824] [--no-bulk] [--no-pin]
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { hasCommand } from '../../scripts/node-lines.js';
import { cpuUs, minorFaults, startLiveroll, stopLiveroll } from './liveroll-proxy.js';
import { buildCRelay } from '../support/c-relay.js';
import { chooseLayout, pin, type Layout } from '../support/placement.js';
import {
  ROOT,
  removeTempDir,
  startNode,
  startProgram,
  stopProcess,
  tempDir,
} from '../support/processes.js';
import { median, table } from '../support/stats.js';

const RELAY = path.join(ROOT, 'dist/bench/programs/tcp-relay.js');

/** How much load, for how long. */
export interface FrontPlan {
  rounds: number;
  seconds: number;
  connections: number;
  path: string;
  bulkRounds: number;
  bulkBytes: number;
  /** Pin the app to one CPU and the front measured to another (support/placement.ts). */
  pin: boolean;
}

export const FRONT_NAMES = [
  'direct',
  'nginx',
  'liveroll proxy',
  'liveroll proxy, JavaScript lane',
  'liveroll proxy, http.Server only',
  'plain Node pipe',
  'plain C relay',
  'liveroll direct',
] as const;
export type FrontName = (typeof FRONT_NAMES)[number];

/** One wrk round. */
export interface WrkResult {
  rps: number;
  p99Ms: number;
  errors: number;
  requests: number;
  /** CPU time (user + system) per request of the front's own processes and of the app, us. */
  frontCpuUs?: number;
  appCpuUs?: number;
}

/** Medians of one front's rounds. */
export interface FrontSummary {
  front: FrontName;
  rps: number;
  p99Ms: number;
  errors: number;
  /** Medians of CPU per request: the front (nginx's worker, liveroll) and the app. */
  frontCpuUs: number;
  appCpuUs: number;
  toDirect: number;
  toNginx: number;
}

/** Medians of one bulk route, MB/s (10^6 bytes per second). */
export interface BulkSummary {
  route: string;
  downloadMBps: number;
  uploadMBps: number;
  /** Minor page faults of the relaying process per MiB moved; NaN when there is none of ours. */
  downloadFaultsPerMiB: number;
  uploadFaultsPerMiB: number;
}

/** One bulk route: its port, and the pid of the process relaying it (0: none of ours). */
type BulkRoute = [name: string, port: number, pid: number];

export interface FrontOutcome {
  skipped?: string;
  nginxSkipped?: string;
  cRelaySkipped?: string;
  /** Where the processes ran, in words. */
  placement?: string;
  plan: FrontPlan;
  fronts: FrontSummary[];
  bulk: BulkSummary[];
}

/** A free port on 127.0.0.1 (bound, then closed: for nginx, which takes a port number). */
async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** wrk's latency line value ("1.23ms", "850.00us", "1.02s") in ms. */
function toMs(text: string): number {
  const match = /^([\d.]+)(us|ms|s)$/.exec(text);
  if (!match) return NaN;
  const value = Number(match[1]);
  return match[2] === 'us' ? value / 1000 : match[2] === 's' ? value * 1000 : value;
}

/** One wrk run against `port`. */
export function runWrk(plan: FrontPlan, port: number, seconds = plan.seconds): WrkResult {
  const out = execFileSync(
    'wrk',
    [
      '-t1',
      `-c${plan.connections}`,
      `-d${seconds}s`,
      '--latency',
      `http://127.0.0.1:${port}${plan.path}`,
    ],
    { encoding: 'utf8', timeout: (seconds + 30) * 1000 },
  );
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const p99 = toMs(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? '');
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(
    out,
  );
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const errors =
    non2xx + (socketErrors ? socketErrors.slice(1).reduce((n, v) => n + Number(v), 0) : 0);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  return { rps, p99Ms: p99, errors, requests };
}

/**
 * A wrk round that also charges the CPU of the front's and the app's processes per request;
 * with a layout, the app is pinned to its CPU and the front to the other first.
 */
function measuredRound(plan: FrontPlan, target: Target, layout: Layout | undefined): WrkResult {
  if (layout !== undefined) {
    pin(target.appPids, String(layout.app));
    pin(target.frontPids, String(layout.front));
  }
  const front = cpuUs(...target.frontPids);
  const app = cpuUs(...target.appPids);
  const result = runWrk(plan, target.port);
  result.frontCpuUs = (cpuUs(...target.frontPids) - front) / result.requests;
  result.appCpuUs = (cpuUs(...target.appPids) - app) / result.requests;
  return result;
}

/** Where one front listens, and which processes do its work and the app's. */
interface Target {
  name: FrontName;
  port: number;
  frontPids: number[];
  appPids: number[];
}

/** Pids of the children of `pid` (nginx's workers). */
function childrenOf(pid: number): number[] {
  try {
    return fs
      .readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter((p) => p !== '')
      .map(Number);
  } catch {
    return [];
  }
}

/** nginx with one worker in front of `upstreamPort`; resolves with its port. */
async function startNginx(
  dir: string,
  upstreamPort: number,
): Promise<{ proc: ChildProcess; port: number }> {
  const port = await freePort();
  const temp = path.join(dir, 'nginx-temp');
  fs.mkdirSync(temp, { mode: 0o777, recursive: true });
  fs.chmodSync(dir, 0o755);
  fs.chmodSync(temp, 0o777);
  const config = path.join(dir, 'nginx.conf');
  fs.writeFileSync(
    config,
    `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${temp}/body;
  proxy_temp_path ${temp}/proxy;
  fastcgi_temp_path ${temp}/fastcgi;
  uwsgi_temp_path ${temp}/uwsgi;
  scgi_temp_path ${temp}/scgi;
  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    client_max_body_size 0;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_max_temp_file_size 0;
    }
  }
}
`,
  );
  const proc = spawn('nginx', ['-c', config, '-e', `${dir}/nginx-error.log`], {
    stdio: 'ignore',
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (up) return { proc, port };
    if (Date.now() > deadline || proc.exitCode !== null) {
      throw new Error(`nginx did not start: ${fs.readFileSync(`${dir}/nginx-error.log`, 'utf8')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** One curl transfer; MB/s. */
function curlMBps(args: string[], metric: 'speed_download' | 'speed_upload'): number {
  const out = execFileSync(
    'curl',
    ['-sS', '-o', '/dev/null', '-w', `%{${metric}} %{http_code}`, ...args],
    { encoding: 'utf8', timeout: 600_000 },
  );
  const [speed, status] = out.trim().split(' ');
  if (status !== '200') throw new Error(`curl got HTTP ${status}`);
  return Number(speed) / 1e6;
}

/** Bulk routes: the app, nginx, the two plain relays, liveroll's proxy on both heap settings. */
async function measureBulk(
  plan: FrontPlan,
  routes: BulkRoute[],
  uploadFile: string,
): Promise<BulkSummary[]> {
  type Sample = Omit<BulkSummary, 'route'>;
  const samples: Sample[][] = routes.map(() => []);
  const mib = plan.bulkBytes / 2 ** 20;
  /** One transfer: its MB/s and the relay's minor faults per MiB meanwhile (NaN: no relay). */
  const transfer = (
    pid: number,
    args: string[],
    metric: 'speed_download' | 'speed_upload',
  ): [number, number] => {
    const before = pid === 0 ? 0 : minorFaults(pid);
    const speed = curlMBps(args, metric);
    return [speed, pid === 0 ? NaN : (minorFaults(pid) - before) / mib];
  };
  for (let round = 0; round < plan.bulkRounds; round++) {
    for (const [i, [, port, pid]] of routes.entries()) {
      const url = `http://127.0.0.1:${port}`;
      const [downloadMBps, downloadFaultsPerMiB] = transfer(
        pid,
        [`${url}/big?bytes=${plan.bulkBytes}`],
        'speed_download',
      );
      const [uploadMBps, uploadFaultsPerMiB] = transfer(
        pid,
        ['-T', uploadFile, '-H', 'Expect:', `${url}/count/upload`],
        'speed_upload',
      );
      samples[i]!.push({ downloadMBps, uploadMBps, downloadFaultsPerMiB, uploadFaultsPerMiB });
    }
  }
  const med = (i: number, key: keyof Sample): number => median(samples[i]!.map((s) => s[key]));
  return routes.map(([route], i) => ({
    route,
    downloadMBps: med(i, 'downloadMBps'),
    uploadMBps: med(i, 'uploadMBps'),
    downloadFaultsPerMiB: med(i, 'downloadFaultsPerMiB'),
    uploadFaultsPerMiB: med(i, 'uploadFaultsPerMiB'),
  }));
}

/** Runs the whole comparison; everything it starts is stopped at the end. */
export async function measureFronts(plan: FrontPlan): Promise<FrontOutcome> {
  const outcome: FrontOutcome = { plan, fronts: [], bulk: [] };
  for (const needed of ['wrk', 'curl']) {
    if (!hasCommand(needed)) {
      outcome.skipped = `${needed} is not installed (Debian package ${needed})`;
      return outcome;
    }
  }
  if (!hasCommand('nginx')) outcome.nginxSkipped = 'nginx is not installed (Debian package nginx)';
  const dir = tempDir('tr-front-');
  const running: ChildProcess[] = [];
  let relay: ReturnType<typeof startNode> | undefined;
  let cRelay: ReturnType<typeof startProgram> | undefined;
  try {
    const proxied = await startLiveroll(dir, 'proxy');
    running.push(proxied.proc);
    const direct = await startLiveroll(dir, 'direct');
    running.push(direct.proc);
    // The proxy as it was before its fast lane: every request through Node's http.Server.
    const httpOnly = await startLiveroll(dir, 'proxy', {
      name: 'http-only',
      args: ['--fast-lane=false'],
    });
    running.push(httpOnly.proc);
    const jsLane = await startLiveroll(dir, 'proxy', {
      name: 'js-lane',
      args: ['--native-lane=false'],
    });
    running.push(jsLane.proc);
    let nginx: { proc: ChildProcess; port: number } | undefined;
    if (outcome.nginxSkipped === undefined) {
      nginx = await startNginx(dir, proxied.childPort);
      running.push(nginx.proc);
    }
    // What a proxy written in Node costs at least: bytes copied, nothing parsed.
    relay = startNode(RELAY, [String(proxied.childPort)]);
    const { port: relayPort } = (await relay.line('listening', 10_000)) as { port: number };
    // What any proxy costs at least: the same copying in C, which leaves the kernel's share.
    const built = buildCRelay(dir);
    let cRelayPort = 0;
    if ('skipped' in built) outcome.cRelaySkipped = built.skipped;
    else {
      cRelay = startProgram(built.binary, [String(proxied.childPort)]);
      ({ port: cRelayPort } = (await cRelay.line('listening', 10_000)) as { port: number });
    }
    const app = [proxied.childPid];
    const targets: Target[] = [
      { name: 'direct', port: proxied.childPort, frontPids: [], appPids: app },
      ...(nginx === undefined
        ? []
        : [
            {
              name: 'nginx' as const,
              port: nginx.port,
              frontPids: childrenOf(nginx.proc.pid!),
              appPids: app,
            },
          ]),
      {
        name: 'liveroll proxy',
        port: proxied.publicPort,
        frontPids: [proxied.proc.pid!],
        appPids: app,
      },
      {
        name: 'liveroll proxy, JavaScript lane',
        port: jsLane.publicPort,
        frontPids: [jsLane.proc.pid!],
        appPids: [jsLane.childPid],
      },
      {
        name: 'liveroll proxy, http.Server only',
        port: httpOnly.publicPort,
        frontPids: [httpOnly.proc.pid!],
        appPids: [httpOnly.childPid],
      },
      { name: 'plain Node pipe', port: relayPort, frontPids: [relay.pid], appPids: app },
      ...(cRelay === undefined
        ? []
        : [
            {
              name: 'plain C relay' as const,
              port: cRelayPort,
              frontPids: [cRelay.pid],
              appPids: app,
            },
          ]),
      {
        name: 'liveroll direct',
        port: direct.publicPort,
        frontPids: [direct.proc.pid!],
        appPids: [direct.childPid],
      },
    ];
    const chosen = plan.pin ? chooseLayout() : { unpinned: '--no-pin' };
    const layout = 'unpinned' in chosen ? undefined : chosen;
    outcome.placement =
      'unpinned' in chosen
        ? `left to the scheduler (${chosen.unpinned})`
        : `the app on CPU ${chosen.app}, the front measured on CPU ${chosen.front} (taskset); wrk left to the scheduler`;
    const rounds = new Map<FrontName, WrkResult[]>(FRONT_NAMES.map((n) => [n, []]));
    for (const target of targets) runWrk(plan, target.port, 1); // warm-up
    for (let round = 0; round < plan.rounds; round++) {
      const order = round % 2 === 0 ? targets : [...targets].reverse();
      for (const target of order) {
        rounds.get(target.name)!.push(measuredRound(plan, target, layout));
      }
    }
    const med = (name: FrontName, key: 'rps' | 'p99Ms' | 'frontCpuUs' | 'appCpuUs'): number =>
      median(rounds.get(name)!.map((r) => r[key] ?? NaN));
    for (const { name } of targets) {
      outcome.fronts.push({
        front: name,
        rps: med(name, 'rps'),
        p99Ms: med(name, 'p99Ms'),
        errors: rounds.get(name)!.reduce((n, r) => n + r.errors, 0),
        frontCpuUs: med(name, 'frontCpuUs'),
        appCpuUs: med(name, 'appCpuUs'),
        toDirect: med(name, 'rps') / med('direct', 'rps'),
        toNginx: nginx === undefined ? NaN : med(name, 'rps') / med('nginx', 'rps'),
      });
    }
    const nginxPort = nginx?.port;
    if (layout !== undefined) {
      // The bulk transfers are left to the scheduler, as before pinning came.
      pin([...new Set(targets.flatMap((t) => [...t.frontPids, ...t.appPids]))], layout.all);
    }
    if (plan.bulkRounds > 0) {
      // glibc's own default, set through the environment, which liveroll then leaves alone.
      const defaultHeap = await startLiveroll(dir, 'proxy', {
        name: 'default-heap',
        env: { MALLOC_TRIM_THRESHOLD_: String(128 * 1024) },
      });
      running.push(defaultHeap.proc);
      const uploadFile = path.join(dir, 'upload.bin');
      fs.writeFileSync(uploadFile, '');
      fs.truncateSync(uploadFile, plan.bulkBytes);
      const routes: BulkRoute[] = [
        ['direct', proxied.childPort, 0],
        ...(nginxPort === undefined ? [] : [['nginx', nginxPort, 0] as BulkRoute]),
        ['plain Node pipe', relayPort, relay.pid],
        ...(cRelay === undefined ? [] : [['plain C relay', cRelayPort, cRelay.pid] as BulkRoute]),
        ['liveroll proxy', proxied.publicPort, proxied.pid],
        ['liveroll proxy, JavaScript lane', jsLane.publicPort, jsLane.pid],
        ["liveroll proxy, glibc's default trimming", defaultHeap.publicPort, defaultHeap.pid],
      ];
      outcome.bulk = await measureBulk(plan, routes, uploadFile);
    }
    return outcome;
  } finally {
    if (relay !== undefined) await stopProcess(relay);
    if (cRelay !== undefined) await stopProcess(cRelay);
    for (const proc of running) {
      if (proc.spawnargs[0] === 'nginx') proc.kill('SIGQUIT');
      else await stopLiveroll(proc);
    }
    removeTempDir(dir);
  }
}

/** The printed tables. */
export function frontReport(outcome: FrontOutcome): string {
  const { plan } = outcome;
  if (outcome.skipped !== undefined) return `HTTP fronts: skipped: ${outcome.skipped}`;
  const lines = [
    `HTTP fronts (wrk -t1 -c${plan.connections}, ${plan.seconds} s rounds, ${plan.rounds} alternating rounds per front, GET ${plan.path}, medians)`,
  ];
  if (outcome.placement !== undefined) lines.push(`Placement: ${outcome.placement}`);
  if (outcome.nginxSkipped !== undefined) lines.push(`nginx: skipped: ${outcome.nginxSkipped}`);
  if (outcome.cRelaySkipped !== undefined) {
    lines.push(`plain C relay: skipped: ${outcome.cRelaySkipped}`);
  }
  const ratio = (v: number): string => (Number.isNaN(v) ? '-' : `${v.toFixed(2)}x`);
  lines.push(
    table(
      [
        'front',
        'req/s',
        'of direct',
        'of nginx',
        'p99 ms',
        'p99 / nginx',
        'errors',
        'front CPU/req',
        'app CPU/req',
      ],
      outcome.fronts.map((f) => {
        const nginx = outcome.fronts.find((x) => x.front === 'nginx');
        return [
          f.front,
          f.rps.toFixed(0),
          ratio(f.toDirect),
          ratio(f.toNginx),
          f.p99Ms.toFixed(2),
          nginx ? ratio(f.p99Ms / nginx.p99Ms) : '-',
          String(f.errors),
          f.front === 'direct' ? '-' : `${f.frontCpuUs.toFixed(1)} us`,
          `${f.appCpuUs.toFixed(1)} us`,
        ];
      }),
    ),
  );
  if (outcome.bulk.length > 0) {
    const gib = (plan.bulkBytes / 2 ** 30).toFixed(2);
    lines.push(
      '',
      `Bulk transfers with curl, ${gib} GiB each way, ${plan.bulkRounds} rounds (medians: MB/s, and minor page faults of the relaying process per MiB)`,
    );
    const faults = (v: number): string => (Number.isNaN(v) ? '-' : v.toFixed(1));
    lines.push(
      table(
        ['route', 'download', 'upload', 'faults/MiB down', 'faults/MiB up'],
        outcome.bulk.map((b) => [
          b.route,
          b.downloadMBps.toFixed(0),
          b.uploadMBps.toFixed(0),
          faults(b.downloadFaultsPerMiB),
          faults(b.uploadFaultsPerMiB),
        ]),
      ),
    );
  }
  return lines.join('\n');
}

const USAGE = `usage: node dist/bench/measure/http-front.js [--rounds N] [--seconds N]
    [--connections N] [--path P] [--bulk-rounds N] [--bulk-bytes N] [--no-bulk] [--no-pin]
    [--help]

  Runs direct, nginx, liveroll (proxy mode, proxy mode through http.Server only, direct mode)
  and two relays that parse nothing (Node, C) side by side under wrk, then 1 GiB bulk
  transfers. The app is pinned to one CPU and each front to another while it is measured;
  --no-pin leaves them to the scheduler. See docs/benchmarks.md.`;

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        rounds: { type: 'string', default: '3' },
        seconds: { type: 'string', default: '3' },
        connections: { type: 'string', default: '32' },
        path: { type: 'string', default: '/' },
        'bulk-rounds': { type: 'string', default: '2' },
        'bulk-bytes': { type: 'string', default: String(2 ** 30) },
        'no-bulk': { type: 'boolean', default: false },
        'no-pin': { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    });
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  const { values } = parsed;
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const plan: FrontPlan = {
    rounds: Number(values.rounds),
    seconds: Number(values.seconds),
    connections: Number(values.connections),
    path: values.path,
    bulkRounds: values['no-bulk'] ? 0 : Number(values['bulk-rounds']),
    bulkBytes: Number(values['bulk-bytes']),
    pin: !values['no-pin'],
  };
  console.log(frontReport(await measureFronts(plan)));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
