/**
 * The Upgrader: one per process. It inherits the listening sockets of the current owner of a
 * coordination directory (or finds none), becomes the owner in `ready()`, and later hands its
 * sockets to the next process that starts on the same directory.
 */
import { EventEmitter } from 'eventemitter3';
import { Coordinator } from './coordination/coordinator.js';
import type { PidFile } from './coordination/pid-file.js';
import { unlinkUpgradeSocket, type UpgradeSocket } from './coordination/upgrade-socket.js';
import { Deadline, throwIfAborted } from './deadline.js';
import { ErrorCodes, TablerollError, asTablerollError } from './errors.js';
import { Fds } from './fd-store.js';
import type { StoredFd } from './fd-types.js';
import { stoppedError } from './handoff-errors.js';
import { resolveLogger, type Logger } from './logger.js';
import { native } from './native.js';
import { growFdTableEarly, inheritFromOwner, type Session } from './newcomer-handoff.js';
import { NewcomerSession } from './newcomer-session.js';
import { OwnerSession } from './owner-session.js';
import { SystemdNotifier, reportToSystemd } from './systemd/sd-notify.js';
import { mergeActivated, takeActivatedSockets } from './systemd/socket-activation.js';
import type { CompletionReason, UpgraderEvents } from './upgrader-events.js';
import { resolveOptions, type ResolvedOptions, type UpgraderOptions } from './upgrader-options.js';
import { StateMachine, type UpgraderState } from './upgrader-state.js';

export type { CompletionReason, UpgraderEvents } from './upgrader-events.js';

interface Parts {
  coordinator: Coordinator;
  options: ResolvedOptions;
  log: Logger;
  socket: UpgradeSocket;
  pidFile: PidFile;
  session: Session | null;
  inherited: StoredFd[];
}

/** Coordinates zero-downtime upgrades with the other processes of a coordination directory. */
export class Upgrader extends EventEmitter<UpgraderEvents> {
  /** The coordination directory. */
  readonly dir: string;
  /** This process's id in it. */
  readonly id: string;
  /** The descriptors this process serves on and will hand over. */
  readonly fds: Fds;

  private readonly options: ResolvedOptions;
  private readonly log: Logger;
  private readonly machine: StateMachine;
  private readonly socket: UpgradeSocket;
  private readonly owner: OwnerSession;
  /** Fired by stop(): ends every wait of this Upgrader. */
  private readonly stopping = new Deadline(Infinity, 'stop');
  private readonly completion: Promise<CompletionReason>;
  private complete!: (reason: CompletionReason) => void;
  private pidFile: PidFile | null;
  /** Newcomer: the handoff from the previous owner, until ready() or its failure. */
  private newcomer: NewcomerSession | null = null;
  private sessionError: TablerollError | null = null;
  private readyCalled = false;

  /**
   * Joins the coordination directory `dir` as `id` (unique per process; the pid is the usual
   * choice). Resolves once this process has inherited the owner's descriptors, or found no
   * owner. Either way it holds the coordination lock until `ready()`.
   */
  static async create(dir: string, id: string, options: UpgraderOptions = {}): Promise<Upgrader> {
    try {
      return await Upgrader.join(dir, id, options);
    } catch (err) {
      throw asTablerollError(
        err,
        ErrorCodes.DIRECTORY_FAILED,
        `cannot join the coordination directory ${String(dir)}`,
      );
    }
  }

  private static async join(dir: string, id: string, options: UpgraderOptions): Promise<Upgrader> {
    const opts = resolveOptions(options);
    const coordinator = new Coordinator(dir, id);
    throwIfAborted(opts.signal);
    coordinator.prepare();
    const log = resolveLogger(opts.logger, { component: 'tableroll', id });
    const socket = coordinator.bindOurSocket(log);
    growFdTableEarly(socket.fd);
    let pidFile: PidFile | null = null;
    try {
      pidFile = coordinator.openPidFile();
      if (!pidFile.tryLock()) {
        const wait = new Deadline(opts.lockTimeoutMs, 'waiting for the coordination lock', [
          opts.signal,
        ]);
        try {
          await pidFile.lock(wait, log);
        } finally {
          wait.dispose();
        }
      }
      log.debug({ step: 'locked' }, 'took the coordination lock');
      const handoffLimit = () => new Deadline(opts.upgradeTimeoutMs, 'the handoff', [opts.signal]);
      const { session, inherited } = await inheritFromOwner(
        coordinator,
        pidFile.read(),
        handoffLimit,
        log,
      );
      // Most processes are not socket-activated: checked here, they never run (nor compile)
      // the activation code.
      const activated =
        opts.socketActivation !== false && process.env.LISTEN_FDS !== undefined
          ? takeActivatedSockets(log)
          : [];
      const entries = activated.length > 0 ? mergeActivated(inherited, activated, log) : inherited;
      return new Upgrader({
        coordinator,
        options: opts,
        log,
        socket,
        pidFile,
        session,
        inherited: entries,
      });
    } catch (err) {
      pidFile?.close();
      native.close(socket.fd);
      unlinkUpgradeSocket(socket);
      throw err;
    }
  }

