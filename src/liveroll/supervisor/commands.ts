/**
 * Running `--pull` and `--id`: `sh -c` in its own process group, stdout captured (bounded),
 * stderr logged line by line, and a deadline past which the whole group is SIGKILLed, so a hung
 * `docker pull` cannot make liveroll unkillable or stall its updates forever.
 */
import { spawn } from 'node:child_process';
import type { Logger } from 'pino';
import { LiverollError, LiverollErrorCodes, abortedError } from '../errors.js';
import { forEachLine } from './output-lines.js';
import { childEnvironment } from '../systemd.js';
import { signalGroup } from './process-group.js';

/** Most stdout bytes kept from one command; more makes an `--id` run fail. */
export const MAX_COMMAND_OUTPUT_BYTES = 64 * 1024;

/** How long the pipes may stay open after the shell exited. */
const PIPE_GRACE_MS = 500;

/** How one command run is limited and reported. */
export interface CommandOptions {
  /** Which flag the command came from ('pull', 'id'); names it in logs and errors. */
  name: string;
  timeoutMs: number;
  signal?: AbortSignal;
  logger: Logger;
  /** Log stdout lines too (for `--pull`, whose stdout is progress, not a result). */
  logStdout?: boolean;
}

/** What a successful run printed. */
export interface CommandResult {
  stdout: string;
  /** True when stdout went past MAX_COMMAND_OUTPUT_BYTES and was cut. */
  truncated: boolean;
}

/** Runs `command` through `sh -c`; resolves on exit status 0, rejects with a LiverollError otherwise. */
export function runCommand(command: string, options: CommandOptions): Promise<CommandResult> {
  const { name, logger, signal } = options;
  if (signal?.aborted) return Promise.reject(abortedError(signal, `--${name}`));
  return new Promise((resolve, reject) => {
    const proc = spawn('sh', ['-c', command], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: childEnvironment(),
    });
    const log = logger.child({ command: name, commandPid: proc.pid });
    log.debug({ shell: command }, 'command started');
    const chunks: Buffer[] = [];
    let size = 0;
    let truncated = false;
    const stderrTail: string[] = [];
    let stopReason: LiverollError | undefined;

    proc.stdout.on('data', (chunk: Buffer) => {
      if (size + chunk.length > MAX_COMMAND_OUTPUT_BYTES) truncated = true;
      else chunks.push(chunk);
      size += chunk.length;
    });
    if (options.logStdout === true) {
      forEachLine(proc.stdout, (line) => log.info({ stream: 'stdout' }, line));
    }
    forEachLine(proc.stderr, (line) => {
      stderrTail.push(line);
      if (stderrTail.length > 5) stderrTail.shift();
      log.info({ stream: 'stderr' }, line);
    });

    const kill = (reason: LiverollError): void => {
      stopReason ??= reason;
      if (proc.pid !== undefined) signalGroup(proc.pid, 'SIGKILL');
    };
    const timer = setTimeout(() => {
      kill(
        new LiverollError(
          LiverollErrorCodes.COMMAND_TIMEOUT,
          `--${name} did not finish within ${options.timeoutMs} ms; its process group was killed`,
        ),
      );
    }, options.timeoutMs);
    const onAbort = (): void => kill(abortedError(signal as AbortSignal, `--${name}`));
    signal?.addEventListener('abort', onAbort, { once: true });

    const finish = (err: Error | undefined): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (err !== undefined) reject(err);
      else resolve({ stdout: Buffer.concat(chunks).toString('utf8'), truncated });
    };
    proc.on('error', (err) =>
      finish(
        new LiverollError(LiverollErrorCodes.COMMAND_FAILED, `--${name} could not start`, {
          cause: err,
        }),
      ),
    );
    // A background grandchild may keep the pipes open after sh is gone: once sh has exited,
    // give the pipes a moment to deliver what is buffered, then close them ourselves.
    let pipeTimer: NodeJS.Timeout | undefined;
    proc.on('exit', () => {
      pipeTimer = setTimeout(() => {
        proc.stdout.destroy();
        proc.stderr.destroy();
      }, PIPE_GRACE_MS);
    });
    proc.on('close', (code, sig) => {
      clearTimeout(pipeTimer);
      if (stopReason !== undefined) return finish(stopReason);
      if (code === 0) return finish(undefined);
      const status = sig === null ? `exit status ${code}` : `signal ${sig}`;
      const tail = stderrTail.length > 0 ? `: ${stderrTail.join(' | ')}` : '';
      finish(
        new LiverollError(
          LiverollErrorCodes.COMMAND_FAILED,
          `--${name} failed with ${status}${tail}`,
        ),
      );
    });
  });
}

/** Runs `--id` and returns its trimmed stdout; an empty or oversized id is an error. */
export async function readArtifactId(
  command: string,
  options: Omit<CommandOptions, 'name' | 'logStdout'>,
): Promise<string> {
  const result = await runCommand(command, { ...options, name: 'id' });
  const id = result.stdout.trim();
  if (result.truncated) {
    throw new LiverollError(
      LiverollErrorCodes.BAD_ID,
      `--id printed more than ${MAX_COMMAND_OUTPUT_BYTES} bytes`,
    );
  }
  if (id === '') throw new LiverollError(LiverollErrorCodes.BAD_ID, '--id printed nothing');
  return id;
}
