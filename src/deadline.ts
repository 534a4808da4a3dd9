/**
 * Deadlines: a wait gives up when time runs out, when a parent (the caller's AbortSignal, the
 * Upgrader being stopped, an enclosing deadline) fires, or when it is fired by hand. The reason
 * is always a TablerollError, so a wait can throw it as is: ERR_TABLEROLL_TIMEOUT,
 * ERR_TABLEROLL_ABORTED for the caller's signal, or whatever error the owner fired it with.
 *
 * Internally a plain callback list rather than AbortController, and a timerfd watched on Node's
 * loop rather than setTimeout: cold path (see native.ts); EventTarget dispatch, DOMException
 * creation and the first setTimeout's internals cost a handoff about a millisecond.
 */
import { ErrorCodes, TablerollError } from './errors.js';
import { READABLE, native, type Poller } from './native.js';

/** A one-shot timer that does not keep the process alive. */
class Timer {
  private readonly fd: number;
  private readonly poller: Poller;
  private closed = false;

  constructor(ms: number, onExpiry: () => void) {
    // The timerfd takes up to 1e12 ms (31 years): longer is the same as never, in practice.
    this.fd = native.timerFd(Math.min(ms, 1e12));
    try {
      this.poller = new native.Poller(this.fd, () => {
        this.close();
        onExpiry();
      });
      this.poller.unref();
      this.poller.start(READABLE);
    } catch (err) {
      native.close(this.fd);
      throw err;
    }
  }

  /** Idempotent: the fd number may belong to someone else once closed. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller.close();
    native.close(this.fd);
  }
}

/** Something a Deadline can follow. */
export type DeadlineParent = Deadline | AbortSignal | undefined;

/** A wait's limit: a time, parents, and a manual trigger. Dispose of it when the wait is over. */
export class Deadline {
  private firedWith: TablerollError | undefined;
  private readonly callbacks = new Set<(reason: TablerollError) => void>();
  private readonly detach: (() => void)[] = [];
  private timer: Timer | undefined;

  /** `ms` from now (Infinity for none); `what` names the wait in the timeout message. */
  constructor(ms: number, what: string, parents: readonly DeadlineParent[] = []) {
    for (const parent of parents) this.follow(parent);
    if (Number.isFinite(ms) && !this.firedWith) {
      // A deadline alone does not keep the process alive.
      this.timer = new Timer(ms, () => {
        this.timer = undefined;
        this.fire(new TablerollError(ErrorCodes.TIMEOUT, `${what} timed out after ${ms} ms`));
      });
    }
  }

  /** Why it fired, or undefined while it has not. */
  get reason(): TablerollError | undefined {
    return this.firedWith;
  }

  /** Throws the reason once fired. */
  throwIfFired(): void {
    if (this.firedWith) throw this.firedWith;
  }

  /** Calls `fn` when it fires (not if it already has); returns the unsubscription. */
  onFire(fn: (reason: TablerollError) => void): () => void {
    this.callbacks.add(fn);
    return () => this.callbacks.delete(fn);
  }

  /** Fires now with `reason`; later calls do nothing. */
  fire(reason: TablerollError): void {
    if (this.firedWith) return;
    this.firedWith = reason;
    this.clearTimer();
    const callbacks = [...this.callbacks];
    this.callbacks.clear();
    for (const fn of callbacks) fn(reason);
  }

  /** Clears the timer and lets go of the parents. */
  dispose(): void {
    this.clearTimer();
    for (const undo of this.detach.splice(0)) undo();
  }

  private clearTimer(): void {
    this.timer?.close();
    this.timer = undefined;
  }

  private follow(parent: DeadlineParent): void {
    if (parent === undefined) return;
    if (parent instanceof Deadline) {
      if (parent.reason) this.fire(parent.reason);
      else this.detach.push(parent.onFire((reason) => this.fire(reason)));
      return;
    }
    const onAbort = (): void => this.fire(abortedBy(parent));
    if (parent.aborted) return onAbort();
    parent.addEventListener('abort', onAbort, { once: true });
    this.detach.push(() => parent.removeEventListener('abort', onAbort));
  }
}

/** The TablerollError a fired AbortSignal stands for. */
export function abortedBy(signal: AbortSignal): TablerollError {
  const reason: unknown = signal.reason;
  if (reason instanceof TablerollError) return reason;
  return new TablerollError(ErrorCodes.ABORTED, 'the operation was aborted', { cause: reason });
}

/** Throws ERR_TABLEROLL_ABORTED when the caller's signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortedBy(signal);
}

/**
 * Calls `fn` on a later turn of the event loop, without keeping the process alive; returns the
 * cancellation, which closes the timer's fd at once. A Timer, which a handoff has compiled
 * already, rather than setImmediate, whose first call costs about 0.15 ms of Node's own code
 * compiling.
 */
export function soon(fn: () => void): () => void {
  const timer = new Timer(0, fn);
  return () => timer.close();
}

/** Resolves after `ms`, or rejects when `limit` fires (for retry pacing, not for waiting). */
export function delay(ms: number, limit: Deadline): Promise<void> {
  return new Promise((resolve, reject) => {
    if (limit.reason) return reject(limit.reason);
    const unsubscribe = limit.onFire((reason) => {
      clearTimeout(timer);
      reject(reason);
    });
    const timer = setTimeout(() => {
      unsubscribe();
      resolve();
    }, ms);
  });
}
