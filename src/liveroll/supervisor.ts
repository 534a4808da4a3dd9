/**
 * The roll loop: keeps one healthy child serving and replaces it when asked.
 *
 * An update runs `--pull` and `--id`, starts a child on a free port, health-checks it, puts it
 * in the proxy rotation, and only then retires the others (out of the rotation, in-flight
 * requests drained, SIGTERM, grace, SIGKILL of the group). A child that fails its health check
 * is killed; the serving one never notices.
 *
 * Triggers: the interval (skipped when the id is unchanged), SIGHUP (forced: a new child even
 * for the same id), and the unexpected exit of the serving child (replaced after a crash-loop
 * backoff). One update runs at a time; triggers arriving meanwhile coalesce into one follow-up.
 * `trigger()` only records the request, so signal handlers never wait for an update.
 */
import type { Logger } from 'pino';
import { RestartBackoff } from './backoff.js';
import { ManagedChild, type ChildExit } from './child.js';
import { readArtifactId, runCommand } from './commands.js';
import { LiverollError, LiverollErrorCodes, describeError } from './errors.js';
import { waitUntilHealthy } from './health.js';
import { expandExec, type LiverollOptions } from './options.js';
import { ChildPorts, type PortLease } from './ports.js';
import { signalGroup } from './process-group.js';
import type { BackendAddress } from './rotation.js';

/**
 * Where the supervisor puts healthy children and takes retiring ones from. In proxy mode it is
 * the reverse proxy; in direct mode the children accept on the public socket themselves, so
 * there is no rotation and a child drains on its own after SIGTERM.
 */
export interface Router {
  add(backend: BackendAddress): void;
  /** Takes the child out of the rotation; resolves true once its requests finished in time. */
  retire(name: string, timeoutMs: number): Promise<boolean>;
  forget(name: string): Promise<void>;
}

/** The router of direct mode: nothing to route. */
export const directRouter: Router = {
  add: () => {},
  retire: () => Promise.resolve(true),
  forget: () => Promise.resolve(),
};

/** The public socket a direct-mode child receives as fd 3. */
export interface SharedListener {
  fd: number;
  /** Its LISTEN_FDNAMES name. */
  name: string;
}

/** Where children listen; the proxy and the health check connect there. */
export const CHILD_HOST = '127.0.0.1';

/** What asked for an update. */
export type UpdateReason = 'start' | 'interval' | 'sighup' | 'child-exit';

type Role = 'candidate' | 'serving' | 'retiring';

interface ChildRecord {
  child: ManagedChild;
  lease: PortLease;
  role: Role;
  /** When it entered the rotation. */
  servingSince: number;
  /** Set once the child is being stopped and forgotten. */
  disposal?: Promise<void>;
}

interface PendingUpdate {
  force: boolean;
  reasons: Set<UpdateReason>;
}

/** Runs the updates of one liveroll instance. */
export class Supervisor {
  private readonly options: LiverollOptions;
  private readonly proxy: Router;
  private listener: SharedListener | undefined;
  private readonly log: Logger;
  private readonly ports: ChildPorts;
  private readonly backoff: RestartBackoff;
  private readonly children = new Set<ChildRecord>();
  private readonly cancel = new AbortController();
  private current: ChildRecord | undefined;
  private currentId: string | undefined;
  private pending: PendingUpdate | undefined;
  private loop: Promise<void> | undefined;
  private intervalTimer: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private halted = false;
  private sequence = 0;
  /** The last id whose update failed, and when it may be tried again on an interval tick. */
  private failedId: { id: string; retryAt: number } | undefined;
  private readonly failedIdBackoff: RestartBackoff;

  constructor(options: LiverollOptions, proxy: Router, logger: Logger) {
    this.options = options;
    this.proxy = proxy;
    this.log = logger;
    this.ports = new ChildPorts(options.childPorts);
    this.backoff = new RestartBackoff({
      initialMs: options.restartBackoffMs,
      maxMs: options.restartBackoffMaxMs,
      resetMs: options.restartResetMs,
    });
    this.failedIdBackoff = new RestartBackoff({
      initialMs: options.restartBackoffMs,
      maxMs: options.restartBackoffMaxMs,
      resetMs: Infinity,
    });
  }

  /** The artifact id of the serving child, if any. */
  get servingId(): string | undefined {
    return this.current === undefined ? undefined : this.currentId;
  }

  /**
   * Brings up the first child; rejects (with nothing left running) when that fails. In direct
   * mode, `listener` is the public socket every child gets.
   */
  async start(listener?: SharedListener): Promise<void> {
    this.listener = listener;
    this.checkExecTemplate();
    const first = this.update({ force: true, reasons: new Set(['start']) });
    // Triggers that arrive meanwhile wait for it, as they would for any update.
    this.loop = first.then(
      () => undefined,
      () => undefined,
    );
    try {
      await first;
    } finally {
      this.loop = undefined;
    }
    this.scheduleInterval();
    this.kick();
  }

