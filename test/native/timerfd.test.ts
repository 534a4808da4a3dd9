/**
 * The native addon against the real kernel, with real sockets, descriptors and processes:
 * timerFd, the one-shot timer under Deadline.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, test } from 'node:test';

import { READABLE, native } from '../../src/native.js';
import {
  TIMEOUT,
  O_NONBLOCK,
  Resources,
  fdFlags,
  hasCloexec,
  openFdCount,
  fdTarget,
  nextEvent,
} from '../support/native-kit.js';

function readExpirations(fd: number): bigint {
  const counter = Buffer.alloc(8);
  assert.equal(fs.readSync(fd, counter), 8);
  return counter.readBigUInt64LE();
}

/** What is left of a timerfd's time, in ms, from /proc/self/fdinfo. */
function timeLeft(fd: number): number {
  const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const value = /^it_value: \((\d+), (\d+)\)$/m.exec(info);
  assert.ok(value, `no it_value line in fdinfo of ${fd}: ${info}`);
  return Number(value[1]) * 1e3 + Number(value[2]) / 1e6;
}

describe('timerFd', () => {
  test('is a one-shot CLOCK_MONOTONIC timerfd, non-blocking and close-on-exec', TIMEOUT, (t) => {
    const res = new Resources(t);
    const before = openFdCount();
    const fd = res.fd(native.timerFd(10_000));
    assert.equal(openFdCount(), before + 1);
    assert.equal(fdTarget(fd), 'anon_inode:[timerfd]');
    assert.equal(hasCloexec(fd), true);
    assert.equal(fdFlags(fd) & O_NONBLOCK, O_NONBLOCK);
    const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    assert.match(info, /^clockid: 1$/m, 'not CLOCK_MONOTONIC');
    assert.match(info, /^it_interval: \(0, 0\)$/m, 'not one-shot');
    const left = timeLeft(fd);
    assert.ok(left > 9_000 && left <= 10_000, `${left} ms left of 10 s`);
    // Not expired yet, and non-blocking: reading fails at once instead of waiting.
    assert.throws(() => fs.readSync(fd, Buffer.alloc(8)), { code: 'EAGAIN' });

    // The longest wait allowed, 1e12 ms, fits the timespec without overflowing.
    const longest = res.fd(native.timerFd(1e12));
    assert.ok(timeLeft(longest) > 1e12 - 60_000, `${timeLeft(longest)} ms left of 1e12`);
    res.close(longest);
    res.close(fd);
    assert.equal(openFdCount(), before);
  });

  test('becomes readable once its time has passed, and only once', TIMEOUT, async (t) => {
    const res = new Resources(t);
    const before = openFdCount();
    const start = performance.now();
    const fd = res.fd(native.timerFd(30));
    const fired = await nextEvent(res, fd, READABLE);
    const elapsed = performance.now() - start;
    assert.deepEqual(fired, { err: null, events: READABLE });
    assert.ok(elapsed >= 25, `a 30 ms timer fired after ${elapsed.toFixed(1)} ms`);
    assert.equal(readExpirations(fd), 1n);
    assert.throws(() => fs.readSync(fd, Buffer.alloc(8)), { code: 'EAGAIN' });
    res.close(fd);
    assert.equal(openFdCount(), before);
  });

  test('0 ms and a fraction of a millisecond fire at once', TIMEOUT, async (t) => {
    // A zero it_value would disarm a timerfd, which would then never fire.
    const res = new Resources(t);
    for (const ms of [0, 0.25, 1e-9]) {
      const fd = res.fd(native.timerFd(ms));
      assert.deepEqual(await nextEvent(res, fd, READABLE), { err: null, events: READABLE });
      assert.equal(readExpirations(fd), 1n, `timerFd(${ms})`);
      res.close(fd);
    }
  });
});
