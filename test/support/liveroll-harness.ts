/**
 * Test harness for liveroll: starting the real CLI and fixture apps as processes (each in its
 * own process group, all killed when the test ends), reading their JSON lines, waiting on them
 * with deadlines, and bounded HTTP load on loopback.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { TestContext } from 'node:test';
import { Pool } from 'undici';
import { until } from './helpers.js';

import { APP, CLI } from '../../scripts/liveroll-launch.js';

export { APP, CLI, ROOT, baseFlags } from '../../scripts/liveroll-launch.js';

/** A parsed JSON line. */
export type Line = Record<string, unknown>;

/** The `--exec` command running the fixture app with extra flags. */
export function appCommand(extra = ''): string {
  return `'${process.execPath}' '${APP}' --port <<PORT>> --health <<HEALTHCHECK>> ${extra}`.trim();
}

export { tempDir, until } from './helpers.js';

/** Live (non-zombie) processes whose process group is `pgid`. */
export function groupMembers(pgid: number): number[] {
  const members: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z') members.push(Number(entry));
  }
  return members;
}

/** True when `pid` no longer runs (gone or a zombie). */
export function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** A process in its own group whose stdout is JSON lines; killed (group and all) after the test. */
export class JsonProcess {
  readonly proc: ChildProcess;
  readonly lines: Line[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters = new Set<() => void>();
  /** Process groups this process told us about (its children); killed at cleanup too. */
  readonly groups = new Set<number>();

  constructor(t: TestContext, args: string[], env: NodeJS.ProcessEnv = process.env) {
    this.proc = spawn(process.execPath, args, {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
    });
    const pid = this.proc.pid ?? 0;
    this.groups.add(pid);
    let buffered = '';
    this.proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const parts = buffered.split('\n');
      buffered = parts.pop() ?? '';
      for (const part of parts) this.addLine(part);
    });
    this.proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        this.wake();
        resolve({ code, signal });
      });
    });
    t.after(() => {
      for (const group of this.groups) killGroup(group);
    });
  }

  private addLine(text: string): void {
    if (text.trim() === '') return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const isObject = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed);
    const line: Line = isObject ? (parsed as Line) : { msg: text, unparsed: true };
    if (typeof line.childPid === 'number' && line.childPid > 0) this.groups.add(line.childPid);
    this.lines.push(line);
    this.wake();
  }

  private wake(): void {
    for (const waiter of this.waiters) waiter();
  }

  /** Lines matching `match` so far. */
  matching(match: (line: Line) => boolean): Line[] {
    return this.lines.filter(match);
  }

  /** Resolves with the `nth` (1-based) line matching `match`; fails at the deadline or exit. */
  waitFor(
    match: (line: Line) => boolean,
    what: string,
    timeoutMs = 15_000,
    nth = 1,
  ): Promise<Line> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.lines.filter(match)[nth - 1];
        if (found !== undefined) return done(() => resolve(found));
        if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
          return done(() =>
            reject(new Error(`process exited while waiting for ${what}\n${this.describe()}`)),
          );
        }
      };
      const timer = setTimeout(
        () =>
          done(() =>
            reject(
              new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${this.describe()}`),
            ),
          ),
        timeoutMs,
      );
      const done = (settle: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        settle();
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Waits for the exit, failing after `timeoutMs`. */
  async waitExit(
    timeoutMs = 15_000,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    const expiry = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no exit within ${timeoutMs} ms\n${this.describe()}`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([this.exited, expiry]);
    } finally {
      clearTimeout(timer);
    }
  }

  signal(sig: NodeJS.Signals): void {
    this.proc.kill(sig);
  }

  /** The last lines and stderr, for failure messages. */
  describe(): string {
    const tail = this.lines.slice(-25).map((l) => JSON.stringify(l));
    return `--- last lines:\n${tail.join('\n')}\n--- stderr:\n${this.stderr.slice(-2000)}`;
  }
}

/** A log line with the given message (and, optionally, fields). */
export function msg(text: string, fields: Line = {}): (line: Line) => boolean {
  return (line) => line.msg === text && Object.entries(fields).every(([k, v]) => line[k] === v);
}

/** A fixture app started directly (for proxy tests), listening on an ephemeral port. */
export async function startApp(
  t: TestContext,
  args: string[] = [],
): Promise<{ app: JsonProcess; port: number }> {
  const app = new JsonProcess(t, [APP, '--port', '0', ...args]);
  const line = await app.waitFor((l) => l.event === 'listening', 'the app to listen');
  return { app, port: line.port as number };
}

/** A running liveroll CLI. */
export class Liveroll extends JsonProcess {
  /** The public port, known once the proxy listens. */
  port = 0;
}