  /** Says what in `--exec` is probably a mistake; it still runs as given. */
  private checkExecTemplate(): void {
    const { exec } = this.options;
    if (!exec.includes('<<PORT>>')) {
      this.log.warn(
        { exec },
        '--exec has no <<PORT>>: each child must find out by itself which port to listen on',
      );
    }
    if (/^\s*exec\s/.test(exec)) return;
    if (this.listener !== undefined) {
      this.log.warn(
        { exec },
        '--exec does not start with "exec": in direct mode LISTEN_PID names the shell, so a program it forks will not take the socket',
      );
    } else {
      this.log.info(
        'the child pid logged is the shell running --exec; start --exec with "exec" to make it the program itself',
      );
    }
  }

  /** Asks for an update; returns at once. While one runs, requests merge into one follow-up. */
  trigger(reason: UpdateReason, force = false): void {
    if (this.halted) return;
    // During a crash-loop backoff the scheduled restart is the next attempt, not the interval.
    if (reason === 'interval' && this.restartTimer !== undefined) return;
    if (this.pending === undefined) this.pending = { force, reasons: new Set([reason]) };
    else {
      this.pending.force ||= force;
      this.pending.reasons.add(reason);
    }
    this.kick();
  }

  /** Starts the loop over pending updates unless it already runs. */
  private kick(): void {
    if (this.loop !== undefined || this.pending === undefined || this.halted) return;
    this.loop = this.runPending().finally(() => {
      this.loop = undefined;
      this.scheduleInterval();
      this.kick();
    });
  }

  /** Stops every trigger and cancels the running update (its new child is killed); children keep serving. */
  async halt(): Promise<void> {
    this.halted = true;
    clearTimeout(this.intervalTimer);
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    this.pending = undefined;
    this.cancel.abort(new LiverollError(LiverollErrorCodes.ABORTED, 'liveroll is stopping'));
    await this.loop;
  }

  /** Retires every child (drained, then stopped). Call after halt() and after the proxy stopped taking requests. */
  async retireAll(): Promise<void> {
    this.current = undefined;
    await Promise.all([...this.children].map((record) => this.retire(record)));
  }

  /** SIGKILLs every child's process group now, synchronously (a second signal, a fatal error). */
  killAllNow(): void {
    for (const record of this.children) {
      if (record.child.pid !== 0) signalGroup(record.child.pid, 'SIGKILL');
    }
  }

  private async runPending(): Promise<void> {
    while (this.pending !== undefined && !this.halted) {
      const job = this.pending;
      this.pending = undefined;
      try {
        await this.update(job);
      } catch (err) {
        this.onUpdateFailed(err);
      }
    }
  }

  private onUpdateFailed(err: unknown): void {
    if (this.halted) return;
    this.log.error({ err: describeError(err) }, 'update failed');
    if (this.current === undefined) this.scheduleRestart();
  }

  private async update(job: PendingUpdate): Promise<void> {
    const reasons = [...job.reasons];
    // An idle interval tick says one line, not three.
    const routine = !job.force && reasons.every((reason) => reason === 'interval');
    this.log[routine ? 'debug' : 'info']({ reasons, force: job.force }, 'update started');
    const id = await this.fetchArtifact(routine);
    if (!job.force && this.current !== undefined && id === this.currentId) {
      this.log.info({ id }, 'update skipped: id unchanged');
      return;
    }
    if (routine && this.current !== undefined && this.isBackingOff(id)) return;
    let record: ChildRecord;
    try {
      record = await this.launch(id);
    } catch (err) {
      this.rememberFailure(id);
      throw err;
    }
    this.failedId = undefined;
    this.failedIdBackoff.reset();
    if (!record.child.running) {
      await this.dispose(record);
      throw new LiverollError(
        LiverollErrorCodes.CHILD_EXITED,
        'the new child exited as it became healthy',
      );
    }
    this.promote(record, id);
    const others = [...this.children].filter((r) => r !== record);
    for (const other of others) other.role = 'retiring';
    await Promise.all(others.map((other) => this.retire(other)));
    this.log.info({ id, child: record.child.name }, 'update complete');
  }

  /**
   * An id whose child failed its health check is not tried again on every tick: only once its
   * backoff delay (as for crash loops) has passed. SIGHUP retries it at once.
   */
  private isBackingOff(id: string): boolean {
    const failed = this.failedId;
    if (failed === undefined || failed.id !== id) return false;
    const waitMs = failed.retryAt - Date.now();
    if (waitMs <= 0) return false;
    this.log.info({ id, retryInMs: waitMs }, 'update skipped: this id failed; retrying later');
    return true;
  }

  private rememberFailure(id: string): void {
    if (this.failedId?.id !== id) this.failedIdBackoff.reset();
    // The first failure waits the initial delay already: the backoff's first answer is 0.
    if (this.failedIdBackoff.count === 0) this.failedIdBackoff.next();
    this.failedId = { id, retryAt: Date.now() + this.failedIdBackoff.next() };
  }

