/**
 * Two liveroll instances on one coordination directory, as systemd template units `app@1` and
 * `app@2` (or an old and a new liveroll version) run during a takeover: the second inherits the
 * public socket through the Upgrader, brings up its own children, calls ready(), and the first
 * drains, retires its children and exits 0. Under continuous load, with fresh and keep-alive
 * connections, not one request fails.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { WebSocket } from 'ws';
import {
  appCommand,
  baseFlags,
  groupMembers,
  msg,
  startLiveroll,
  startMixedLoad,
  loadProgress,
  tempDir,
  type Liveroll,
} from '../support/liveroll-harness.js';
import { portsToBindLater } from '../support/helpers.js';

const TIMEOUT = { timeout: 90_000 };

/** Flags of instance `name`, whose app answers with that name. */
function instanceFlags(coord: string, name: string, extra: string[] = []): string[] {
  return [
    ...baseFlags(coord, name),
    '--id',
    'echo v1',
    '--exec',
    appCommand(`--name ${name}`),
    ...extra,
  ];
}

function childGroups(run: Liveroll): number[] {
  return run.matching(msg('child started')).map((l) => l.childPid as number);
}

function childPorts(run: Liveroll): number[] {
  return run.matching(msg('child started')).map((l) => l.port as number);
}

async function takeover(t: TestContext, extraA: string[], extraB: string[]): Promise<void> {
  const coord = join(tempDir(t), 'coord');
  const a = await startLiveroll(t, instanceFlags(coord, 'a', extraA));
  const traffic = startMixedLoad(a.port);
  await loadProgress(traffic, 'load on instance a', 20);

  const b = await startLiveroll(t, instanceFlags(coord, 'b', extraB));
  assert.equal(b.port, a.port, 'b serves on the socket it inherited');
  const exit = await a.waitExit(30_000);
  assert.equal(exit.code, 0);
  await loadProgress(traffic, 'load on b after a exited', 20);
  const results = await traffic.stop();

  for (const result of results) {
    assert.deepEqual(result.failures, [], 'no request failed');
    assert.equal(result.names[0], 'a');
    assert.equal(result.names.at(-1), 'b');
  }
  assert.match(String(a.matching(msg('shutting down'))[0]?.reason), /taken over/);
  for (const group of childGroups(a))
    assert.deepEqual(groupMembers(group), [], "a's children are gone");
  const overlap = childPorts(b).filter((p) => childPorts(a).includes(p));
  assert.deepEqual(overlap, [], 'the two instances never shared a child port');
  b.signal('SIGTERM');
  assert.equal((await b.waitExit()).code, 0);
}

test(
  'takeover with child ports 0 (the template-unit configuration), zero failed requests',
  TIMEOUT,
  async (t) => {
    await takeover(t, [], []);
  },
);

test(
  'takeover with fixed child ports: the newcomer passes over the port the old child holds',
  TIMEOUT,
  async (t) => {
    const [port1 = 0, port2 = 0] = await portsToBindLater(2);
    const fixed = ['--child-port1', String(port1), '--child-port2', String(port2)];
    await takeover(t, fixed, fixed);
  },
);

test(
  'takeover between two instances on the JavaScript lane (--native-lane=false), zero failed requests',
  TIMEOUT,
  (t) => takeover(t, ['--native-lane=false'], ['--native-lane=false']),
);

test('takeover of an instance on the JavaScript lane by one on the native lane', TIMEOUT, (t) =>
  takeover(t, ['--native-lane=false'], []),
);

test('a newcomer that fails to start leaves the old instance serving', TIMEOUT, async (t) => {
  const coord = join(tempDir(t), 'coord');
  const a = await startLiveroll(t, instanceFlags(coord, 'a'));
  const traffic = startMixedLoad(a.port);
  await loadProgress(traffic, 'load on instance a', 20);
  const b = await startLiveroll(
    t,
    [...baseFlags(coord, 'b'), '--id', 'echo v1', '--exec', 'exit 3'],
    false,
  );
  assert.equal((await b.waitExit()).code, 1);
  await a.waitFor(msg('a takeover of the public port failed'), 'a to notice');
  await loadProgress(traffic, 'a to keep serving', 20);
  for (const result of await traffic.stop()) {
    assert.deepEqual(result.failures, []);
    assert.deepEqual(result.names, ['a']);
  }
  assert.equal(a.proc.exitCode, null, 'a is still running');
});

test("a takeover closes the old instance's WebSocket tunnels with 1001", TIMEOUT, async (t) => {
  const coord = join(tempDir(t), 'coord');
  const a = await startLiveroll(t, instanceFlags(coord, 'a', ['--drain-timeout', '30s']));
  const ws = new WebSocket(`ws://127.0.0.1:${a.port}/`);
  t.after(() => ws.terminate());
  await new Promise((resolve) => ws.once('message', resolve));
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  const b = await startLiveroll(t, instanceFlags(coord, 'b'));
  assert.equal(await closed, 1001);
  assert.equal((await a.waitExit(20_000)).code, 0);
  assert.equal(a.matching(msg('in-flight requests outlived the drain timeout')).length, 0);
  assert.equal(
    a.matching(msg('connections outlived the drain timeout and were closed')).length,
    0,
    'the tunnel did not hold the drain until its deadline',
  );
  b.signal('SIGTERM');
  assert.equal((await b.waitExit()).code, 0);
});