/** Starts the CLI and waits until it is ready (its 'serving' line gives the public port). */
export async function startLiveroll(
  t: TestContext,
  flags: string[],
  waitServing = true,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Liveroll> {
  const run = new Liveroll(t, [CLI, ...flags], env);
  if (waitServing) {
    await run.waitFor(msg('ready'), 'liveroll to be ready', 20_000);
    run.port = run.matching(msg('serving'))[0]?.port as number;
  }
  return run;
}

/** A complete HTTP exchange's outcome. */
export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** One request on a fresh connection (no keep-alive), bounded by `timeoutMs`. */
export function fetchOnce(
  port: number,
  path: string,
  options: {
    method?: string;
    body?: Buffer | string;
    headers?: Record<string, string>;
    timeoutMs?: number;
  } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      path,
      method: options.method ?? 'GET',
      agent: false,
      headers: { connection: 'close', ...options.headers },
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** The parsed JSON body of a reply. */
export function jsonOf(reply: Reply): Record<string, unknown> {
  return JSON.parse(reply.body.toString('utf8')) as Record<string, unknown>;
}

/** Result of a load run. */
export interface LoadResult {
  ok: number;
  /** Descriptions of failed requests (a non-200 status or an error). */
  failures: string[];
  /** Names of the apps that answered, in order of arrival. */
  names: string[];
}

/** Options of a load run. */
export interface LoadOptions {
  path?: string;
  concurrency?: number;
  maxRequests?: number;
  maxMs?: number;
  stop?: AbortSignal;
  /** Reuse connections (an undici Pool) instead of one connection per request. */
  keepAlive?: boolean;
}

/** One GET through a keep-alive pool, as a Reply. */
async function fetchPooled(pool: Pool, path: string): Promise<Reply> {
  const res = await pool.request({
    path,
    method: 'GET',
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body };
}

/**
 * Requests `path` on `port` with `concurrency` loops until `stop` is aborted, `maxRequests`
 * were sent, or `maxMs` passed, whichever comes first. `live` fills in as replies arrive.
 */
export function startLoad(
  port: number,
  options: LoadOptions,
): { live: LoadResult; done: Promise<LoadResult> } {
  const live: LoadResult = { ok: 0, failures: [], names: [] };
  const end = Date.now() + (options.maxMs ?? 20_000);
  const max = options.maxRequests ?? 5_000;
  const pool = options.keepAlive === true ? new Pool(`http://127.0.0.1:${port}`) : undefined;
  const path = options.path ?? '/';
  let sent = 0;
  const loop = async (): Promise<void> => {
    while (!options.stop?.aborted && Date.now() < end && sent < max) {
      sent++;
      try {
        const reply =
          pool === undefined ? await fetchOnce(port, path) : await fetchPooled(pool, path);
        if (reply.status === 200) {
          live.ok++;
          const name = (jsonOf(reply).name as string | undefined) ?? '';
          if (live.names.at(-1) !== name) live.names.push(name);
        } else {
          live.failures.push(
            `status ${reply.status}: ${reply.body.toString('utf8').slice(0, 200)}`,
          );
        }
      } catch (err) {
        live.failures.push(String(err));
      }
    }
  };
  const done = Promise.all(Array.from({ length: options.concurrency ?? 4 }, loop))
    .then(() => pool?.close())
    .then(() => live);
  return { live, done };
}

/** startLoad, awaited. */
export function runLoad(port: number, options: LoadOptions): Promise<LoadResult> {
  return startLoad(port, options).done;
}

/** Fresh-connection and keep-alive loops on one port, stopped together. */
export interface MixedLoad {
  /** The fresh-connection loops' counts, then the keep-alive loops', filling in as they run. */
  live: LoadResult[];
  stop(): Promise<LoadResult[]>;
}

/** Starts `concurrency` fresh-connection and as many keep-alive loops on `port`. */
export function startMixedLoad(
  port: number,
  { concurrency = 3, maxMs = 60_000 }: { concurrency?: number; maxMs?: number } = {},
): MixedLoad {
  const controller = new AbortController();
  const common = { stop: controller.signal, concurrency, maxMs, maxRequests: 1_000_000 };
  const runs = [startLoad(port, common), startLoad(port, { ...common, keepAlive: true })];
  return {
    live: runs.map((r) => r.live),
    stop: () => {
      controller.abort();
      return Promise.all(runs.map((r) => r.done));
    },
  };
}

/** Waits until every loop of `load` has `more` successes past what it had when called. */
export async function loadProgress(
  load: { live: LoadResult[] },
  what: string,
  more = 30,
  timeoutMs = 20_000,
): Promise<void> {
  const base = load.live.map((r) => r.ok);
  await until(() => load.live.every((r, i) => r.ok >= (base[i] ?? 0) + more), what, timeoutMs);
}
