/**
 * setMallocTrimThreshold: mallopt(M_TRIM_THRESHOLD) through the addon, the environment's own
 * setting winning over it, and bad arguments refused. What the setting does to a proxy's page
 * faults is measured by the bench (bench/measure/liveroll-proxy.ts), not asserted here: the
 * count depends on when V8 collects the read buffers.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { BULK_TRIM_THRESHOLD, setMallocTrimThreshold } from '../../src/index.js';
import { native } from '../../src/native.js';
import { onGlibc } from '../support/helpers.js';

test('the threshold is set where the C library has it, and refused nowhere else', () => {
  const expected = onGlibc() ? 'set' : 'unsupported';
  assert.equal(setMallocTrimThreshold(BULK_TRIM_THRESHOLD, {}), expected);
  assert.equal(setMallocTrimThreshold(0, {}), expected);
  // Back to glibc's default, for the rest of this process.
  assert.equal(setMallocTrimThreshold(128 * 1024, {}), expected);
  // A tunables string that sets something else leaves the call free to set this one.
  assert.equal(
    setMallocTrimThreshold(128 * 1024, { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }),
    expected,
  );
});

test("the environment's own threshold wins: the call changes nothing", () => {
  assert.equal(
    setMallocTrimThreshold(BULK_TRIM_THRESHOLD, { MALLOC_TRIM_THRESHOLD_: '0' }),
    'environment',
  );
  assert.equal(
    setMallocTrimThreshold(BULK_TRIM_THRESHOLD, {
      GLIBC_TUNABLES: 'glibc.malloc.arena_max=2:glibc.malloc.trim_threshold=65536',
    }),
    'environment',
  );
  // Even a bad size is not looked at then: nothing is called.
  assert.equal(setMallocTrimThreshold(-1, { MALLOC_TRIM_THRESHOLD_: '1' }), 'environment');
});

test('a size that is not a whole number of bytes below 2 GiB is refused', () => {
  const rangeError = { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' };
  for (const bytes of [-1, 2 ** 31, 1.5, NaN, Infinity]) {
    assert.throws(() => setMallocTrimThreshold(bytes, {}), rangeError);
  }
  const untyped = native as unknown as { setMallocTrimThreshold(bytes: unknown): boolean };
  for (const bytes of ['1024', undefined, null, 1024n]) {
    assert.throws(() => untyped.setMallocTrimThreshold(bytes), {
      name: 'TypeError',
      code: 'ERR_INVALID_ARG_TYPE',
    });
  }
});
