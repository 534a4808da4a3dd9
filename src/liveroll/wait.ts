/**
 * Bounded waits. Every long wait in liveroll has a deadline or an AbortSignal; these helpers
 * clear their timers when the wait ends early, so a finished wait never holds the process open.
 */

/** Resolves with the promise's value, or with `undefined` once `ms` have passed. */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const expiry = new Promise<undefined>((resolve) => {
    timer = setTimeout(resolve, ms, undefined);
  });
  return Promise.race([promise, expiry]).finally(() => clearTimeout(timer));
}

/** Resolves after `ms`, or as soon as `signal` aborts (without rejecting). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
