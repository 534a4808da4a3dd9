/**
 * Timeouts by sweep. A socket timeout is re-armed on every read and write, and each re-arm
 * hashes its duration into Node's timer lists; on a small request that costs more than looking
 * at a counter a few times a second. So the fast lane and each upstream pool keep one interval
 * timer, which runs only while they hold connections, and each connection keeps a QuietClock
 * that its reads move forward.
 */

/** The longest a sweep may come late. */
export const SWEEP_MAX_MS = 250;
/** The shortest interval between sweeps, however short a timeout. */
const SWEEP_MIN_MS = 10;

/** The interval for timeouts of `limits` ms (0 or less: none): a quarter of the shortest. */
export function sweepInterval(limits: readonly number[]): number {
  let shortest = Infinity;
  for (const ms of limits) if (ms > 0 && ms < shortest) shortest = ms;
  return Math.min(SWEEP_MAX_MS, Math.max(SWEEP_MIN_MS, shortest / 4));
}

/**
 * Calls `visit(now)` every `intervalMs` from start() until it returns false or stop() is called.
 * The timer is unref'd: a sweep never holds the process open.
 */
export class Sweeper {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly intervalMs: number,
    /** Looks at every member; returns whether any is left to look at next time. */
    private readonly visit: (now: number) => boolean,
  ) {}

  /** Starts sweeping, if not started already. */
  start(): void {
    this.timer ??= setInterval(() => {
      if (!this.visit(Date.now())) this.stop();
    }, this.intervalMs).unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  get running(): boolean {
    return this.timer !== undefined;
  }
}

/**
 * How long something has been silent, as sweeps see it: its owner calls touch() on each sign of
 * life (a field increment), and the sweep asks quietFor(now). The answer is 0 at the first sweep
 * after a touch, so a silence is measured from a sweep, at most one interval late.
 */
export class QuietClock {
  private count = 0;
  private seen = 0;
  private since: number;

  constructor(now: number = Date.now()) {
    this.since = now;
  }

  touch(): void {
    this.count++;
  }

  quietFor(now: number): number {
    if (this.count !== this.seen) {
      this.seen = this.count;
      this.since = now;
      return 0;
    }
    return now - this.since;
  }
}