  /** Runs --pull and --id. With no child serving, a failure falls back to the last good id. */
  private async fetchArtifact(routine = false): Promise<string> {
    const { options, log } = this;
    const limits = { timeoutMs: options.commandTimeoutMs, signal: this.cancel.signal, logger: log };
    try {
      if (options.pull.trim() !== '') {
        await runCommand(options.pull, { ...limits, name: 'pull', logStdout: true });
      }
      const id = await readArtifactId(options.id, limits);
      log[routine && id === this.currentId ? 'debug' : 'info']({ id }, 'artifact id');
      return id;
    } catch (err) {
      const fallback = this.currentId;
      if (this.current !== undefined || fallback === undefined || this.cancel.signal.aborted)
        throw err;
      log.warn(
        { err: describeError(err), id: fallback },
        'pull or id failed; restarting the last good artifact',
      );
      return fallback;
    }
  }

  /** Starts a child for `id` and waits for it to be healthy; kills it if it is not. */
  private async launch(id: string): Promise<ChildRecord> {
    const { options } = this;
    const lease = await this.ports.acquire();
    if (lease.skipped.length > 0) {
      this.log.warn({ skipped: lease.skipped, port: lease.port }, 'child port passed over');
    }
    const child = new ManagedChild({
      name: `child-${++this.sequence}`,
      command: expandExec(options.exec, lease.port, options.healthPath),
      port: lease.port,
      artifactId: id,
      logger: this.log,
      orphanGraceMs: options.stopTimeoutMs,
      listener: this.listener,
    });
    const record: ChildRecord = { child, lease, role: 'candidate', servingSince: 0 };
    this.children.add(record);
    void child.exited.then((exit) => this.onChildExit(record, exit));
    try {
      await waitUntilHealthy({
        host: CHILD_HOST,
        port: lease.port,
        path: options.healthPath,
        timeoutMs: options.healthTimeoutMs,
        probeTimeoutMs: options.healthProbeTimeoutMs,
        intervalMs: options.healthIntervalMs,
        childExit: child.exitSignal,
        signal: this.cancel.signal,
        logger: child.logger,
      });
    } catch (err) {
      child.logger.warn({ err: describeError(err) }, 'child failed its health check; killing it');
      await this.dispose(record);
      throw err;
    }
    child.logger.info('child healthy');
    return record;
  }

  private promote(record: ChildRecord, id: string): void {
    const { child } = record;
    record.role = 'serving';
    record.servingSince = Date.now();
    this.proxy.add({ name: child.name, host: CHILD_HOST, port: child.port });
    this.current = record;
    this.currentId = id;
    child.logger.info('child serving');
  }

  /** Out of the rotation, in-flight requests drained (bounded), then stopped. */
  private async retire(record: ChildRecord): Promise<void> {
    record.role = 'retiring';
    const { child } = record;
    child.logger.info('child retiring');
    const drained = await this.proxy.retire(child.name, this.options.drainTimeoutMs);
    if (!drained) child.logger.warn('in-flight requests outlived the drain timeout');
    await this.dispose(record);
  }

  /** Stops the child's process group and forgets it everywhere; once per child. */
  private dispose(record: ChildRecord): Promise<void> {
    record.disposal ??= this.stopAndForget(record);
    return record.disposal;
  }

  private async stopAndForget(record: ChildRecord): Promise<void> {
    const { drainTimeoutMs, stopTimeoutMs } = this.options;
    // A direct-mode child drains its own connections after SIGTERM: it gets the drain time too.
    const graceMs = this.listener === undefined ? stopTimeoutMs : drainTimeoutMs + stopTimeoutMs;
    const exit = await record.child.stop(graceMs);
    await this.proxy.forget(record.child.name);
    this.ports.release(record.lease);
    this.children.delete(record);
    record.child.logger.info({ code: exit.code, signal: exit.signal }, 'child stopped');
  }

  private onChildExit(record: ChildRecord, exit: ChildExit): void {
    if (exit.requested || record.role !== 'serving' || this.halted) return;
    const uptimeMs = Date.now() - record.servingSince;
    record.child.logger.error(
      { code: exit.code, signal: exit.signal, uptimeMs },
      'child exited unexpectedly',
    );
    if (this.current === record) this.current = undefined;
    record.role = 'retiring';
    void this.proxy.retire(record.child.name, 0);
    void this.dispose(record);
    this.scheduleRestart(uptimeMs);
  }

  /** Replaces the missing child after the crash-loop delay. */
  private scheduleRestart(uptimeMs?: number): void {
    if (this.halted || this.restartTimer !== undefined) return;
    const delayMs = this.backoff.next(uptimeMs);
    this.log.info({ delayMs, failures: this.backoff.count }, 'restart scheduled');
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.trigger('child-exit');
    }, delayMs);
  }

  private scheduleInterval(): void {
    clearTimeout(this.intervalTimer);
    if (this.halted || this.options.intervalMs <= 0) return;
    this.intervalTimer = setTimeout(() => this.trigger('interval'), this.options.intervalMs);
  }
}