  private constructor(parts: Parts) {
    super();
    this.dir = parts.coordinator.dir;
    this.id = parts.coordinator.id;
    this.options = parts.options;
    this.log = parts.log;
    this.socket = parts.socket;
    this.pidFile = parts.pidFile;
    this.completion = new Promise((resolve) => (this.complete = resolve));
    this.machine = new StateMachine((to, from) => {
      this.log.debug({ from, to }, 'state change');
      this.owner.stateChanged(to);
      this.emit('state', to, from);
    });
    this.fds = new Fds(
      {
        assertMutable: () => this.assertMutable(),
        assertUsable: () => this.assertUsable(),
        changed: () => this.owner.storeChanged(),
      },
      parts.inherited,
      this.log,
    );
    this.owner = new OwnerSession(
      parts.coordinator,
      this.socket.fd,
      this.machine,
      this.stopping,
      this.options.upgradeTimeoutMs,
      {
        snapshot: () => this.fds.snapshot(),
        started: (peerPid) => this.emit('upgrade-started', { peerPid }),
        failed: (error) => this.emit('upgrade-failed', error),
        completed: () => {
          this.complete('upgraded');
          this.emit('upgrade-completed');
        },
      },
      this.log,
    );
    if (parts.session) {
      this.newcomer = new NewcomerSession(
        parts.session,
        { isStopped: () => this.isStopped(), failed: (error) => this.newcomerFailed(error) },
        this.log,
      );
    }
    const notifier = this.options.notify === false ? null : SystemdNotifier.fromEnv(this.log);
    if (notifier)
      reportToSystemd(
        this,
        notifier,
        () => `${this.fds.list().length} descriptor(s), id ${this.id}`,
      );
  }

  /** The current state. */
  get state(): UpgraderState {
    return this.machine.state;
  }

  /**
   * Call once the application serves on its descriptors. Completes the handoff with the old
   * owner (which then steps down) and makes this process the owner. A rejection is final:
   * the old owner still owns the sockets, and this process should exit.
   */
  async ready(): Promise<void> {
    if (this.readyCalled) {
      throw new TablerollError(ErrorCodes.ALREADY_READY, 'ready() was already called');
    }
    this.readyCalled = true;
    if (this.sessionError) throw this.sessionError;
    this.assertUsable();
    if (this.newcomer) await this.newcomer.confirm();
    if (this.isStopped()) throw stoppedError();
    this.pidFile!.write(this.id);
    this.log.debug({ step: 'pid-written' }, 'recorded this process as the owner');
    this.machine.transition('owner');
    this.fds.closeUnclaimedListeners(this.options.keepUnclaimedListeners === true);
    this.endSession();
    this.releaseLock();
    this.log.info('this process is now the owner');
    this.emit('owner');
    this.owner.becameOwner();
  }

  /**
   * Resolves when this process no longer owns its descriptors: 'upgraded' once a newcomer took
   * over (drain and exit), or 'stopped' after `stop()`.
   */
  upgradeComplete(): Promise<CompletionReason> {
    return this.completion;
  }

  /**
   * Releases everything the Upgrader holds: the lock, an unfinished handoff, its upgrade socket
   * (unlinked, only if it is still ours) and the store's own copies of the descriptors. The
   * duplicates handed to the application stay open. Idempotent.
   */
  stop(): void {
    this.shutDown('stopped');
  }

  private shutDown(reason: 'stopped' | 'failed'): void {
    if (this.state === 'stopped') return;
    this.machine.transition('stopped');
    this.stopping.fire(stoppedError());
    this.owner.close();
    native.close(this.socket.fd);
    unlinkUpgradeSocket(this.socket);
    this.endSession();
    this.releaseLock();
    this.fds.closeAll();
    this.complete(reason);
    this.emit('stopped');
  }

  /** The previous owner keeps its sockets: this process stops, and ready() rejects. */
  private newcomerFailed(error: TablerollError): void {
    this.newcomer = null;
    this.releaseLock();
    this.sessionError = error;
    this.emit('upgrade-failed', error);
    this.shutDown('failed');
  }

  private endSession(): void {
    this.newcomer?.end();
    this.newcomer = null;
  }

  private releaseLock(): void {
    this.pidFile?.close();
    this.pidFile = null;
  }

  private assertMutable(): void {
    switch (this.state) {
      case 'transferring':
        throw new TablerollError(
          ErrorCodes.STORE_LOCKED,
          'the descriptors are being handed to a newcomer; retry when the handoff has ended',
        );
      case 'draining':
      case 'stopped':
        throw new TablerollError(
          ErrorCodes.STORE_CLOSED,
          `the fd store no longer changes: the upgrader is ${this.state}`,
          { final: true },
        );
      default:
    }
  }

  // A method, not a comparison, so TypeScript does not narrow the state across awaits.
  private isStopped(): boolean {
    return this.machine.state === 'stopped';
  }

  private assertUsable(): void {
    if (this.isStopped()) throw stoppedError();
  }
}
