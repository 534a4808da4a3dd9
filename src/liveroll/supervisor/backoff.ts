/**
 * Crash-loop backoff: how long to wait before replacing a child that crashed. The first crash
 * of a child that ran a while is replaced at once; each further crash (or failed replacement)
 * without a long enough run in between doubles the delay, up to a maximum.
 */

/** Backoff settings, in milliseconds. */
export interface BackoffSettings {
  /** Delay after the second failure in a row (the first is replaced at once). */
  initialMs: number;
  maxMs: number;
  /** A child that ran this long before crashing starts a new count. */
  resetMs: number;
}

/** Counts consecutive failures and turns them into delays. */
export class RestartBackoff {
  private failures = 0;

  constructor(private readonly settings: BackoffSettings) {}

  /** Consecutive failures so far. */
  get count(): number {
    return this.failures;
  }

  /** Forgets the failures so far. */
  reset(): void {
    this.failures = 0;
  }

  /**
   * Records a failure and returns the delay before the next attempt. `uptimeMs` is how long the
   * crashed child served (undefined when a replacement never became healthy).
   */
  next(uptimeMs?: number): number {
    if (uptimeMs !== undefined && uptimeMs >= this.settings.resetMs) this.failures = 0;
    const { initialMs, maxMs } = this.settings;
    const delay = this.failures === 0 ? 0 : Math.min(initialMs * 2 ** (this.failures - 1), maxMs);
    this.failures++;
    return delay;
  }
}
