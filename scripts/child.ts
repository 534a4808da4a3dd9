/**
 * A child process whose stdout is read as JSON lines, awaited line by line with deadlines.
 * Used by the demo, the benchmarks and the tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';

/** A JSON line a child printed. */
export type Line = Record<string, unknown> & { event?: string };

/** A child process whose stdout is read as JSON lines. */
export class Child {
  readonly proc: ChildProcess;
  readonly lines: Line[] = [];
  stderr = '';
  private waiters: (() => void)[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    command: string,
    args: string[],
    /** `fd3`: a descriptor of ours the child gets as its fd 3 (as systemd passes sockets). */
    options: { env?: NodeJS.ProcessEnv; cwd?: string; fd3?: number } = {},
  ) {
    this.proc = spawn(command, args, {
      stdio:
        options.fd3 === undefined
          ? ['pipe', 'pipe', 'pipe']
          : ['pipe', 'pipe', 'pipe', options.fd3],
      env: { ...process.env, ...options.env },
      cwd: options.cwd,
    });
    let buffered = '';
    this.proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const text = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        try {
          this.lines.push(JSON.parse(text) as Line);
        } catch {
          this.lines.push({ event: 'text', text });
        }
      }
      this.notify();
    });
    this.proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.notify();
        resolve({ code, signal });
      });
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** The first line (from index `from`) matching `match`, waiting up to `timeoutMs`. */
  async line(
    match: string | ((line: Line) => boolean),
    timeoutMs = 15_000,
    from = 0,
  ): Promise<Line> {
    const test = typeof match === 'string' ? (line: Line) => line.event === match : match;
    const end = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.slice(from).find(test);
      if (found) return found;
      if (!this.alive) {
        throw new Error(`process exited before printing ${String(match)}; stderr: ${this.stderr}`);
      }
      const left = end - Date.now();
      if (left <= 0)
        throw new Error(`no line ${String(match)} within ${timeoutMs} ms; stderr: ${this.stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Writes a line to the child's stdin. */
  send(text: string): void {
    this.proc.stdin!.write(text + '\n');
  }

  /** Sends `signal` and waits for the exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.alive) this.proc.kill(signal);
    await this.exited;
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}
