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
import { LiverollError, LiverollErrorCodes, describeError } from '../errors.js';
import { waitUntilHealthy } from './health.js';
import { expandExec, type LiverollOptions } from '../options.js';
import { ChildPorts, type PortLease } from './ports.js';
import { signalGroup } from './process-group.js';
import type { Router, SharedListener, UpdateReason } from './routing.js';
import { CHILD_HOST } from './routing.js';
import { FailedIds } from './failed-ids.js';
import { checkExecTemplate } from './exec-template.js';

export {
  CHILD_HOST,
  directRouter,
  type Router,
  type SharedListener,
  type UpdateReason,
} from './routing.js';

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
  private readonly failedIds: FailedIds;

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
    this.failedIds = new FailedIds(options.restartBackoffMs, options.restartBackoffMaxMs, logger);
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
    checkExecTemplate(this.options.exec, listener !== undefined, this.log);
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
    if (routine && this.current !== undefined && this.failedIds.isBackingOff(id)) return;
    let record: ChildRecord;
    try {
      record = await this.launch(id);
    } catch (err) {
      this.failedIds.remember(id);
      throw err;
    }
    this.failedIds.clear();
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
