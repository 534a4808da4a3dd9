/**
 * The Upgrader: one per process. It inherits the listening sockets of the current owner of a
 * coordination directory (or finds none), becomes the owner in `ready()`, and later hands its
 * sockets to the next process that starts on the same directory.
 */
import { EventEmitter } from 'eventemitter3';
import {
  PidFile,
  bindUpgradeSocket,
  isProcessDying,
  processExited,
  readPidFile,
  isTrustedUid,
  lockIsFree,
  prepareDirectory,
  sweepStaleSockets,
  unlinkUpgradeSocket,
  validateId,
  type UpgradeSocket,
} from './coordination.js';
import { Deadline, soon, throwIfAborted } from './deadline.js';
import { ErrorCodes, TablerollError, asTablerollError } from './errors.js';
import { Fds, type StoredFd } from './fd-store.js';
import { resolveLogger, type Logger } from './logger.js';
import { READABLE, native, type Poller } from './native.js';
import {
  confirmReady,
  growFdTableEarly,
  inheritFromOwner,
  type Session,
} from './newcomer-handoff.js';
import {
  awaitReady,
  encodeOffer,
  newcomerTookOver,
  replySteppingDown,
  sendDescriptors,
  type Offer,
  type OwnerRecord,
} from './owner-handoff.js';
import { StateMachine, type UpgraderState } from './upgrader-state.js';
import { SystemdNotifier, reportToSystemd } from './sd-notify.js';
import { mergeActivated, takeActivatedSockets } from './socket-activation.js';
import { resolveOptions, type ResolvedOptions, type UpgraderOptions } from './upgrader-options.js';
import { UnixChannel, closeAll } from './unix-channel.js';
import { protocolError } from './protocol.js';

/**
 * Why `upgradeComplete()` resolved: 'upgraded' (a newcomer took over), 'stopped' (`stop()` ran),
 * or 'failed' (this process was a newcomer and its handoff from the previous owner failed or
 * ran out of time before `ready()` confirmed it: the previous owner kept the sockets, so this
 * process must stop serving and exit).
 */
export type CompletionReason = 'upgraded' | 'stopped' | 'failed';

/** Events of an Upgrader, for tests and supervisors that await real happenings. */
export interface UpgraderEvents {
  /** Every state change. */
  state: (to: UpgraderState, from: UpgraderState) => void;
  /** Owner: a newcomer connected and the transfer began. */
  'upgrade-started': (info: { peerPid: number }) => void;
  /** Owner: the transfer failed and we are the owner again. Newcomer: the handoff failed. */
  'upgrade-failed': (error: TablerollError) => void;
  /** Owner: the newcomer took over; drain and exit. */
  'upgrade-completed': () => void;
  /** This process became the owner. */
  owner: () => void;
  /** `stop()` ran. */
  stopped: () => void;
}

