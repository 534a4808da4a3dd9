/**
 * The sweep that times the proxy's silences (src/liveroll/proxy/sweep.ts). The timeouts it
 * serves are tested end to end through real sockets in test/liveroll/upstream.test.ts and
 * fast-lane.test.ts; here, its own rules: the interval it picks, that it stops itself when it
 * has nothing left to look at, and how a quiet clock counts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  QuietClock,
  SWEEP_MAX_MS,
  Sweeper,
  sweepInterval,
} from '../../src/liveroll/proxy/sweep.js';
import { until } from '../support/helpers.js';

describe('sweepInterval', () => {
  it('is a quarter of the shortest timeout, between 10 ms and the cap', () => {
    assert.equal(sweepInterval([400, 1_000]), 100);
    assert.equal(sweepInterval([1_000, 400]), 100);
    assert.equal(sweepInterval([0, 300]), 75, 'a 0 is no timeout');
    assert.equal(sweepInterval([20]), 10, 'never under 10 ms');
    assert.equal(sweepInterval([60_000]), SWEEP_MAX_MS);
    assert.equal(sweepInterval([]), SWEEP_MAX_MS, 'no timeout at all');
    assert.equal(sweepInterval([0, -1]), SWEEP_MAX_MS);
  });
});

describe('Sweeper', () => {
  it('visits until it has nothing left, then stops; start() again restarts it once', async () => {
    let members = 3;
    let visits = 0;
    const sweeper = new Sweeper(10, () => {
      visits++;
      members--;
      return members > 0;
    });
    sweeper.start();
    sweeper.start(); // a second start while running adds no second timer
    await until(() => !sweeper.running, 'the sweeper to stop itself');
    assert.equal(visits, 3);
    members = 1;
    sweeper.start();
    assert.ok(sweeper.running);
    await until(() => !sweeper.running, 'the restarted sweeper to stop');
    assert.equal(visits, 4);
  });

  it('stop() ends it at once and can be called when not running', async () => {
    let visits = 0;
    const sweeper = new Sweeper(10, () => {
      visits++;
      return true;
    });
    sweeper.stop();
    sweeper.start();
    await until(() => visits >= 2, 'two visits');
    sweeper.stop();
    const seen = visits;
    // A timer of the same interval, started now, fires three times; had the sweeper's timer
    // lived on, it would have fired before each of those.
    await new Promise<void>((resolve) => {
      let ticks = 0;
      const probe = setInterval(() => {
        if (++ticks < 3) return;
        clearInterval(probe);
        resolve();
      }, 10);
    });
    assert.equal(visits, seen);
    assert.ok(!sweeper.running);
  });
});

describe('QuietClock', () => {
  it('counts a silence from the first sweep that saw no touch', () => {
    const clock = new QuietClock(1_000);
    assert.equal(clock.quietFor(1_100), 100, 'quiet since it was made');
    clock.touch();
    assert.equal(clock.quietFor(1_200), 0, 'the first look after a touch');
    assert.equal(clock.quietFor(1_450), 250);
    clock.touch();
    clock.touch();
    assert.equal(clock.quietFor(1_500), 0);
    assert.equal(clock.quietFor(1_500), 0);
    assert.equal(clock.quietFor(2_000), 500);
  });
});
