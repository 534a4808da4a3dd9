/**
 * liveroll's direct mode through the real CLI: every child accepts on the public socket itself
 * (fd 3, LISTEN_FDS, LISTEN_PID), liveroll only supervises. Rolls on an id change and on
 * SIGHUP, a takeover of liveroll itself and a child failing its health check, all under load
 * with fresh and keep-alive connections, every request counted.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  APP,
  baseFlags,
  fetchOnce,
  groupMembers,
  jsonOf,
  msg,
  startLiveroll,
  startMixedLoad,
  loadProgress,
  tempDir,
  type Liveroll,
} from '../support/liveroll-harness.js';

const TIMEOUT = { timeout: 90_000 };

/**
 * Flags of a direct-mode liveroll whose id is `<dir>/id` and whose app is named after it and
 * gets the flags in `<dir>/flags`.
 */
function directFlags(dir: string, instance: string, extra: string[] = []): string[] {
  const exec = `exec '${process.execPath}' '${APP}' --port <<PORT>> --health <<HEALTHCHECK>> --name "$(cat ${dir}/id)" $(cat ${dir}/flags)`;
  return [
    ...baseFlags(join(dir, 'coord'), instance),
    '--mode',
    'direct',
    '--id',
    `cat ${dir}/id`,
    '--exec',
    exec,
    ...extra,
  ];
}

function setup(t: TestContext, id = 'v1', flags = ''): string {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'id'), id);
  writeFileSync(join(dir, 'flags'), flags);
  return dir;
}

function childGroups(run: Liveroll): number[] {
  return run.matching(msg('child started')).map((l) => l.childPid as number);
}

test(
  'direct mode: the child answers on the public port itself, with no proxy hop',
  TIMEOUT,
  async (t) => {
    const dir = setup(t);
    const run = await startLiveroll(t, directFlags(dir, 'a'));
    const reply = jsonOf(await fetchOnce(run.port, '/'));
    const child = run.matching(msg('child started'))[0];
    assert.equal(reply.name, 'v1');
    assert.equal(reply.pid, child?.childPid, 'LISTEN_PID named the program: the shell exec-ed it');
    assert.equal(reply.forwardedFor, undefined, 'no proxy added X-Forwarded-For');
    assert.equal(run.matching(msg('serving'))[0]?.mode, 'direct');
    run.signal('SIGTERM');
    assert.equal((await run.waitExit()).code, 0);
    assert.deepEqual(groupMembers(child?.childPid as number), []);
    await assert.rejects(fetchOnce(run.port, '/'), /ECONNREFUSED/, 'the public port is closed');
  },
);

test(
  'direct mode: rolls on an id change and on SIGHUP under load, 0 failed',
  TIMEOUT,
  async (t) => {
    const dir = setup(t);
    const run = await startLiveroll(t, directFlags(dir, 'a', ['--interval', '150ms']));
    const traffic = startMixedLoad(run.port);
    await loadProgress(traffic, 'load on v1');
    writeFileSync(join(dir, 'id'), 'v2');
    await run.waitFor(msg('update complete', { id: 'v2' }), 'the roll to v2', 20_000);
    await loadProgress(traffic, 'load after the roll to v2');
    run.signal('SIGHUP');
    await run.waitFor(msg('update complete', { id: 'v2' }), 'the SIGHUP roll', 20_000, 2);
    await loadProgress(traffic, 'load after the SIGHUP roll');
    const results = await traffic.stop();
    for (const result of results) {
      assert.deepEqual(result.failures, [], 'no request failed');
      assert.equal(result.names[0], 'v1');
      assert.equal(result.names.at(-1), 'v2');
    }
    const groups = childGroups(run);
    assert.equal(groups.length, 3);
    for (const group of groups.slice(0, 2)) assert.deepEqual(groupMembers(group), []);
    run.signal('SIGTERM');
    assert.equal((await run.waitExit()).code, 0);
  },
);

test(
  'direct mode: a child failing its health check never takes a request, 0 failed',
  TIMEOUT,
  async (t) => {
    const dir = setup(t);
    const run = await startLiveroll(
      t,
      // 5 s: the first child must also start within it, and a cold Node start under load can
      // take over a second.
      directFlags(dir, 'a', ['--interval', '150ms', '--health-timeout', '5s']),
    );
    const traffic = startMixedLoad(run.port);
    await loadProgress(traffic, 'load on v1');
    writeFileSync(join(dir, 'flags'), '--health-status 500');
    writeFileSync(join(dir, 'id'), 'v2');
    await run.waitFor(msg('update failed'), 'the v2 update to fail', 20_000);
    await loadProgress(traffic, 'load after the failed update');
    const results = await traffic.stop();
    for (const result of results) {
      assert.deepEqual(result.failures, [], 'no request failed');
      assert.deepEqual(result.names, ['v1'], 'only v1 answered');
    }
    const [first, failed] = childGroups(run);
    assert.deepEqual(groupMembers(failed as number), [], 'the failed child was killed');
    assert.ok(groupMembers(first as number).length > 0, 'v1 still runs');
    run.signal('SIGTERM');
    assert.equal((await run.waitExit()).code, 0);
  },
);

test('direct mode: a takeover of liveroll itself under load, 0 failed', TIMEOUT, async (t) => {
  const dir = setup(t);
  const a = await startLiveroll(t, directFlags(dir, 'a'));
  const traffic = startMixedLoad(a.port);
  await loadProgress(traffic, 'load on instance a');
  writeFileSync(join(dir, 'id'), 'v2');
  const b = await startLiveroll(t, directFlags(dir, 'b'));
  assert.equal(b.port, a.port, 'b hands the socket it inherited to its children');
  assert.equal((await a.waitExit(30_000)).code, 0);
  await loadProgress(traffic, 'load after a exited');
  const results = await traffic.stop();
  for (const result of results) {
    assert.deepEqual(result.failures, [], 'no request failed');
    assert.equal(result.names[0], 'v1');
    assert.equal(result.names.at(-1), 'v2');
  }
  for (const group of childGroups(a)) assert.deepEqual(groupMembers(group), []);
  b.signal('SIGTERM');
  assert.equal((await b.waitExit()).code, 0);
});

test(
  'direct mode warns when --exec does not exec: LISTEN_PID would name the shell',
  TIMEOUT,
  async (t) => {
    const dir = setup(t);
    const flags = directFlags(dir, 'a');
    const exec = flags.indexOf('--exec') + 1;
    flags[exec] = (flags[exec] ?? '').replace(/^exec /, '');
    const run = await startLiveroll(t, flags, false);
    const warned = await run.waitFor(
      (line) => String(line.msg).startsWith('--exec does not start with "exec": in direct mode'),
      'the warning',
    );
    assert.equal(warned.level, 40, 'a warning');
    run.signal('SIGTERM');
    assert.equal((await run.waitExit()).code, 0);
  },
);
