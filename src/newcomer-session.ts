/**
 * The newcomer's side of the Upgrader, from create() to ready(): it holds the connection to the
 * owner that handed us its descriptors, fails the handoff if the owner hangs up or the deadline
 * passes first, and in ready() confirms with the owner, which then steps down. The protocol
 * talk itself is in newcomer-handoff.ts.
 */
import { processExited } from './coordination/peers.js';
import { Deadline } from './deadline.js';
import { ErrorCodes, TablerollError } from './errors.js';
import { asHandoffFailure, handoffError, stoppedError } from './handoff-errors.js';
import type { Logger } from './logger.js';
import { confirmReady, type Session } from './newcomer-handoff.js';
import { protocolError } from './protocol.js';
import { closeAll, type UnixChannel } from './unix-channel.js';

/** What the newcomer side needs from the Upgrader, and what it tells it. */
export interface NewcomerEvents {
  isStopped(): boolean;
  /** The handoff failed for good: the previous owner keeps its sockets. */
  failed(error: TablerollError): void;
}

/**
 * Fires the watch when ready() takes the connection over or the session ends. Never thrown to
 * the application; made once, as ready() would otherwise build (and compile) an error on its way
 * to success.
 */
const WATCH_ENDED = new TablerollError(ErrorCodes.ABORTED, 'the watch on the owner ended');

export class NewcomerSession {
  private ended = false;
  /** The owner died after handing everything over; ready() takes over alone. */
  private ownerGone = false;

  constructor(
    private readonly session: Session,
    private readonly events: NewcomerEvents,
    private readonly log: Logger,
  ) {
    this.watch();
  }

  /**
   * ready()'s part: sends the ready message and checks the owner's reply. Resolves when we may
   * take over; rejects, after failing the session, when the owner keeps its sockets.
   */
  async confirm(): Promise<void> {
    if (this.ownerGone) return;
    const { session } = this;
    session.watch.fire(WATCH_ENDED);
    try {
      await confirmReady(session.channel, session.limit, this.log);
    } catch (err) {
      if (this.events.isStopped()) throw stoppedError();
      const failure = asHandoffFailure(err);
      // The owner died after giving us everything: nobody else can own these sockets now.
      if (failure.code !== ErrorCodes.PROTOCOL && (await processExited(session.ownerPid))) {
        this.log.warn(
          { ownerPid: session.ownerPid },
          'the owner died before replying; taking over',
        );
        return;
      }
      if (this.events.isStopped()) throw stoppedError();
      throw this.fail(failure);
    }
  }

  /** Closes the connection to the owner and disarms the watch. Idempotent. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.session.watch.fire(WATCH_ENDED);
    this.session.limit.dispose();
    this.session.channel.close();
  }

  /**
   * The previous owner keeps its sockets: this newcomer must not go on serving on its copies
   * unnoticed, alone and forever once a later process took over. Ends the session and tells the
   * Upgrader, which stops; returns the final error that ready() rejects with.
   */
  private fail(error: TablerollError): TablerollError {
    const final = new TablerollError(error.code, error.message, {
      cause: error.cause,
      final: true,
    });
    if (this.ended) return final;
    this.end();
    this.log.warn({ err: error }, 'the handoff from the previous owner failed');
    this.events.failed(final);
    return final;
  }

  /** Fails the handoff if the owner hangs up or the deadline passes before ready(). */
  private watch(): void {
    const { session } = this;
    const until = new Deadline(Infinity, 'the handoff', [session.limit, session.watch]);
    session.channel
      .untilPeerSpeaks(until)
      .then(
        () => this.onOwnerHungUp(),
        (err: unknown) => {
          if (!session.watch.reason) this.fail(asHandoffFailure(err));
        },
      )
      .finally(() => until.dispose());
  }

  private async onOwnerHungUp(): Promise<void> {
    const { session } = this;
    // Before our ready message the owner may only hang up: anything it sends (a descriptor
    // more than it announced, say) breaks the protocol, whether or not it dies afterwards.
    if (spokeOutOfTurn(session.channel)) {
      this.fail(protocolError('the owner sent data before ready() was called'));
      return;
    }
    // Dead, it owns nothing: we hold every descriptor and the lock, so we may take over.
    if (await processExited(session.ownerPid)) {
      if (this.ended) return;
      this.ownerGone = true;
      this.log.warn(
        { ownerPid: session.ownerPid },
        'the owner died after handing over; ready() takes over',
      );
      return;
    }
    this.fail(handoffError('the owner hung up before ready() was called'));
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