interface Parts {
  dir: string;
  id: string;
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
  private readonly acceptPoller: Poller;
  /** Fired by stop(): ends every wait of this Upgrader. */
  private readonly stopping = new Deadline(Infinity, 'stop');
  private readonly completion: Promise<CompletionReason>;
  private complete!: (reason: CompletionReason) => void;
  private pidFile: PidFile | null;
  private session: Session | null;
  private sessionError: TablerollError | null = null;
  private transfer: UnixChannel | null = null;
  /** Newcomer: the owner died after handing everything over; ready() takes over alone. */
  private ownerGone = false;
  private readyCalled = false;
  /** Accepting waits a moment after running out of descriptors. */
  private acceptPaused = false;
  /** Owner: the store encoded for the next handoff; dropped whenever the store changes. */
  private offer: Offer | null = null;
  /** Cancels the preparation of the offer scheduled for the next turn of the loop. */
  private cancelOffer: (() => void) | null = null;
  /** Cancels the sweep of stale sockets scheduled after ready(). */
  private cancelSweep: (() => void) | null = null;

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
    validateId(dir, id);
    throwIfAborted(opts.signal);
    prepareDirectory(dir);
    const log = resolveLogger(opts.logger, { component: 'tableroll', id });
    const socket = bindUpgradeSocket(dir, id, log);
    growFdTableEarly(socket.fd);
    let pidFile: PidFile | null = null;
    try {
      pidFile = PidFile.open(dir);
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
      const { session, inherited } = await inheritFromOwner(dir, id, pidFile.read(), opts, log);
      // Most processes are not socket-activated: checked here, they never run (nor compile)
      // the activation code.
      const activated =
        opts.socketActivation !== false && process.env.LISTEN_FDS !== undefined
          ? takeActivatedSockets(log)
          : [];
      const entries = activated.length > 0 ? mergeActivated(inherited, activated, log) : inherited;
      return new Upgrader({
        dir,
        id,
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
    this.dir = parts.dir;
    this.id = parts.id;
    this.options = parts.options;
    this.log = parts.log;
    this.socket = parts.socket;
    this.pidFile = parts.pidFile;
    this.session = parts.session;
    this.completion = new Promise((resolve) => (this.complete = resolve));
    this.machine = new StateMachine((to, from) => {
      this.log.debug({ from, to }, 'state change');
      // The owner keeps its process alive: it holds sockets it must hand over. A newcomer
      // before ready() and an owner that handed over do not.
      if (to === 'owner') this.acceptPoller.ref();
      if (to === 'draining') this.acceptPoller.unref();
      this.emit('state', to, from);
    });
    this.fds = new Fds(
      {
        assertMutable: () => this.assertMutable(),
        assertUsable: () => this.assertUsable(),
        changed: () => this.storeChanged(),
      },
      parts.inherited,
      this.log,
    );
    this.acceptPoller = new native.Poller(this.socket.fd, () => this.acceptAll());
    this.acceptPoller.unref();
    this.acceptPoller.start(READABLE);
    if (this.session) this.watchSession(this.session);
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
    const session = this.session;
    if (session && !this.ownerGone) await this.confirmWithOwner(session);
    if (this.isStopped()) throw stoppedError();
    this.pidFile!.write(this.id);
    this.log.debug({ step: 'pid-written' }, 'recorded this process as the owner');
    this.machine.transition('owner');
    this.fds.closeUnclaimedListeners(this.options.keepUnclaimedListeners === true);
    this.endSession();
    this.releaseLock();
    this.log.info('this process is now the owner');
    this.emit('owner');
    this.prepareOffer();
    this.sweepSoon();
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
    this.acceptPoller.close();
    native.close(this.socket.fd);
    unlinkUpgradeSocket(this.socket);
    this.transfer?.close();
    this.endSession();
    this.releaseLock();
    this.fds.closeAll();
    this.cancelOffer?.();
    this.cancelOffer = null;
    this.cancelSweep?.();
    this.cancelSweep = null;
    this.offer = null;
    this.complete(reason);
    this.emit('stopped');
  }

  private async confirmWithOwner(session: Session): Promise<void> {
    session.watch.fire(WATCH_ENDED);
    try {
      await confirmReady(session.channel, session.limit, this.log);
    } catch (err) {
      if (this.isStopped()) throw stoppedError();
      const failure = asHandoffFailure(err);
      // The owner died after giving us everything: nobody else can own these sockets now.
      if (failure.code !== ErrorCodes.PROTOCOL && (await processExited(session.ownerPid))) {
        this.log.warn(
          { ownerPid: session.ownerPid },
          'the owner died before replying; taking over',
        );
        return;
      }
      if (this.isStopped()) throw stoppedError();
      this.failSession(failure);
      throw this.sessionError!;
    }
  }

  /** Newcomer: fail the handoff if the owner hangs up or the deadline passes before ready(). */
  private watchSession(session: Session): void {
    const until = new Deadline(Infinity, 'the handoff', [session.limit, session.watch]);
    session.channel
      .untilPeerSpeaks(until)
      .then(
        () => this.onOwnerHungUp(session),
        (err: unknown) => {
          if (!session.watch.reason) this.failSession(asHandoffFailure(err));
        },
      )
      .finally(() => until.dispose());
  }

  private async onOwnerHungUp(session: Session): Promise<void> {
    // Before our ready message the owner may only hang up: anything it sends (a descriptor
    // more than it announced, say) breaks the protocol, whether or not it dies afterwards.
    if (spokeOutOfTurn(session.channel)) {
      this.failSession(protocolError('the owner sent data before ready() was called'));
      return;
    }
    // Dead, it owns nothing: we hold every descriptor and the lock, so we may take over.
    if (await processExited(session.ownerPid)) {
      if (this.session !== session) return;
      this.ownerGone = true;
      this.log.warn(
        { ownerPid: session.ownerPid },
        'the owner died after handing over; ready() takes over',
      );
      return;
    }
    this.failSession(handoffError('the owner hung up before ready() was called'));
  }

  /**
   * The previous owner keeps its sockets: this newcomer must not go on serving on its copies
   * unnoticed, alone and forever once a later process took over. It stops (its own copies and
   * upgrade socket are closed) and `upgradeComplete()` resolves 'failed'; `ready()` rejects.
   */
  private failSession(error: TablerollError): void {
    if (!this.session) return;
    this.endSession();
    this.releaseLock();
    this.sessionError = new TablerollError(error.code, error.message, {
      cause: error.cause,
      final: true,
    });
    this.log.warn({ err: error }, 'the handoff from the previous owner failed');
    this.emit('upgrade-failed', this.sessionError);
    this.shutDown('failed');
  }

  private endSession(): void {
    const session = this.session;
    if (!session) return;
    this.session = null;
    session.watch.fire(WATCH_ENDED);
    session.limit.dispose();
    session.channel.close();
  }

  private releaseLock(): void {
    this.pidFile?.close();
    this.pidFile = null;
  }

  private acceptAll(): void {
    for (;;) {
      let fd: number;
      try {
        fd = native.accept(this.socket.fd);
      } catch (err) {
        // Out of descriptors: the request stays queued. Accepting again at once would spin
        // (the socket stays readable), so wait a little; the newcomer waits meanwhile.
        this.pauseAccepting(err);
        return;
      }
      if (fd < 0) return;
      try {
        this.onUpgradeRequest(fd);
      } catch (err) {
        this.log.error({ err }, 'could not take an upgrade request');
      }
    }
  }

  private pauseAccepting(err: unknown): void {
    if (this.acceptPaused) return;
    this.acceptPaused = true;
    this.log.warn(
      { err },
      `accepting an upgrade request failed; trying again in ${ACCEPT_PAUSE_MS} ms`,
    );
    this.acceptPoller.stop();
    // A plain timer: a timerfd would need the descriptor we lack.
    setTimeout(() => {
      this.acceptPaused = false;
      if (!this.isStopped()) this.acceptPoller.start(READABLE);
    }, ACCEPT_PAUSE_MS);
  }

  private onUpgradeRequest(fd: number): void {
    if (this.state !== 'owner') {
      // The protocol's refusal: close without a word.
      this.log.info({ state: this.state }, 'refused an upgrade request: not the owner now');
      native.close(fd);
      return;
    }
    let peer: { pid: number; uid: number };
    let limit: Deadline | undefined;
    let channel: UnixChannel;
    try {
      peer = native.peerCredentials(fd);
      if (!isTrustedUid(peer.uid)) {
        this.log.warn(
          { peerPid: peer.pid, peerUid: peer.uid },
          'refused an upgrade request from another user',
        );
        native.close(fd);
        return;
      }
      // Made before anything changes: at the descriptor limit the timer's own fd may fail,
      // and then the request is refused (the newcomer retries) instead of crashing us.
      limit = new Deadline(this.options.upgradeTimeoutMs, 'the handoff', [this.stopping]);
      channel = new UnixChannel(fd);
    } catch (err) {
      limit?.dispose();
      native.close(fd);
      this.log.warn({ err }, 'refused an upgrade request: could not set up the handoff');
      return;
    }
    this.transfer = channel;
    this.machine.transition('transferring');
    // Started first: it sends everything the socket takes before its first await, so the
    // newcomer does not wait for our log line and the application's listeners.
    void this.runTransfer(channel, peer.pid, limit);
    this.log.info({ peerPid: peer.pid }, 'handing our descriptors to a newcomer');
    this.emit('upgrade-started', { peerPid: peer.pid });
  }

  private storeChanged(): void {
    this.offer = null;
    this.prepareOffer();
  }

  /**
   * Encodes the store for the next handoff soon, once the current work is done: a newcomer then
   * waits for the sends alone, not for the owner to compile and run the encoders.
   */
  private prepareOffer(): void {
    // Only an owner hands over; an 'owner' listener may also have stopped us already.
    if (this.cancelOffer || this.state !== 'owner') return;
    this.cancelOffer = soon(() => {
      this.cancelOffer = null;
      if (this.state !== 'owner') return;
      try {
        this.currentOffer();
      } catch (err) {
        // The next handoff tries again, and fails on its own if it must.
        this.log.warn({ err }, 'could not encode the descriptors ahead of the next handoff');
      }
    });
  }

  /** The offer for the store as it is now: the prepared one, unless the store changed since. */
  private currentOffer(): Offer {
    this.offer ??= encodeOffer(this.fds.snapshot());
    return this.offer;
  }

  private async runTransfer(channel: UnixChannel, peerPid: number, limit: Deadline): Promise<void> {
    try {
      await sendDescriptors(channel, this.currentOffer(), limit, this.log);
      const version = await awaitReady(channel, limit);
      this.log.debug({ step: 'ready-received', version }, 'the newcomer is ready');
      if (this.state !== 'transferring') return;
      const replied = await replySteppingDown(channel, limit, this.log);
      const tookOver = await newcomerTookOver(channel, limit, this.ownerRecord(peerPid), this.log);
      if (this.state !== 'transferring') return;
      if (!tookOver) {
        await this.reclaimPidFile();
        const when = replied ? 'after our reply' : 'before our reply';
        throw handoffError(`the newcomer went away ${when}, before it took over`);
      }
      this.machine.transition('draining');
      this.log.info('the newcomer took over; draining');
      this.complete('upgraded');
      this.emit('upgrade-completed');
    } catch (err) {
      if (this.state !== 'transferring') return;
      const failure = asHandoffFailure(err);
      this.machine.transition('owner');
      this.log.warn({ err: failure }, 'the handoff failed; still the owner');
      this.emit('upgrade-failed', failure);
    } finally {
      limit.dispose();
      channel.close();
      if (this.transfer === channel) this.transfer = null;
    }
  }

  /**
   * After a newcomer died having written its id to `pid`: records us again, so the next
   * newcomer dials us rather than a socket nobody answers. Only if the lock is free now; a
   * newcomer holding it reads `pid` after us anyway.
   */
  private async reclaimPidFile(): Promise<void> {
    let file: PidFile | null = null;
    // The dead newcomer's lock goes with its last descriptors, a moment after its connection.
    const wait = new Deadline(RECLAIM_LOCK_WAIT_MS, "waiting for a dead newcomer's lock", [
      this.stopping,
    ]);
    try {
      file = PidFile.open(this.dir);
      await file.lock(wait, this.log);
      if (this.state !== 'transferring') return;
      if (!file.read().equals(Buffer.from(this.id, 'utf8'))) {
        file.write(this.id);
        this.log.warn('the newcomer died after recording itself; recorded this process again');
      }
    } catch (err) {
      // A live newcomer holding the lock reads pid after us; the next one finds us regardless.
      this.log.warn({ err }, 'could not record this process as the owner again');
    } finally {
      wait.dispose();
      file?.close();
    }
  }

  /**
   * Once the handoff is over, removes the upgrade sockets that crashed processes left behind:
   * each is a name a later instance could collide with, kept until reboot under /run.
   */
  private sweepSoon(): void {
    // An 'owner' listener may have stopped us already.
    if (this.state !== 'owner') return;
    this.cancelSweep = soon(() => {
      this.cancelSweep = null;
      if (this.state !== 'owner') return;
      try {
        const removed = sweepStaleSockets(this.dir, this.id);
        if (removed.length > 0) {
          this.log.info({ removed }, 'removed the upgrade sockets of processes that are gone');
        }
      } catch (err) {
        this.log.warn({ err }, 'could not sweep stale upgrade sockets');
      }
    });
  }

  /** Reads of `<dir>/pid` and probes of its lock, without holding it: for checks only. */
  private ownerRecord(peerPid: number): OwnerRecord {
    let warned = false;
    return {
      newcomerDying: () => isProcessDying(peerPid),
      namesUs: () => readPidFile(this.dir).equals(Buffer.from(this.id, 'utf8')),
      lockIsFree: () => {
        try {
          return lockIsFree(this.dir);
        } catch (err) {
          // Cannot tell: keep waiting, and step down at the deadline.
          if (!warned) this.log.warn({ err }, 'could not probe the coordination lock');
          warned = true;
          return false;
        }
      },
    };
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

/** True when the peer sent something (its descriptors are closed at once), not a hang-up. */
function spokeOutOfTurn(channel: UnixChannel): boolean {
  let got;
  try {
    got = channel.readNow(1);
  } catch {
    return false; // A reset: the peer went away.
  }
  if (!got) return false;
  closeAll(got.fds);
  return got.data.length > 0 || got.fds.length > 0;
}

/**
 * Fires a session's watch when ready() takes the connection over or the session ends. Never
 * thrown to the application; made once, as ready() would otherwise build (and compile) an error
 * on its way to success.
 */
/** How long an owner waits for a dead newcomer's lock before recording itself again. */
const RECLAIM_LOCK_WAIT_MS = 2_000;

/** How long accepting waits after a failure such as EMFILE. */
const ACCEPT_PAUSE_MS = 100;

const WATCH_ENDED = new TablerollError(ErrorCodes.ABORTED, 'the watch on the owner ended');

function stoppedError(): TablerollError {
  return new TablerollError(ErrorCodes.STOPPED, 'the upgrader was stopped', { final: true });
}

function handoffError(message: string): TablerollError {
  return new TablerollError(ErrorCodes.HANDOFF_FAILED, message, { final: true });
}

function asHandoffFailure(err: unknown): TablerollError {
  if (err instanceof TablerollError) return err;
  return new TablerollError(ErrorCodes.HANDOFF_FAILED, 'the handoff failed', { cause: err });
}
