/**
 * Go duration syntax, the flag parser and the systemd defaults, in-process (pure functions).
 * The CLI's own handling of bad flags (message, exit status, nothing started) is in
 * liveroll-cli.test.ts.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseCommandLine, type ParsedCommandLine } from '../../src/liveroll/argv.js';
import { formatDuration, parseDuration, MAX_DURATION_MS } from '../../src/liveroll/duration.js';
import { LiverollErrorCodes } from '../../src/liveroll/errors.js';
import { defaultOptions, expandExec, type LiverollOptions } from '../../src/liveroll/options.js';
import { defaultCoordinationDir, unitFromCgroup } from '../../src/liveroll/systemd.js';

const context = { env: {}, isTTY: false };
const required = ['--id', 'echo v1', '--exec', 'run <<PORT>>'];

function options(argv: string[]): LiverollOptions {
  const parsed: ParsedCommandLine = parseCommandLine([...required, ...argv], context);
  assert.equal(parsed.action, 'run');
  return (parsed as { options: LiverollOptions }).options;
}

function refused(argv: string[], code: string, message: RegExp): void {
  assert.throws(
    () => parseCommandLine(argv, context),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, code);
      assert.match(err.message, message);
      return true;
    },
  );
}

test('Go durations parse to milliseconds', () => {
  const cases: [string, number][] = [
    ['0', 0],
    ['10s', 10_000],
    ['1m30s', 90_000],
    ['1.5h', 5_400_000],
    ['250ms', 250],
    ['500us', 0.5],
    ['500\u00b5s', 0.5],
    ['1000ns', 0.001],
    ['.5s', 500],
    ['1h2m3s4ms', 3_723_004],
    ['+2s', 2000],
  ];
  for (const [text, ms] of cases) assert.equal(parseDuration(text), ms, text);
});

test('malformed, negative and too long durations are refused with a stable code', () => {
  for (const text of ['', '10', 's', '1x', '1.2.3s', '-1s', '10 s', '1s2', '.s', '25d', '600h']) {
    assert.throws(() => parseDuration(text), { code: LiverollErrorCodes.INVALID_DURATION }, text);
  }
});

test('formatDuration prints what Go prints, and parses back', () => {
  assert.equal(formatDuration(0), '0s');
  assert.equal(formatDuration(90_000), '1m30s');
  assert.equal(formatDuration(3_600_000), '1h0m0s');
  assert.equal(formatDuration(1500), '1.5s');
  assert.equal(formatDuration(250), '250ms');
  fc.assert(
    fc.property(fc.integer({ min: 0, max: MAX_DURATION_MS }), (ms) => {
      assert.equal(parseDuration(formatDuration(ms)), ms);
    }),
  );
});

test('defaults are the documented ones; --flag value and --flag=value both work', () => {
  const o = options([]);
  assert.equal(o.intervalMs, 60_000);
  assert.equal(o.healthPath, '/healthz');
  assert.equal(o.healthTimeoutMs, defaultOptions.healthTimeoutMs);
  assert.equal(o.port, 8080);
  assert.deepEqual(o.childPorts, [9101, 9102]);
  assert.equal(o.logFormat, 'json');
  const p = options([
    '--interval',
    '10s',
    '--port=0',
    '--child-port1=0',
    '--child-port2',
    '0',
    '--healthcheck=/up',
  ]);
  assert.equal(p.intervalMs, 10_000);
  assert.equal(p.port, 0);
  assert.deepEqual(p.childPorts, [0, 0]);
  assert.equal(p.healthPath, '/up');
  assert.equal(options(['--interval=1m', '--interval=2s']).intervalMs, 2000, 'the last one wins');
  assert.equal(options(['--trust-forward-headers']).trustForwardHeaders, true);
  assert.equal(options([]).fastLane, true, 'the fast lane is on by default');
  assert.equal(options(['--fast-lane=false']).fastLane, false);
  assert.equal(options([]).nativeLane, true, 'the native lane is on by default');
  assert.equal(options(['--native-lane=false']).nativeLane, false);
  assert.equal(options(['--exec', '--weird']).exec, '--weird', 'a value may start with dashes');
});

test('bad flags are refused with a stable code and a message naming the flag', () => {
  refused([...required, '--bogus'], LiverollErrorCodes.USAGE, /unknown flag --bogus/);
  refused([...required, '--Interval', '10s'], LiverollErrorCodes.USAGE, /unknown flag --Interval/);
  refused([...required, 'stray'], LiverollErrorCodes.USAGE, /unexpected argument "stray"/);
  refused([...required, '--port'], LiverollErrorCodes.USAGE, /--port needs a value/);
  refused([...required, '--interval', '10'], LiverollErrorCodes.INVALID_DURATION, /--interval/);
  refused([...required, '--port', '70000'], LiverollErrorCodes.INVALID_PORT, /--port/);
  refused([...required, '--child-port1', '-1'], LiverollErrorCodes.INVALID_PORT, /--child-port1/);
  refused(
    [...required, '--child-port1', '9000', '--child-port2', '9000'],
    LiverollErrorCodes.INVALID_PORT,
    /both 9000/,
  );
  refused([...required, '--port', '9101'], LiverollErrorCodes.INVALID_PORT, /also a child port/);
  refused(['--id', 'x'], LiverollErrorCodes.MISSING_COMMAND, /--exec is required/);
  refused(['--exec', 'x', '--id', '  '], LiverollErrorCodes.MISSING_COMMAND, /--id is required/);
  refused(
    [...required, '--healthcheck', 'healthz'],
    LiverollErrorCodes.INVALID_OPTION,
    /must start with "\/"/,
  );
  refused(
    [...required, '--health-timeout', '0'],
    LiverollErrorCodes.INVALID_OPTION,
    /--health-timeout/,
  );
  refused([...required, '--log-level', 'loud'], LiverollErrorCodes.INVALID_OPTION, /--log-level/);
  refused(
    [...required, '--restart-backoff', '2s', '--restart-backoff-max', '1s'],
    LiverollErrorCodes.INVALID_OPTION,
    /backoff/,
  );
});

test('--help and --version win over missing commands', () => {
  assert.deepEqual(parseCommandLine(['--help'], context), { action: 'help' });
  assert.deepEqual(parseCommandLine(['-h'], context), { action: 'help' });
  assert.deepEqual(parseCommandLine(['--version'], context), { action: 'version' });
});

test('template variables are substituted everywhere in --exec', () => {
  assert.equal(
    expandExec('app --port <<PORT>> --check <<HEALTHCHECK>> --again <<PORT>>', 9101, '/healthz'),
    'app --port 9101 --check /healthz --again 9101',
  );
});

test('regression: <<HEALTHCHECK>> reaches the shell as one word, never as shell syntax', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tr-hc-'));
  try {
    const marker = path.join(dir, 'ran');
    for (const health of [
      `/h;touch ${marker}`,
      `/$(touch ${marker})`,
      `/\`touch ${marker}\``,
      "/it's",
      '/a b?x=1&y=2',
      '/*',
    ]) {
      const command = expandExec("printf '%s' <<HEALTHCHECK>>", 0, health);
      const printed = execFileSync('sh', ['-c', command], { cwd: dir, encoding: 'utf8' });
      assert.equal(printed, health, command);
      assert.equal(existsSync(marker), false, `${command} ran a command`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('under systemd: the runtime directory and the template instance are the defaults', () => {
  assert.equal(
    defaultCoordinationDir(8080, { RUNTIME_DIRECTORY: '/run/app:/run/other' }),
    '/run/app',
  );
  assert.equal(
    defaultCoordinationDir(8080, { XDG_RUNTIME_DIR: '/run/user/1000' }),
    '/run/user/1000/liveroll-8080',
  );
  const fallback = defaultCoordinationDir(8080, {});
  assert.ok(
    !fallback.startsWith(tmpdir()),
    `${fallback} is not a fixed name in the shared temp directory`,
  );
  assert.equal(path.basename(fallback), 'liveroll-8080');
  assert.equal(
    unitFromCgroup('0::/system.slice/system-app.slice/app@2.service\n'),
    'app@2.service',
  );
  assert.equal(
    unitFromCgroup('1:name=systemd:/system.slice/app@3.service\n0::/\n'),
    'app@3.service',
  );
  assert.equal(unitFromCgroup('0::/user.slice/user-1000.slice/session-2.scope\n'), undefined);
  const parsed = parseCommandLine(required, {
    env: { RUNTIME_DIRECTORY: '/run/app', INVOCATION_ID: '' },
    isTTY: true,
  });
  assert.equal(parsed.action, 'run');
  const o = (parsed as { options: LiverollOptions }).options;
  assert.equal(o.coordinationDir, '/run/app');
  assert.equal(o.instanceId, `pid-${process.pid}`, 'no INVOCATION_ID: not a systemd service');
  assert.equal(o.logFormat, 'pretty', 'a terminal gets the readable format');
});

test('every liveroll error code is listed here, so adding one is deliberate', () => {
  assert.deepEqual(Object.values(LiverollErrorCodes).sort(), [
    'ERR_LIVEROLL_ABORTED',
    'ERR_LIVEROLL_BAD_ID',
    'ERR_LIVEROLL_CHILD_EXITED',
    'ERR_LIVEROLL_COMMAND_FAILED',
    'ERR_LIVEROLL_COMMAND_TIMEOUT',
    'ERR_LIVEROLL_HEALTH_TIMEOUT',
    'ERR_LIVEROLL_HTTP_PARSER',
    'ERR_LIVEROLL_INVALID_DURATION',
    'ERR_LIVEROLL_INVALID_OPTION',
    'ERR_LIVEROLL_INVALID_PORT',
    'ERR_LIVEROLL_LISTEN_FAILED',
    'ERR_LIVEROLL_MISSING_COMMAND',
    'ERR_LIVEROLL_NO_FREE_PORT',
    'ERR_LIVEROLL_USAGE',
  ]);
});
