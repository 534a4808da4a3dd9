/**
 * One managed child: `sh -c <exec>` started in its own process group on a given port, its
 * output logged line by line under its name, its exit observed, and a stop that signals the
 * whole group: SIGTERM, a grace period for the group to exit, then SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import { forEachLine } from './output-lines.js';
import { childEnvironment } from './systemd.js';
import { liveGroupMembers, signalGroup, waitGroupGone } from './process-group.js';
import { withTimeout } from './wait.js';

/** How a child ended. */
export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when liveroll asked it to stop; false for a crash or an exit on its own. */
  requested: boolean;
}

/** What one child is started with. */
export interface ChildSpec {
  /** A short name unique within this liveroll (`child-3`), used in every log line about it. */
  name: string;
  /** The `--exec` command with its template variables already substituted. */
  command: string;
  port: number;
  /** The artifact id this child runs. */
  artifactId: string;
  logger: Logger;
}

/** After SIGKILL, how long to wait for the shell's exit before giving up on it. */
const KILL_WAIT_MS = 5_000;

/** A child process and its process group. */
export class ManagedChild {
  readonly name: string;
  readonly port: number;
  readonly artifactId: string;
  /** Pid of the shell, which is also the process group id. 0 if spawning failed. */
  readonly pid: number;
  /** Resolves once the shell has exited (or failed to start). */
  readonly exited: Promise<ChildExit>;
  /** Aborted when the shell exits, so that waits on this child can stop early. */
  readonly exitSignal: AbortSignal;
  readonly logger: Logger;
  private readonly process: ChildProcess;
  private stopRequested = false;
  private exitInfo: ChildExit | undefined;

  constructor(spec: ChildSpec) {
    this.name = spec.name;
    this.port = spec.port;
    this.artifactId = spec.artifactId;
    this.process = spawn('sh', ['-c', spec.command], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: childEnvironment(),
    });
    this.pid = this.process.pid ?? 0;
    this.logger = spec.logger.child({
      child: spec.name,
      childPid: this.pid,
      port: spec.port,
      artifact: spec.artifactId,
    });
    const exitController = new AbortController();
    this.exitSignal = exitController.signal;
    this.exited = new Promise((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (this.exitInfo !== undefined) return;
        this.exitInfo = { code, signal, requested: this.stopRequested };
        exitController.abort(new Error(`${this.name} exited`));
        resolve(this.exitInfo);
      };
      this.process.on('exit', done);
      this.process.on('error', (err) => {
        this.logger.error({ err }, 'child could not be started');
        done(null, null);
      });
    });
    this.pipeOutput();
    this.logger.info({ shell: spec.command }, 'child started');
  }

  /** True until the shell has exited. */
  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** True once stop() was called. */
  get stopping(): boolean {
    return this.stopRequested;
  }

  /**
   * Stops the child: SIGTERM to its process group, then up to `graceMs` for every member to
   * exit, then SIGKILL to the group. Resolves with the shell's exit; idempotent.
   */
  async stop(graceMs: number): Promise<ChildExit> {
    if (this.stopRequested) return this.exited;
    this.stopRequested = true;
    if (this.pid === 0) return this.exited;
    this.logger.info({ graceMs }, 'stopping child (SIGTERM to its process group)');
    signalGroup(this.pid, 'SIGTERM');
    const gone = await this.waitExitAndGroup(graceMs);
    if (!gone) {
      this.logger.warn(
        { members: liveGroupMembers(this.pid) },
        'child did not exit within its grace period; SIGKILL to its process group',
      );
      signalGroup(this.pid, 'SIGKILL');
      await withTimeout(this.exited, KILL_WAIT_MS);
    }
    return this.exitInfo ?? { code: null, signal: null, requested: true };
  }

  /** Waits until the shell exited and its group has no live member; false at the deadline. */
  private async waitExitAndGroup(graceMs: number): Promise<boolean> {
    const deadline = Date.now() + graceMs;
    const exit = await withTimeout(this.exited, graceMs);
    if (exit === undefined) return false;
    return waitGroupGone(this.pid, Math.max(0, deadline - Date.now()));
  }

  private pipeOutput(): void {
    const { stdout, stderr } = this.process;
    if (stdout !== null)
      forEachLine(stdout, (line) => this.logger.info({ stream: 'stdout' }, line));
    if (stderr !== null)
      forEachLine(stderr, (line) => this.logger.info({ stream: 'stderr' }, line));
  }
}
