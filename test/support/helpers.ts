/**
 * Shared test helpers: temp directories, child processes that speak JSON lines, waiting with
 * deadlines (never sleeping), fd counting and HTTP requests on loopback.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { Child } from '../../scripts/child.js';

import { ensureDocker } from '../../scripts/docker.js';
export { Child, type Line } from '../../scripts/child.js';

/** The repository root (tests run from dist/test). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** Compiled fixtures. */
export const FIXTURES = path.join(ROOT, 'dist/test/fixtures');

/**
 * True once a Docker engine answers (installed and started by scripts/docker.ts when this is
 * root); otherwise marks the test skipped with the reason and returns false.
 */
export async function dockerOrSkip(t: TestContext): Promise<boolean> {
  const why = await ensureDocker();
  if (why === null) return true;
  t.skip(`needs a Docker engine: ${why}`);
  return false;
}

/** Directories of tempDir() still to remove when this test file's process exits. */
const leftDirs = new Set<string>();
process.once('exit', () => {
  for (const dir of leftDirs) fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * A fresh temp directory, removed after the test. Short, to leave room for socket paths.
 *
 * After-hooks run in the order they were added, so this one usually runs before the hooks that
 * kill the test's processes, and a process may still write into the directory. The removal
 * therefore never fails the test (a failed hook would skip the kills after it, and the live
 * processes would hold the test file open until its timeout), and is done once more at exit.
 */
export function tempDir(t: TestContext, prefix = 'tr-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  leftDirs.add(dir);
  t.after(() => {
    try {
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // A process of the test is still writing here; the exit handler removes it.
    }
  });
  return dir;
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function until<T>(
  check: () => T | Promise<T>,
  what: string,
  timeoutMs = 10_000,
): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  for (let pause = 1; ; pause = Math.min(pause * 2, 25)) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}

/** Resolves with the first event `name` of `emitter`, or rejects after `timeoutMs`. */
export function nextEvent<T = unknown>(
  emitter: object,
  name: string,
  timeoutMs = 10_000,
): Promise<T> {
  const source = emitter as { once(name: string, fn: (value: T) => void): unknown };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no ${name} event within ${timeoutMs} ms`)),
      timeoutMs,
    );
    source.once(name, (value: T) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

/** The number of open fds of this process. */
export function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** True when FD_CLOEXEC is set on `fd` of process `pid` (O_CLOEXEC in fdinfo flags). */
export function hasCloexec(fd: number, pid: number | 'self' = 'self'): boolean {
  const info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
  const flags = /flags:\s*([0-7]+)/.exec(info)?.[1] ?? '0';
  return (parseInt(flags, 8) & 0o2000000) !== 0;
}

/** Starts a compiled fixture with node; it is SIGKILLed after the test if still running. */
export function startFixture(
  t: TestContext,
  name: string,
  args: string[],
  env?: NodeJS.ProcessEnv,
): Child {
  const child = new Child(process.execPath, [path.join(FIXTURES, name), ...args], { env });
  t.after(() => child.kill());
  return child;
}

/** Starts any command; it is SIGKILLed after the test if still running. */
export function startCommand(
  t: TestContext,
  command: string,
  args: string[],
  env?: NodeJS.ProcessEnv,
): Child {
  const child = new Child(command, args, { env });
  t.after(() => child.kill());
  return child;
}

/** One HTTP GET on a fresh connection; resolves with status and body. */
export function httpGet(
  target: { port: number; host?: string } | { socketPath: string },
  urlPath = '/',
  agent: http.Agent | false = false,
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ ...target, path: urlPath, agent, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
  });
}

/** A self-signed certificate for 127.0.0.1, made with openssl in `dir`. */
export function certificate(dir: string): { cert: string; key: string } {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

/** Binds 127.0.0.1:`port` (0: any) and resolves with the server, or null when it is taken. */
function tryListen(port: number): Promise<net.Server | null> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(null));
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

/** Ports the kernel never hands out on its own: below and above ip_local_port_range. */
function portsOutsideEphemeralRange(): [number, number][] {
  let low = 32768;
  let high = 60999;
  try {
    const text = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8');
    [low = low, high = high] = text.trim().split(/\s+/).map(Number);
  } catch {
    // not Linux's procfs: the usual range
  }
  const spans: [number, number][] = [
    [10_000, low - 1],
    [high + 1, 65_535],
  ];
  return spans.filter(([from, to]) => to - from >= 1000);
}

/**
 * `count` different ports, free now, for processes that bind them later. A port released after
 * `listen(0)` lies in the kernel's ephemeral range, and under load an outgoing connection can
 * take it as its local port before the process binds it (EADDRINUSE: seen once in 5 matrix
 * runs). These are picked at random outside that range, as an operator's fixed ports are, and
 * checked by binding them. Where the range leaves no room, they come from `listen(0)`.
 */
export async function portsToBindLater(count: number): Promise<number[]> {
  const spans = portsOutsideEphemeralRange();
  const held: net.Server[] = [];
  try {
    for (let attempt = 0; held.length < count && attempt < 100 * count; attempt++) {
      const span = spans[attempt % Math.max(1, spans.length)];
      const port = span ? span[0] + Math.floor(Math.random() * (span[1] - span[0] + 1)) : 0;
      const server = await tryListen(port);
      if (server !== null) held.push(server);
    }
    if (held.length < count) throw new Error(`no ${count} free ports on 127.0.0.1`);
    return held.map((server) => (server.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(held.map((server) => new Promise((resolve) => server.close(resolve))));
  }
}

/** True on glibc, which reports its version in Node's diagnostic report (musl does not). */
export function onGlibc(): boolean {
  const report = process.report.getReport() as { header?: { glibcVersionRuntime?: string } };
  return typeof report.header?.glibcVersionRuntime === 'string';
}
