/**
 * The roll loop through the real CLI, with fixture apps started by `--exec` on ephemeral
 * ports. The app's name (in every response) is the id the child was started for, read from a
 * file the test rewrites; extra app flags come from another file.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { WebSocket } from 'ws';
import {
  APP,
  baseFlags,
  fetchOnce,
  groupMembers,
  jsonOf,
  msg,
  processGone,
  runLoad,
  startLiveroll,
  tempDir,
  until,
  type Line,
  type Liveroll,
} from '../support/liveroll-harness.js';
import { onGlibc } from '../support/helpers.js';

const TIMEOUT = { timeout: 60_000 };

/** A liveroll whose id is the content of `<dir>/id` and whose app gets the flags in `<dir>/flags`. */
/**
 * The health timeout of the tests whose new child never gets healthy. It is also the first
 * child's, which must start within it: a cold Node start took over 1 s with three test suites on
 * the machine, so the tests give 5 s and wait for the failure that long.
 */
const HEALTH_TIMEOUT = '5s';

async function start(
  t: TestContext,
  extra: string[] = [],
  id = 'v1',
  appFlags = '',
): Promise<{ run: Liveroll; dir: string }> {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'id'), id);
  writeFileSync(join(dir, 'flags'), appFlags);
  const exec = `exec '${process.execPath}' '${APP}' --port <<PORT>> --health <<HEALTHCHECK>> --name "$(cat ${dir}/id)" $(cat ${dir}/flags)`;
  const run = await startLiveroll(t, [
    ...baseFlags(join(dir, 'coord')),
    '--id',
    `cat ${dir}/id`,
    '--exec',
    exec,
    ...extra,
  ]);
  return { run, dir };
}

async function nameVia(run: Liveroll): Promise<unknown> {
  return jsonOf(await fetchOnce(run.port, '/')).name;
}

/** Pids of the children the log says were started, by child name. */
function childPid(run: Liveroll, child: string): number {
  return run.matching(msg('child started', { child }))[0]?.childPid as number;
}

const isChild = (name: string) => (l: Line) => l.child === name;

test(
  'start-up: pull, id, child on a free port, health check, serving, ready',
  TIMEOUT,
  async (t) => {
    const dir = tempDir(t);
    const { run } = await start(t, ['--pull', `echo pulled > ${join(dir, 'pulled')}`]);
    const order = [
      'update started',
      'artifact id',
      'child started',
      'child healthy',
      'child serving',
      'serving',
      'ready',
    ];
    const seen = run.lines.map((l) => l.msg).filter((m) => order.includes(m as string));
    assert.deepEqual(seen, order);
    assert.equal(run.matching(msg('artifact id'))[0]?.id, 'v1');
    assert.equal(readFileSync(join(dir, 'pulled'), 'utf8'), 'pulled\n', '--pull ran');
    assert.equal(await nameVia(run), 'v1');
    // The proxy keeps freed heap pages for bulk bodies where the C library allows it (glibc).
    assert.equal(run.matching(msg('serving'))[0]?.allocator, onGlibc() ? 'set' : 'unsupported');
    const listening = run.lines.find((l) => String(l.msg).includes('"event":"listening"'));
    assert.equal(listening?.child, 'child-1', "the child's stdout is attributed to it");
    assert.equal(listening?.stream, 'stdout');
  },
);

test(
  'interval: an unchanged id is skipped; a new id rolls to a new child with no failed request',
  TIMEOUT,
  async (t) => {
    const { run, dir } = await start(t, ['--interval', '150ms']);
    await run.waitFor(msg('update skipped: id unchanged'), 'two skipped checks', 10_000, 2);
    assert.equal(run.matching(msg('child started')).length, 1, 'no child for an unchanged id');
    assert.equal(run.matching(msg('update started')).length, 1, 'an idle tick says one line');
    assert.equal(run.matching(msg('artifact id')).length, 1);

    const stop = new AbortController();
    const load = runLoad(run.port, { stop: stop.signal, concurrency: 4, maxMs: 20_000 });
    writeFileSync(join(dir, 'id'), 'v2');
    await run.waitFor(msg('update complete', { id: 'v2' }), 'the update to v2');
    await run.waitFor(msg('child stopped', { child: 'child-1' }), 'the v1 child to stop');
    stop.abort();
    const result = await load;
    assert.deepEqual(result.failures, []);
    assert.equal(result.names[0], 'v1');
    assert.equal(result.names.at(-1), 'v2');
    assert.ok(result.names.every((n) => n === 'v1' || n === 'v2'));
    assert.equal(await nameVia(run), 'v2');
    await until(
      () => groupMembers(childPid(run, 'child-1')).length === 0,
      'the v1 process group to be gone',
    );
  },
);

