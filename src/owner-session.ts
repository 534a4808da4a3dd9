/**
 * The owner's side of the Upgrader: it takes upgrade requests on our upgrade socket, hands the
 * store to one newcomer at a time, and learns whether the newcomer took over. It keeps the
 * store's offer encoded ahead of time and sweeps stale sockets once it is the owner. The
 * protocol talk itself is in owner-handoff.ts; the Upgrader hears of the outcome through
 * `OwnerEvents`.
 */
import type { Coordinator } from './coordination/coordinator.js';
import { isProcessDying } from './coordination/peers.js';
import { isTrustedUid } from './coordination/directory.js';
import { Deadline, soon } from './deadline.js';
import type { TablerollError } from './errors.js';
import type { StoredFd } from './fd-types.js';
import type { Logger } from './logger.js';
import { READABLE, native, type Poller } from './native.js';
import {
  awaitReady,
  encodeOffer,
  newcomerTookOver,
  replySteppingDown,
  sendDescriptors,
  type Offer,
  type OwnerRecord,
} from './owner-handoff.js';
import { asHandoffFailure, handoffError } from './handoff-errors.js';
import type { StateMachine, UpgraderState } from './upgrader-state.js';
import { UnixChannel } from './unix-channel.js';

/** What the owner side needs from the Upgrader, and what it tells it. */
export interface OwnerEvents {
  /** The descriptors to hand over, as the store holds them now. */
  snapshot(): readonly StoredFd[];
  /** A newcomer connected and the transfer began. */
  started(peerPid: number): void;
  /** The transfer failed; we are the owner again. */
  failed(error: TablerollError): void;
  /** The newcomer took over: the state is 'draining'. */
  completed(): void;
}

/** How long an owner waits for a dead newcomer's lock before recording itself again. */
const RECLAIM_LOCK_WAIT_MS = 2_000;

/** How long accepting waits after a failure such as EMFILE. */
const ACCEPT_PAUSE_MS = 100;

export class OwnerSession {
  private readonly poller: Poller;
  private transfer: UnixChannel | null = null;
  /** Accepting waits a moment after running out of descriptors. */
  private acceptPaused = false;
  /** The store encoded for the next handoff; dropped whenever the store changes. */
  private offer: Offer | null = null;
  /** Cancels the preparation of the offer scheduled for the next turn of the loop. */
  private cancelOffer: (() => void) | null = null;
  /** Cancels the sweep of stale sockets scheduled after ready(). */
  private cancelSweep: (() => void) | null = null;

  constructor(
    private readonly coordinator: Coordinator,
    private readonly socketFd: number,
    private readonly machine: StateMachine,
    /** Fired by stop(): ends every wait. */
    private readonly stopping: Deadline,
    private readonly upgradeTimeoutMs: number,
    private readonly events: OwnerEvents,
    private readonly log: Logger,
  ) {
    this.poller = new native.Poller(socketFd, () => this.acceptAll());
    this.poller.unref();
    this.poller.start(READABLE);
  }

  /**
   * Follows the Upgrader's state. The owner keeps its process alive: it holds sockets it must
   * hand over. A newcomer before ready() and an owner that handed over do not.
   */
  stateChanged(to: UpgraderState): void {
    if (to === 'owner') this.poller.ref();
    if (to === 'draining') this.poller.unref();
  }

  /** This process became the owner: encode the offer and sweep, both soon. */
  becameOwner(): void {
    this.prepareOffer();
    this.sweepSoon();
  }

  /** The store changed: the offer is encoded again. */
  storeChanged(): void {
    this.offer = null;
    this.prepareOffer();
  }

  /** Stops taking requests and ends a transfer under way. */
  close(): void {
    this.poller.close();
    this.transfer?.close();
    this.cancelOffer?.();
    this.cancelOffer = null;
    this.cancelSweep?.();
    this.cancelSweep = null;
    this.offer = null;
  }

  private get state(): UpgraderState {
    return this.machine.state;
  }

  private acceptAll(): void {
    for (;;) {
      let fd: number;
      try {
        fd = native.accept(this.socketFd);
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
    this.poller.stop();
    // A plain timer: a timerfd would need the descriptor we lack.
    setTimeout(() => {
      this.acceptPaused = false;
      if (this.state !== 'stopped') this.poller.start(READABLE);
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
      limit = new Deadline(this.upgradeTimeoutMs, 'the handoff', [this.stopping]);
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
    this.events.started(peer.pid);
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
    this.offer ??= encodeOffer(this.events.snapshot());
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
      this.events.completed();
    } catch (err) {
      if (this.state !== 'transferring') return;
      const failure = asHandoffFailure(err);
      this.machine.transition('owner');
      this.log.warn({ err: failure }, 'the handoff failed; still the owner');
      this.events.failed(failure);
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
    // The dead newcomer's lock goes with its last descriptors, a moment after its connection.
    const wait = new Deadline(RECLAIM_LOCK_WAIT_MS, "waiting for a dead newcomer's lock", [
      this.stopping,
    ]);
    let file = null;
    try {
      file = this.coordinator.openPidFile();
      await file.lock(wait, this.log);
      if (this.state !== 'transferring') return;
      if (!this.coordinator.isOurs(file.read())) {
        file.write(this.coordinator.id);
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
        const removed = this.coordinator.sweep();
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
      namesUs: () => this.coordinator.recordsUs(),
      lockIsFree: () => {
        try {
          return this.coordinator.lockIsFree();
        } catch (err) {
          // Cannot tell: keep waiting, and step down at the deadline.
          if (!warned) this.log.warn({ err }, 'could not probe the coordination lock');
          warned = true;
          return false;
        }
      },
    };
  }
}
