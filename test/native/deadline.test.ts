/**
 * The native addon against the real kernel, with real sockets, descriptors and processes:
 * Deadline over timerFd and Poller: timeouts, parents, firing by hand.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';

import { Deadline } from '../../src/deadline.js';
import { ErrorCodes, TablerollError } from '../../src/errors.js';
import { TIMEOUT, openFdCount } from '../support/native-kit.js';

function keepAlive(t: TestContext): void {
  const interval = setInterval(() => {}, 1_000);
  t.after(() => clearInterval(interval));
}

/** The reason `deadline` fires with. */
function firing(deadline: Deadline): Promise<TablerollError> {
  return new Promise((resolve) => {
    deadline.onFire(resolve);
  });
}

/**
 * Resolves when a 60 ms deadline made now fires: later than a 30 ms one made before, on the same
 * clock, so a 30 ms deadline that was going to fire has fired by then.
 */
async function pastItsTime(): Promise<void> {
  const keepAlive = setInterval(() => {}, 1_000);
  const control = new Deadline(60, 'control');
  try {
    await firing(control);
  } finally {
    clearInterval(keepAlive);
    control.dispose();
  }
}

describe('Deadline', () => {
  test('times out with ERR_TABLEROLL_TIMEOUT and closes its timer fd', TIMEOUT, async (t) => {
    keepAlive(t);
    const before = openFdCount();
    const start = performance.now();
    const deadline = new Deadline(30, 'x');
    t.after(() => deadline.dispose());
    assert.equal(openFdCount(), before + 1, 'one timerfd');
    assert.equal(deadline.reason, undefined);
    deadline.throwIfFired();

    const reason = await firing(deadline);
    const elapsed = performance.now() - start;
    assert.ok(elapsed >= 25, `a 30 ms deadline fired after ${elapsed.toFixed(1)} ms`);
    assert.ok(reason instanceof TablerollError);
    assert.equal(reason.code, 'ERR_TABLEROLL_TIMEOUT');
    assert.equal(reason.message, 'x timed out after 30 ms');
    assert.equal(deadline.reason, reason);
    assert.throws(
      () => deadline.throwIfFired(),
      (err) => err === reason,
    );
    assert.equal(openFdCount(), before);
  });

  test('dispose before expiry closes the timer fd, and it never fires', TIMEOUT, async () => {
    const before = openFdCount();
    const deadline = new Deadline(30, 'x');
    let fired = 0;
    deadline.onFire(() => fired++);
    assert.equal(openFdCount(), before + 1);
    deadline.dispose();
    assert.equal(openFdCount(), before);
    deadline.dispose();
    await pastItsTime();
    assert.equal(fired, 0);
    assert.equal(deadline.reason, undefined);
    assert.equal(openFdCount(), before);
  });

  test('fired by hand, it closes the timer fd and keeps the first reason', TIMEOUT, async () => {
    const before = openFdCount();
    const deadline = new Deadline(30, 'x');
    const reasons: TablerollError[] = [];
    deadline.onFire((reason) => reasons.push(reason));
    assert.equal(openFdCount(), before + 1);
    const byHand = new TablerollError(ErrorCodes.STOPPED, 'stopped by hand');
    deadline.fire(byHand);
    assert.equal(openFdCount(), before);
    assert.equal(deadline.reason, byHand);
    deadline.fire(new TablerollError(ErrorCodes.ABORTED, 'again'));
    await pastItsTime();
    assert.deepEqual(reasons, [byHand]);
    assert.equal(deadline.reason, byHand);
    deadline.dispose();
    assert.equal(openFdCount(), before);
  });

  test(
    'a timeout reaches the deadlines that follow it and closes their timers',
    TIMEOUT,
    async (t) => {
      keepAlive(t);
      const before = openFdCount();
      const parent = new Deadline(30, 'the parent');
      const child = new Deadline(10_000, 'the child', [parent]);
      const untimed = new Deadline(Infinity, 'untimed', [child]);
      t.after(() => [untimed, child, parent].forEach((deadline) => deadline.dispose()));
      assert.equal(openFdCount(), before + 2);
      const reason = await firing(untimed);
      assert.equal(reason.message, 'the parent timed out after 30 ms');
      assert.equal(child.reason, reason);
      assert.equal(parent.reason, reason);
      assert.equal(openFdCount(), before);
    },
  );

  test('with no time, or a parent that has fired, it opens no fd', TIMEOUT, () => {
    const before = openFdCount();
    const forever = new Deadline(Infinity, 'forever');
    assert.equal(openFdCount(), before);
    const stopped = new TablerollError(ErrorCodes.STOPPED, 'stopped');
    forever.fire(stopped);
    const late = new Deadline(30, 'late', [forever]);
    assert.equal(late.reason, stopped);
    const aborted = new Deadline(30, 'aborted', [AbortSignal.abort()]);
    assert.equal(aborted.reason?.code, 'ERR_TABLEROLL_ABORTED');
    assert.equal(openFdCount(), before);
    for (const deadline of [forever, late, aborted]) deadline.dispose();
  });

  test('a time beyond what a timerfd takes is accepted and does not fire', TIMEOUT, () => {
    const before = openFdCount();
    const far = [1e13, Number.MAX_SAFE_INTEGER, Number.MAX_VALUE].map(
      (ms) => new Deadline(ms, 'far'),
    );
    for (const deadline of far) assert.equal(deadline.reason, undefined);
    assert.equal(openFdCount(), before + far.length);
    for (const deadline of far) deadline.dispose();
    assert.equal(openFdCount(), before);
  });
});