test(
  'JavaScript lane (--native-lane=false): a new id, a SIGHUP and a child failing its health check, under load with no failed request',
  TIMEOUT,
  async (t) => {
    const { run, dir } = await start(t, [
      '--native-lane=false',
      '--interval',
      '150ms',
      '--health-timeout',
      HEALTH_TIMEOUT,
    ]);
    const stop = new AbortController();
    const load = runLoad(run.port, { stop: stop.signal, concurrency: 4, maxMs: 40_000 });
    writeFileSync(join(dir, 'id'), 'v2');
    await run.waitFor(msg('update complete', { id: 'v2' }), 'the update to v2');
    await run.waitFor(msg('child stopped', { child: 'child-1' }), 'the v1 child to stop');
    run.signal('SIGHUP');
    await run.waitFor(msg('update complete', { child: 'child-3' }), 'the SIGHUP roll');
    await run.waitFor(msg('child stopped', { child: 'child-2' }), 'child-2 to stop');
    writeFileSync(join(dir, 'flags'), '--health-status 500');
    writeFileSync(join(dir, 'id'), 'v3');
    await run.waitFor(msg('update failed'), 'the v3 update to fail');
    await run.waitFor(msg('child stopped', { child: 'child-4' }), 'the unhealthy child to go');
    stop.abort();
    const result = await load;
    assert.deepEqual(result.failures, []);
    assert.equal(result.names[0], 'v1');
    assert.equal(result.names.at(-1), 'v2', 'the unhealthy v3 child never served');
    assert.ok(!result.names.includes('v3'));
  },
);

/**
 * A `--pull` that prints as `docker pull` does: progress on stdout in many writes, some lines
 * cut mid-way, a multi-byte character split across two writes, stderr too, and no final
 * newline.
 */
function writePullScript(dir: string): string {
  const script = join(dir, 'pull.sh');
  writeFileSync(
    script,
    [
      "printf 'v1: Pulling from library/app\\n'",
      "printf 'a3ed95caeb02: Pulling fs '",
      "printf 'layer\\r\\n'",
      "printf '4f4fb700ef54: Download complete \\342\\234'",
      "printf '\\223\\n'",
      "printf 'warning: registry mirror slow\\n' >&2",
      "printf 'Digest: sha256:0123abcd\\n'",
      "printf 'partial line on stderr' >&2",
      "printf 'Status: Image is up to date for app:v1'",
      '',
    ].join('\n'),
  );
  return `sh ${script}`;
}

test(
  'regression: a --pull that prints on stdout and stderr no longer kills liveroll, at start-up or on a tick under load',
  TIMEOUT,
  async (t) => {
    const pullDir = tempDir(t);
    const { run, dir } = await start(t, [
      '--interval',
      '150ms',
      '--pull',
      writePullScript(pullDir),
    ]);
    const stop = new AbortController();
    const load = runLoad(run.port, { stop: stop.signal, concurrency: 4, maxMs: 20_000 });
    await run.waitFor(msg('update skipped: id unchanged'), 'two ticks that pulled', 10_000, 2);
    writeFileSync(join(dir, 'id'), 'v2');
    await run.waitFor(msg('update complete', { id: 'v2' }), 'the update to v2');
    await run.waitFor(msg('update skipped: id unchanged', { id: 'v2' }), 'a tick after it');
    stop.abort();
    const result = await load;
    assert.deepEqual(result.failures, []);
    assert.ok(result.ok > 0);
    assert.equal(run.proc.exitCode, null, 'liveroll is still running');
    const pulled = (stream: string): unknown[] =>
      run.matching((l) => l.command === 'pull' && l.stream === stream).map((l) => l.msg);
    assert.deepEqual(pulled('stdout').slice(0, 5), [
      'v1: Pulling from library/app',
      'a3ed95caeb02: Pulling fs layer',
      '4f4fb700ef54: Download complete \u2713',
      'Digest: sha256:0123abcd',
      'Status: Image is up to date for app:v1',
    ]);
    assert.deepEqual(pulled('stderr').slice(0, 2), [
      'warning: registry mirror slow',
      'partial line on stderr',
    ]);
    const finished = pulled('stdout').filter((m) => String(m).startsWith('Status:')).length;
    assert.ok(finished >= 4, `every pull was logged to its last line (${finished} pulls)`);
  },
);

