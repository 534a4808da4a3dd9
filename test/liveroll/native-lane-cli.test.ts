/**
 * liveroll with `--native-lane`, through the real CLI and real children, under load with every
 * request counted: a roll on a new id and on SIGHUP, a takeover by another instance (and from
 * an instance on the JavaScript lane), and a SIGTERM with requests in flight.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  APP,
  appCommand,
  baseFlags,
  fetchOnce,
  groupMembers,
  loadProgress,
  msg,
  runLoad,
  startLiveroll,
  startMixedLoad,
  tempDir,
  type Line,
} from '../support/liveroll-harness.js';

const TIMEOUT = { timeout: 90_000 };

/** Lines the child printed (--log-requests) about `event`. */
function childEvent(event: string): (line: Line) => boolean {
  return (line) => line.stream === 'stdout' && String(line.msg).includes(`"event":"${event}"`);
}

test('native lane: a new id and a SIGHUP each roll under load, 0 failed', TIMEOUT, async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'id'), 'v1');
  const exec = `exec '${process.execPath}' '${APP}' --port <<PORT>> --health <<HEALTHCHECK>> --name "$(cat ${dir}/id)"`;
  const run = await startLiveroll(t, [
    ...baseFlags(join(dir, 'coord')),
    '--native-lane',
    '--interval',
    '150ms',
    '--id',
    `cat ${dir}/id`,
    '--exec',
    exec,
  ]);
  const stop = new AbortController();
  const load = runLoad(run.port, { stop: stop.signal, concurrency: 4, maxMs: 30_000 });
  writeFileSync(join(dir, 'id'), 'v2');
  await run.waitFor(msg('update complete', { id: 'v2' }), 'the update to v2');
  await run.waitFor(msg('child stopped', { child: 'child-1' }), 'the v1 child to stop');
  run.signal('SIGHUP');
  await run.waitFor(msg('update complete', { child: 'child-3' }), 'the SIGHUP roll');
  await run.waitFor(msg('child stopped', { child: 'child-2' }), 'child-2 to stop');
  stop.abort();
  const result = await load;
  assert.deepEqual(result.failures, []);
  assert.ok(result.ok > 100, `${result.ok} requests answered`);
  assert.equal(result.names[0], 'v1');
  assert.equal(result.names.at(-1), 'v2');
});

async function takeover(t: TestContext, extraA: string[]): Promise<void> {
  const coord = join(tempDir(t), 'coord');
  const flags = (name: string, extra: string[]): string[] => [
    ...baseFlags(coord, name),
    '--id',
    'echo v1',
    '--exec',
    appCommand(`--name ${name}`),
    ...extra,
  ];
  const a = await startLiveroll(t, flags('a', extraA));
  const traffic = startMixedLoad(a.port);
  await loadProgress(traffic, 'load on instance a', 20);
  const b = await startLiveroll(t, flags('b', ['--native-lane']));
  assert.equal(b.port, a.port, 'b serves on the socket it inherited');
  assert.equal((await a.waitExit(30_000)).code, 0);
  await loadProgress(traffic, 'load on b after a exited', 20);
  const results = await traffic.stop();
  for (const result of results) {
    assert.deepEqual(result.failures, [], 'no request failed');
    assert.equal(result.names[0], 'a');
    assert.equal(result.names.at(-1), 'b');
  }
  for (const l of a.matching(msg('child started')))
    assert.deepEqual(groupMembers(l.childPid as number), [], "a's children are gone");
  b.signal('SIGTERM');
  assert.equal((await b.waitExit()).code, 0);
}

test(
  'native lane: takeover by another native-lane instance under mixed load, 0 failed',
  TIMEOUT,
  (t) => takeover(t, ['--native-lane']),
);

test('native lane: takeover of an instance on the JavaScript lane, 0 failed', TIMEOUT, (t) =>
  takeover(t, []),
);

test(
  'native lane: SIGTERM under load: in-flight requests complete, exit 0, port closed',
  TIMEOUT,
  async (t) => {
    const dir = tempDir(t);
    const run = await startLiveroll(t, [
      ...baseFlags(join(dir, 'coord')),
      '--native-lane',
      '--drain-timeout',
      '10s',
      '--id',
      'echo v1',
      '--exec',
      appCommand('--log-requests --exit-on-sigterm'),
    ]);
    const warmup = await runLoad(run.port, { maxRequests: 200, concurrency: 4, keepAlive: true });
    assert.deepEqual(warmup.failures, []);
    const inFlight = Array.from({ length: 20 }, () => fetchOnce(run.port, '/slow?ms=600'));
    await run.waitFor(childEvent('request'), 'the slow requests to reach the child', 10_000, 220);
    run.signal('SIGTERM');
    const replies = await Promise.all(inFlight);
    assert.deepEqual(
      replies.map((r) => r.status),
      Array(20).fill(200),
    );
    assert.equal((await run.waitExit()).code, 0);
    await assert.rejects(fetchOnce(run.port, '/'), /ECONNREFUSED/, 'the public port is closed');
  },
);
