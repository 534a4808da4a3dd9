/**
 * Stopping liveroll through the real CLI: in-flight requests finish before any child is
 * signalled, every process group is gone afterwards, exit 0; a second signal exits at once.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  appCommand,
  baseFlags,
  fetchOnce,
  groupMembers,
  msg,
  processGone,
  runLoad,
  startLiveroll,
  tempDir,
  until,
  type Line,
} from '../support/liveroll-harness.js';

const TIMEOUT = { timeout: 60_000 };

/** A child's JSON stdout line with the given event, as liveroll logged it. */
function childEvent(event: string): (line: Line) => boolean {
  return (line) => line.stream === 'stdout' && String(line.msg).includes(`"event":"${event}"`);
}

/** SIGTERM with 20 slow requests in flight: each is answered, then liveroll exits 0. */
async function stopUnderLoad(t: TestContext, extra: string[]): Promise<void> {
  const dir = tempDir(t);
  // --exit-on-sigterm: the app drops its requests on SIGTERM, so any request liveroll lets it
  // see SIGTERM too early fails.
  const run = await startLiveroll(t, [
    ...baseFlags(join(dir, 'coord')),
    '--drain-timeout',
    '10s',
    '--id',
    'echo v1',
    '--exec',
    appCommand('--log-requests --exit-on-sigterm'),
    ...extra,
  ]);
  const warmup = await runLoad(run.port, { maxRequests: 200, concurrency: 4 });
  assert.deepEqual(warmup.failures, []);
  const inFlight = Array.from({ length: 20 }, () => fetchOnce(run.port, '/slow?ms=600'));
  await run.waitFor(
    childEvent('request'),
    'the 20 slow requests to reach the child',
    10_000,
    200 + 20,
  );
  run.signal('SIGTERM');
  const replies = await Promise.all(inFlight);
  assert.deepEqual(
    replies.map((r) => r.status),
    Array(20).fill(200),
  );
  const { code } = await run.waitExit();
  assert.equal(code, 0);
  const child = run.matching(msg('child started'))[0]?.childPid as number;
  assert.deepEqual(groupMembers(child), [], "the child's process group is gone");
  await assert.rejects(fetchOnce(run.port, '/'), /ECONNREFUSED/, 'the public port is closed');
  const order = run.lines
    .map((l) => l.msg)
    .filter((m) =>
      ['stop requested', 'child retiring', 'child stopped', 'stopped'].includes(m as string),
    );
  assert.deepEqual(order, ['stop requested', 'child retiring', 'child stopped', 'stopped']);
}

test('SIGTERM under load: in-flight requests complete, children are gone, exit 0', TIMEOUT, (t) =>
  stopUnderLoad(t, []),
);

test('SIGTERM under load on the JavaScript lane (--native-lane=false): the same', TIMEOUT, (t) =>
  stopUnderLoad(t, ['--native-lane=false']),
);

test('a second SIGTERM exits at once and SIGKILLs the children', TIMEOUT, async (t) => {
  const dir = tempDir(t);
  const run = await startLiveroll(t, [
    ...baseFlags(join(dir, 'coord')),
    '--stop-timeout',
    '30s',
    '--id',
    'echo v1',
    '--exec',
    appCommand('--ignore-sigterm'),
  ]);
  const child = run.matching(msg('child started'))[0]?.childPid as number;
  run.signal('SIGTERM');
  await run.waitFor(childEvent('sigterm'), 'the child to get its SIGTERM');
  const second = Date.now();
  run.signal('SIGTERM');
  const { code } = await run.waitExit(5_000);
  assert.equal(code, 128 + 15);
  assert.ok(Date.now() - second < 3_000, 'it did not wait for the 30 s stop timeout');
  await until(() => groupMembers(child).length === 0, 'the child group to be killed', 5_000);
});

test(
  'SIGINT: a grandchild that ignores SIGTERM dies with its process group after --stop-timeout',
  TIMEOUT,
  async (t) => {
    const dir = tempDir(t);
    const run = await startLiveroll(t, [
      ...baseFlags(join(dir, 'coord')),
      '--stop-timeout',
      '300ms',
      '--id',
      'echo v1',
      '--exec',
      appCommand('--grandchild'),
    ]);
    const line = await run.waitFor(childEvent('grandchild'), 'the grandchild to start');
    const grandchild = (JSON.parse(String(line.msg)) as { grandchildPid: number }).grandchildPid;
    assert.ok(!processGone(grandchild));
    run.signal('SIGINT');
    assert.equal((await run.waitExit()).code, 0);
    assert.ok(processGone(grandchild), 'the grandchild was killed with the group');
    assert.equal(
      run.matching(msg('child did not exit within its grace period; SIGKILL to its process group'))
        .length,
      1,
    );
  },
);

test(
  'SIGKILL of liveroll: its children stop too, even a grandchild that ignores SIGTERM',
  TIMEOUT,
  async (t) => {
    const dir = tempDir(t);
    const run = await startLiveroll(t, [
      ...baseFlags(join(dir, 'coord')),
      '--stop-timeout',
      '1s',
      '--id',
      'echo v1',
      '--exec',
      appCommand('--grandchild'),
    ]);
    const line = await run.waitFor(childEvent('grandchild'), 'the grandchild to start');
    const grandchild = (JSON.parse(String(line.msg)) as { grandchildPid: number }).grandchildPid;
    const child = run.matching(msg('child started'))[0]?.childPid as number;
    assert.ok(groupMembers(child).length >= 3, 'child, watcher and grandchild run');
    const childPort = run.matching(msg('child started'))[0]?.port as number;
    assert.equal((await fetchOnce(childPort, '/')).status, 200);
    run.signal('SIGKILL');
    assert.equal((await run.waitExit()).signal, 'SIGKILL');
    // The child stops on SIGTERM at once; the grandchild ignores it and needs the SIGKILL that
    // follows after --stop-timeout.
    await until(() => processGone(child), 'the child to stop', 10_000);
    await until(() => groupMembers(child).length === 0, 'the whole group to be gone', 10_000);
    assert.ok(processGone(grandchild));
    await assert.rejects(fetchOnce(childPort, '/'), /ECONNREFUSED/, 'nothing serves unsupervised');
  },
);