test(
  'SIGHUP with the same id replaces the child (never two copies), under load',
  TIMEOUT,
  async (t) => {
    const { run } = await start(t);
    const stop = new AbortController();
    const load = runLoad(run.port, { stop: stop.signal, concurrency: 4, maxMs: 20_000 });
    for (const [n, old] of [
      [2, 'child-1'],
      [3, 'child-2'],
    ] as const) {
      run.signal('SIGHUP');
      await run.waitFor(
        msg('update complete', { child: `child-${n}` }),
        `SIGHUP #${n - 1} to complete`,
      );
      await run.waitFor(msg('child stopped', { child: old }), `${old} to stop`);
      assert.ok(processGone(childPid(run, old)), `${old} is gone`);
    }
    stop.abort();
    assert.deepEqual((await load).failures, []);
    const live = run
      .matching(msg('child started'))
      .filter((l) => !processGone(l.childPid as number));
    assert.deepEqual(
      live.map((l) => l.child),
      ['child-3'],
      'exactly one child runs',
    );
    assert.equal(run.matching(msg('child started', { artifact: 'v1' })).length, 3);
  },
);

test(
  'a new child failing its health check is killed and the old one keeps serving',
  TIMEOUT,
  async (t) => {
    const { run, dir } = await start(t, [
      '--interval',
      '150ms',
      '--health-timeout',
      HEALTH_TIMEOUT,
    ]);
    writeFileSync(join(dir, 'flags'), '--health-status 500');
    writeFileSync(join(dir, 'id'), 'v2');
    const failed = await run.waitFor(msg('update failed'), 'the v2 update to fail');
    assert.match(String(failed.err), /ERR_LIVEROLL_HEALTH_TIMEOUT.*answered 500/);
    await run.waitFor(
      msg('child stopped', { child: 'child-2' }),
      'the unhealthy child to be killed',
    );
    assert.ok(processGone(childPid(run, 'child-2')));
    assert.equal(await nameVia(run), 'v1');
    assert.ok(!processGone(childPid(run, 'child-1')), 'the serving child was never touched');
    assert.equal(
      run.matching(isChild('child-1')).filter((l) => l.msg === 'child retiring').length,
      0,
    );
  },
);

test(
  'a failed id is tried again after its backoff, not on every tick; SIGHUP retries it at once',
  TIMEOUT,
  async (t) => {
    const { run, dir } = await start(t, [
      '--interval',
      '100ms',
      '--health-timeout',
      HEALTH_TIMEOUT,
      '--restart-backoff',
      '3s',
    ]);
    writeFileSync(join(dir, 'flags'), '--health-status 500');
    writeFileSync(join(dir, 'id'), 'v2');
    await run.waitFor(msg('update failed'), 'the v2 update to fail');
    const later = msg('update skipped: this id failed; retrying later', { id: 'v2' });
    await run.waitFor(later, 'three ticks that skip v2', 10_000, 3);
    assert.equal(run.matching(msg('child started', { artifact: 'v2' })).length, 1);
    run.signal('SIGHUP');
    await run.waitFor(msg('child started', { artifact: 'v2' }), 'a forced retry', 10_000, 2);
    writeFileSync(join(dir, 'flags'), '');
    run.signal('SIGHUP');
    await run.waitFor(msg('update complete', { id: 'v2' }), 'v2 once it is healthy');
    assert.equal(await nameVia(run), 'v2');
  },
);

test(
  'a hanging health endpoint costs one probe timeout per probe, not a stuck update',
  TIMEOUT,
  async (t) => {
    const { run, dir } = await start(t, [
      '--interval',
      '150ms',
      '--health-timeout',
      HEALTH_TIMEOUT,
      '--health-probe-timeout',
      '200ms',
    ]);
    writeFileSync(join(dir, 'flags'), '--health-hang');
    writeFileSync(join(dir, 'id'), 'v2');
    const failed = await run.waitFor(msg('update failed'), 'the v2 update to fail', 20_000);
    assert.match(String(failed.err), /ERR_LIVEROLL_HEALTH_TIMEOUT.*probe timed out/);
    // Recovery: once the app answers again, the next interval rolls to v2.
    writeFileSync(join(dir, 'flags'), '');
    await run.waitFor(msg('update complete', { id: 'v2' }), 'the retried update');
    assert.equal(await nameVia(run), 'v2');
  },
);

test('a crashed child is replaced and traffic resumes', TIMEOUT, async (t) => {
  const { run } = await start(t);
  const pid = childPid(run, 'child-1');
  process.kill(pid, 'SIGKILL');
  const exit = await run.waitFor(msg('child exited unexpectedly'), 'the crash to be noticed');
  assert.equal(exit.signal, 'SIGKILL');
  assert.equal(
    (await run.waitFor(msg('restart scheduled'), 'a restart')).delayMs,
    0,
    'a first crash is replaced at once',
  );
  await run.waitFor(msg('child serving', { child: 'child-2' }), 'the replacement');
  assert.equal(await nameVia(run), 'v1');
});

