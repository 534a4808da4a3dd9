/**
 * One managed child: `sh -c <exec>` started in its own process group on a given port, its
 * output logged line by line under its name, its exit observed, and a stop that signals the
 * whole group: SIGTERM, a grace period for the group to exit, then SIGKILL.
 *
 * No orphans: a liveroll killed with SIGKILL runs no code, so each group watches liveroll
 * itself. The shell that runs `--exec` first starts a watcher in the background, in the same
 * group, blocked reading a pipe whose write end only liveroll holds. The kernel closes that end
 * when liveroll dies, however it dies; the watcher then sends SIGTERM to its whole group and,
 * after the stop timeout, SIGKILL. While liveroll lives, the watcher only waits, and a stop from
 * liveroll ends it with the rest of the group. It needs nothing but a POSIX `sh`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import { forEachLine } from './output-lines.js';
import { childEnvironment } from '../systemd.js';
import { liveGroupMembers, signalGroup, waitGroupGone } from './process-group.js';
import { withTimeout } from '../wait.js';

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
  /** After liveroll's death, how long the watcher waits between SIGTERM and SIGKILL. */
  orphanGraceMs: number;
  /**
   * Direct mode: a listening socket passed as fd 3 under systemd's socket-activation
   * convention (LISTEN_FDS=1, LISTEN_PID=the child's pid, LISTEN_FDNAMES=`listenerName`).
   */
  listener?: { fd: number; name: string };
}

/**
 * The shell script around `--exec` ($1). fd 9 keeps the watcher's pipe (stdin as spawned); the
 * command itself gets /dev/null as stdin. The watcher closes fd 3 so that it never holds the
 * public socket. `eval` keeps the pid: `exec` in `--exec` replaces this very shell, so
 * LISTEN_PID=$$ names the program.
 */
function wrapperScript(orphanGraceMs: number, direct: boolean): string {
  const graceSeconds = Math.max(1, Math.ceil(orphanGraceMs / 1000));
  return [
    'exec 9<&0 </dev/null',
    `(exec 3<&-; read -r _ <&9; trap '' TERM; kill -TERM 0; sleep ${graceSeconds}; kill -KILL 0) &`,
    'exec 9<&-',
    ...(direct ? ['LISTEN_PID=$$', 'export LISTEN_PID'] : []),
    'eval "$1"',
  ].join('\n');
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
    const { listener } = spec;
    const env = childEnvironment();
    if (listener !== undefined) {
      env.LISTEN_FDS = '1';
      env.LISTEN_FDNAMES = listener.name;
    }
    const script = wrapperScript(spec.orphanGraceMs, listener !== undefined);
    this.process = spawn('sh', ['-c', script, 'liveroll-child', spec.command], {
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe', ...(listener === undefined ? [] : [listener.fd])],
      env,
    });
    // The write end of the watcher's pipe: never written (so it keeps no event loop alive),
    // closed by liveroll's exit.
    this.process.stdin?.on('error', () => {});
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
