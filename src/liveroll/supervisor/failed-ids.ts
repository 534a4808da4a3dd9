/**
 * An id whose child failed its health check is not tried again on every interval tick: only once
 * its backoff delay (as for crash loops) has passed. SIGHUP retries it at once.
 */
import type { Logger } from 'pino';
import { RestartBackoff } from './backoff.js';

export class FailedIds {
  /** The last id whose update failed, and when it may be tried again on an interval tick. */
  private failed: { id: string; retryAt: number } | undefined;
  private readonly backoff: RestartBackoff;

  constructor(
    initialMs: number,
    maxMs: number,
    private readonly log: Logger,
  ) {
    this.backoff = new RestartBackoff({ initialMs, maxMs, resetMs: Infinity });
  }

  /** True (and logged) while `id` failed last and its delay has not passed. */
  isBackingOff(id: string): boolean {
    const failed = this.failed;
    if (failed === undefined || failed.id !== id) return false;
    const waitMs = failed.retryAt - Date.now();
    if (waitMs <= 0) return false;
    this.log.info({ id, retryInMs: waitMs }, 'update skipped: this id failed; retrying later');
    return true;
  }

  /** Records that `id` failed; the same id failing again waits longer. */
  remember(id: string): void {
    if (this.failed?.id !== id) this.backoff.reset();
    // The first failure waits the initial delay already: the backoff's first answer is 0.
    if (this.backoff.count === 0) this.backoff.next();
    this.failed = { id, retryAt: Date.now() + this.backoff.next() };
  }

  /** An update succeeded: nothing is held back any more. */
  clear(): void {
    this.failed = undefined;
    this.backoff.reset();
  }
}