test('a crash loop backs off: delays double up to the maximum', TIMEOUT, async (t) => {
  const { run } = await start(
    t,
    ['--restart-backoff', '100ms', '--restart-backoff-max', '400ms', '--restart-reset', '1m'],
    'v1',
    '--crash-after 100',
  );
  await run.waitFor(msg('restart scheduled'), 'five restarts', 30_000, 5);
  const delays = run.matching(msg('restart scheduled')).map((l) => l.delayMs);
  assert.deepEqual(delays.slice(0, 5), [0, 100, 200, 400, 400]);
  const starts = run.matching(msg('child started')).map((l) => l.time as number);
  for (let i = 1; i < 5; i++) {
    const gap = (starts[i] ?? 0) - (starts[i - 1] ?? 0);
    assert.ok(gap >= (delays[i - 1] as number), `start ${i + 1} came ${gap} ms after start ${i}`);
  }
  assert.equal(run.proc.exitCode, null, 'liveroll keeps going');
});

test(
  'SIGHUPs during an update are handled at once and coalesce into one follow-up',
  TIMEOUT,
  async (t) => {
    // A slow-starting app keeps each update running for a while.
    const { run } = await start(t, [], 'v1', '--start-delay 400');
    const requested = msg('forced update requested');
    run.signal('SIGHUP');
    await run.waitFor(msg('child started', { child: 'child-2' }), 'the first forced update to run');
    run.signal('SIGHUP');
    await run.waitFor(requested, 'the second SIGHUP to be handled', 5_000, 2);
    run.signal('SIGHUP');
    await run.waitFor(requested, 'the third SIGHUP to be handled', 5_000, 3);
    assert.equal(
      run.matching(msg('update complete')).length,
      1,
      'both arrived while child-2 was starting',
    );
    const followUp = await run.waitFor(
      msg('update complete', { child: 'child-3' }),
      'one follow-up',
    );
    // A sentinel: any further update would have started before liveroll reads this signal.
    run.signal('SIGHUP');
    const sentinel = await run.waitFor(requested, 'the sentinel SIGHUP', 5_000, 4);
    const between = run.lines.slice(run.lines.indexOf(followUp), run.lines.indexOf(sentinel));
    assert.equal(between.filter((l) => l.msg === 'update started').length, 0, 'no third update');
    const started = run.lines
      .slice(0, run.lines.indexOf(sentinel))
      .filter(msg('update started'))
      .map((l) => (l.reasons as string[]).join());
    assert.deepEqual(started, ['start', 'sighup', 'sighup']);
  },
);

test(
  'a roll closes WebSocket tunnels to the old child with 1001, between frames, without waiting for the drain deadline',
  TIMEOUT,
  async (t) => {
    const { run } = await start(t, ['--drain-timeout', '30s']);
    const ws = new WebSocket(`ws://127.0.0.1:${run.port}/`);
    t.after(() => ws.terminate());
    const errors: string[] = [];
    ws.on('error', (err) => errors.push(String(err)));
    const greeting = await new Promise<string>((resolve) =>
      ws.once('message', (data: Buffer) => resolve(data.toString('utf8'))),
    );
    assert.equal((JSON.parse(greeting) as { name: string }).name, 'v1');
    // Echoes of every size in flight while the roll happens: a Close put inside one of them
    // would be a protocol error on the client.
    let echoed = 0;
    const sizes = [1, 125, 126, 65_535, 65_536, 300_000];
    const send = (): void => {
      if (ws.readyState === WebSocket.OPEN)
        ws.send(Buffer.alloc(sizes[echoed % sizes.length] ?? 1, 7));
    };
    ws.on('message', () => {
      echoed++;
      send();
    });
    for (let i = 0; i < 4; i++) send();
    await until(() => echoed >= 50, 'echoes through the tunnel');
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
    run.signal('SIGHUP');
    const { code, reason } = await closed;
    assert.equal(code, 1001);
    assert.equal(reason, 'server going away');
    assert.deepEqual(errors, [], 'no protocol error: the Close came between frames');
    await run.waitFor(msg('update complete'), 'the roll', 20_000, 2);
    assert.equal(run.matching(msg('in-flight requests outlived the drain timeout')).length, 0);
    // A new WebSocket reaches the new child.
    const again = new WebSocket(`ws://127.0.0.1:${run.port}/`);
    t.after(() => again.terminate());
    const hello = await new Promise<string>((resolve, reject) => {
      again.once('message', (data: Buffer) => resolve(data.toString('utf8')));
      again.once('error', reject);
    });
    assert.equal((JSON.parse(hello) as { name: string }).name, 'v1');
  },
);
