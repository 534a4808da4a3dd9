/**
 * Deadlines as AbortSignals whose `reason` is always a TablerollError, so any wait can throw
 * `signal.reason` as is: ERR_TABLEROLL_TIMEOUT when the time ran out, ERR_TABLEROLL_ABORTED when
 * the caller's signal fired, or whatever error the owner of the deadline aborted it with.
 */
import { ErrorCodes, TablerollError } from './errors.js';

/** A signal that fires at a deadline, when a parent signal fires, or on `abort(reason)`. */
export interface Deadline {
  readonly signal: AbortSignal;
  /** Fires the signal now with this reason (no-op once fired). */
  abort(reason: TablerollError): void;
  /** Clears the timer and detaches from the parents. Call it when the wait is over. */
  dispose(): void;
}

/**
 * A deadline `ms` from now (Infinity for none), also fired by any of `parents`. `what` names the
 * wait in the timeout message. The timer does not keep the process alive.
 */
export function deadline(
  ms: number,
  what: string,
  ...parents: (AbortSignal | undefined)[]
): Deadline {
  const controller = new AbortController();
  const abort = (reason: TablerollError): void => {
    if (!controller.signal.aborted) controller.abort(reason);
  };
  const detach: (() => void)[] = [];
  for (const parent of parents) {
    if (!parent) continue;
    const onAbort = (): void => abort(abortedBy(parent));
    if (parent.aborted) onAbort();
    parent.addEventListener('abort', onAbort, { once: true });
    detach.push(() => parent.removeEventListener('abort', onAbort));
  }
  let timer: NodeJS.Timeout | undefined;
  if (Number.isFinite(ms)) {
    timer = setTimeout(
      () => abort(new TablerollError(ErrorCodes.TIMEOUT, `${what} timed out after ${ms} ms`)),
      ms,
    );
    timer.unref();
  }
  return {
    signal: controller.signal,
    abort,
    dispose: () => {
      clearTimeout(timer);
      for (const undo of detach) undo();
    },
  };
}

/** The TablerollError a fired signal stands for. */
export function abortedBy(signal: AbortSignal): TablerollError {
  const reason: unknown = signal.reason;
  if (reason instanceof TablerollError) return reason;
  return new TablerollError(ErrorCodes.ABORTED, 'the operation was aborted', { cause: reason });
}

/** Throws the signal's reason as a TablerollError when it has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortedBy(signal);
}

/** Resolves after `ms`, or rejects when the signal fires (for retry pacing, not for waiting). */
export function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(abortedBy(signal));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortedBy(signal));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
