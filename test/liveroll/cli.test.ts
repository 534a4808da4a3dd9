/**
 * The real CLI refusing to start: bad flags exit 2 before anything runs, failed start-ups exit
 * 1 quickly and leave nothing behind, --help and --version work.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  JsonProcess,
  appCommand,
  baseFlags,
  CLI,
  fetchOnce,
  groupMembers,
  jsonOf,
  msg,
  processGone,
  startApp,
  startLiveroll,
  tempDir,
  until,
  ROOT,
} from '../support/liveroll-harness.js';

const TIMEOUT = { timeout: 30_000 };

test(
  'bad flags: a clear message with a stable code, exit 2, and nothing started',
  TIMEOUT,
  async (t) => {
    const dir = tempDir(t);
    const marker = join(dir, 'ran');
    const commands = [
      '--pull',
      `touch ${marker}`,
      '--id',
      `touch ${marker}`,
      '--exec',
      `touch ${marker}`,
    ];
    const cases: [string[], RegExp][] = [
      [['--bogus'], /unknown flag --bogus \[ERR_LIVEROLL_USAGE\]/],
      [
        ['--interval', '10'],
        /--interval: invalid duration "10".*\[ERR_LIVEROLL_INVALID_DURATION\]/,
      ],
      [['--health-timeout=5x'], /--health-timeout: invalid duration "5x".*unknown unit "x"/],
      [['--port', '65536'], /--port: "65536" is not a port.*\[ERR_LIVEROLL_INVALID_PORT\]/],
      [['--child-port2', 'abc'], /--child-port2: "abc" is not a port/],
    ];
    for (const [flags, message] of cases) {
      const run = new JsonProcess(t, [
        CLI,
        ...commands,
        '--coordination-dir',
        join(dir, 'coord'),
        ...flags,
      ]);
      const { code } = await run.waitExit();
      assert.equal(code, 2, flags.join(' '));
      assert.match(run.stderr, message);
      assert.match(run.stderr, /liveroll --help/);
    }
    const missing = new JsonProcess(t, [CLI, '--id', 'echo 1']);
    assert.equal((await missing.waitExit()).code, 2);
    assert.match(missing.stderr, /--exec is required \[ERR_LIVEROLL_MISSING_COMMAND\]/);
    assert.equal(existsSync(marker), false, 'no command ran');
    assert.equal(
      existsSync(join(dir, 'coord')),
      false,
      'the coordination directory was not touched',
    );
  },
);

test(
  '--help lists every flag with its default; --version prints the package version',
  TIMEOUT,
  async (t) => {
    const help = new JsonProcess(t, [CLI, '--help']);
    assert.equal((await help.waitExit()).code, 0);
    const text = help.lines.map((l) => String(l.msg)).join('\n');
    for (const flag of [
      '--pull',
      '--id',
      '--exec',
      '--interval',
      '--healthcheck',
      '--health-timeout',
      '--port',
      '--child-port1',
      '--child-port2',
      '--coordination-dir',
      '--instance-id',
      '--command-timeout',
      '--drain-timeout',
      '--stop-timeout',
      '--log-level',
      '--help',
      '--version',
    ]) {
      assert.ok(text.includes(`  ${flag}`), flag);
    }
    assert.match(text, /\(default: \/healthz\)/);
    assert.match(text, /\(default: 1m0s\)/);
    const version = new JsonProcess(t, [CLI, '--version']);
    assert.equal((await version.waitExit()).code, 0);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.equal(version.lines[0]?.msg, `liveroll (tableroll) ${pkg.version}`);
  },
);

test('a failing --id: exit 1, no child started', TIMEOUT, async (t) => {
  const dir = tempDir(t);
  const run = await startLiveroll(
    t,
    [...baseFlags(dir), '--id', 'echo oops >&2; exit 3', '--exec', appCommand()],
    false,
  );
  assert.equal((await run.waitExit()).code, 1);
  const fatal = run.matching(msg('start-up failed'))[0];
  assert.match(
    String(fatal?.err),
    /ERR_LIVEROLL_COMMAND_FAILED: --id failed with exit status 3: oops/,
  );
  assert.equal(run.matching(msg('child started')).length, 0);
  assert.ok(
    run.matching(msg('oops', { stream: 'stderr', command: 'id' })).length === 1,
    'stderr is logged',
  );
});

test('a hung --pull is killed with its process group at --command-timeout', TIMEOUT, async (t) => {
  const dir = tempDir(t);
  const pidFile = join(dir, 'pull.pid');
  const run = await startLiveroll(
    t,
    [
      ...baseFlags(dir),
      '--pull',
      `echo $$ > ${pidFile}; sleep 60 & wait`,
      '--command-timeout',
      '300ms',
      '--id',
      'echo v1',
      '--exec',
      appCommand(),
    ],
    false,
  );
  const started = Date.now();
  assert.equal((await run.waitExit()).code, 1);
  assert.ok(Date.now() - started < 5_000);
  assert.match(
    String(run.matching(msg('start-up failed'))[0]?.err),
    /ERR_LIVEROLL_COMMAND_TIMEOUT/,
  );
  const pgid = Number(readFileSync(pidFile, 'utf8'));
  await until(() => processGone(pgid), 'the pull shell to be gone', 5_000);
  await until(
    () => groupMembers(pgid).length === 0,
    'the background sleep to be killed too',
    5_000,
  );
});

test(
  'a child that exits before it is healthy fails the start-up at once, not at --health-timeout',
  TIMEOUT,
  async (t) => {
    const dir = tempDir(t);
    const run = await startLiveroll(
      t,
      [
        ...baseFlags(dir),
        '--health-timeout',
        '25s',
        '--id',
        'echo v1',
        '--exec',
        'echo starting; exit 3',
      ],
      false,
    );
    const started = Date.now();
    assert.equal((await run.waitExit(10_000)).code, 1);
    assert.ok(Date.now() - started < 5_000, 'probing stopped when the child exited');
    assert.match(String(run.matching(msg('start-up failed'))[0]?.err), /ERR_LIVEROLL_CHILD_EXITED/);
    assert.equal(
      run.matching(msg('starting', { stream: 'stdout' })).length,
      1,
      "the child's output is attributed to it",
    );
  },
);

test(
  'a port someone else listens on is passed over: the impostor never gets traffic',
  TIMEOUT,
  async (t) => {
    const dir = tempDir(t);
    const impostor = await startApp(t, ['--name', 'impostor']);
    const run = await startLiveroll(t, [
      ...baseFlags(dir),
      '--child-port1',
      String(impostor.port),
      '--child-port2',
      '0',
      '--id',
      'echo v1',
      '--exec',
      appCommand('--name real'),
    ]);
    const passed = run.matching(msg('child port passed over'))[0];
    assert.match(
      JSON.stringify(passed?.skipped),
      new RegExp(`port ${impostor.port} is not free \\(EADDRINUSE\\)`),
    );
    for (let i = 0; i < 3; i++) assert.equal(jsonOf(await fetchOnce(run.port, '/')).name, 'real');
    run.signal('SIGTERM');
    assert.equal((await run.waitExit()).code, 0);
    assert.equal(
      jsonOf(await fetchOnce(impostor.port, '/')).name,
      'impostor',
      'the impostor was left alone',
    );
  },
);

test(
  'both child ports held by others: exit 1 with ERR_LIVEROLL_NO_FREE_PORT',
  TIMEOUT,
  async (t) => {
    const dir = tempDir(t);
    const holders = [createServer(), createServer()];
    for (const h of holders) {
      h.listen(0, '127.0.0.1');
      await once(h, 'listening');
      t.after(() => h.close());
    }
    const [p1, p2] = holders.map((h) => (h.address() as AddressInfo).port);
    const run = await startLiveroll(
      t,
      [
        ...baseFlags(dir),
        '--child-port1',
        String(p1),
        '--child-port2',
        String(p2),
        '--id',
        'echo v1',
        '--exec',
        appCommand(),
      ],
      false,
    );
    assert.equal((await run.waitExit()).code, 1);
    assert.match(String(run.matching(msg('start-up failed'))[0]?.err), /ERR_LIVEROLL_NO_FREE_PORT/);
    assert.equal(run.matching(msg('child started')).length, 0);
  },
);

test(
  'the public port taken by another program: exit 1 with ERR_LIVEROLL_LISTEN_FAILED',
  TIMEOUT,
  async (t) => {
    const dir = tempDir(t);
    const holder = createServer().listen(0);
    await once(holder, 'listening');
    t.after(() => holder.close());
    const port = (holder.address() as AddressInfo).port;
    const flags = baseFlags(dir).filter((f, i, all) => f !== '--port' && all[i - 1] !== '--port');
    const run = await startLiveroll(
      t,
      [...flags, '--port', String(port), '--id', 'echo v1', '--exec', appCommand()],
      false,
    );
    assert.equal((await run.waitExit()).code, 1);
    assert.match(
      String(run.matching(msg('start-up failed'))[0]?.err),
      /ERR_LIVEROLL_LISTEN_FAILED.*EADDRINUSE/,
    );
    assert.equal(run.matching(msg('child started')).length, 0, 'no child before the port is ours');
  },
);

test('--log-format pretty: readable lines, not JSON', TIMEOUT, async (t) => {
  const dir = tempDir(t);
  const flags = baseFlags(dir).filter((f) => f !== 'json');
  const run = await startLiveroll(
    t,
    [
      ...flags.slice(0, flags.indexOf('--log-format')),
      ...flags.slice(flags.indexOf('--log-format') + 1),
      '--log-format',
      'pretty',
      '--id',
      'exit 3',
      '--exec',
      appCommand(),
    ],
    false,
  );
  assert.equal((await run.waitExit()).code, 1);
  const text = run.lines.map((l) => String(l.msg)).join('\n');
  assert.ok(
    run.lines.every((l) => l.unparsed === true),
    'no JSON line',
  );
  assert.match(text, /INFO.*liveroll starting/);
  assert.match(text, /FATAL.*start-up failed/);
});

test(
  "children and commands do not see systemd's variables for liveroll (NOTIFY_SOCKET...)",
  TIMEOUT,
  async (t) => {
    const dir = tempDir(t);
    const show =
      'echo "notify=${NOTIFY_SOCKET:-none} listen=${LISTEN_FDS:-none} kept=${KEEP_ME:-none}"';
    const run = await startLiveroll(
      t,
      [...baseFlags(dir), '--id', `${show} >&2; echo v1`, '--exec', `${show}; ${appCommand()}`],
      true,
      {
        ...process.env,
        NOTIFY_SOCKET: join(dir, 'no-such-socket'),
        LISTEN_FDS: '0',
        KEEP_ME: 'yes',
      },
    );
    const seen = run.lines.filter((l) => String(l.msg).startsWith('notify='));
    assert.deepEqual(
      seen.map((l) => [l.command ?? l.child, l.msg]),
      [
        ['id', 'notify=none listen=none kept=yes'],
        ['child-1', 'notify=none listen=none kept=yes'],
      ],
    );
    run.signal('SIGTERM');
    assert.equal((await run.waitExit()).code, 0);
  },
);
