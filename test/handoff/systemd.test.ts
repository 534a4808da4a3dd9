/**
 * systemd integration: sd_notify messages at a real datagram socket (path and abstract), socket
 * activation with fds passed the way systemd passes them, and the example unit files.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { native } from '../../src/native.js';
import {
  Child,
  FIXTURES,
  ROOT,
  httpGet,
  startCommand,
  startFixture,
  tempDir,
  until,
  type Line,
} from '../support/helpers.js';

const RECEIVER = path.join(ROOT, 'test/fixtures/notify_receiver.py');
const PROCESS = 'upgrader-process.js';

/** A notify socket at `address` ('@name' for abstract); its messages are JSON lines. */
async function notifySocket(t: TestContext, address: string): Promise<Child> {
  const receiver = startCommand(t, 'python3', [RECEIVER, address]);
  await receiver.line('bound');
  return receiver;
}

/** The messages `receiver` got from process `pid`, in order. */
function messagesFrom(receiver: Child, pid: number): Record<string, string>[] {
  return receiver.lines
    .filter((line: Line) => line.event === 'message' && line.pid === pid)
    .map((line) => line.fields as Record<string, string>);
}

async function rollOnce(t: TestContext, address: string): Promise<void> {
  const dir = tempDir(t);
  const receiver = await notifySocket(t, address);
  const env = { NOTIFY_SOCKET: address };
  const first = startFixture(t, PROCESS, ['--dir', dir, '--id', 'a', '--tcp', 'web'], env);
  await first.line('ready');
  await until(
    () => messagesFrom(receiver, first.pid).some((m) => m.READY === '1'),
    'READY=1 from the first',
  );
  const second = startFixture(t, PROCESS, ['--dir', dir, '--id', 'b', '--tcp', 'web'], env);
  await second.line('ready');
  await first.exited;
  await until(
    () => messagesFrom(receiver, second.pid).some((m) => m.READY === '1'),
    'READY=1 from the second',
  );
  await until(
    () => messagesFrom(receiver, first.pid).some((m) => m.STOPPING === '1'),
    'STOPPING=1',
  );

  const steps = (pid: number): string[] =>
    messagesFrom(receiver, pid).map((m) =>
      m.READY ? `READY MAINPID=${m.MAINPID}` : m.STOPPING ? 'STOPPING' : `STATUS ${m.STATUS}`,
    );
  assert.deepEqual(steps(first.pid), [
    'STATUS started: 0 descriptor(s), id a',
    `READY MAINPID=${first.pid}`,
    `STATUS handing our descriptors to pid ${second.pid}`,
    'STOPPING',
  ]);
  assert.deepEqual(steps(second.pid), [
    'STATUS started: 1 descriptor(s), id b',
    `READY MAINPID=${second.pid}`,
  ]);
  const ready = messagesFrom(receiver, second.pid)[1]!;
  assert.equal(ready.STATUS, 'serving: 1 descriptor(s), id b');
}

describe('sd_notify', () => {
  it('reports READY, the handoff and STOPPING in order to a path socket', async (t) => {
    await rollOnce(t, path.join(tempDir(t), 'notify.sock'));
  });

  it('reports to an abstract socket', async (t) => {
    await rollOnce(t, `@tableroll-test-${process.pid}-${Date.now()}`);
  });

  it('regression: after a failed handoff the owner reports serving again, not the failure', async (t) => {
    const dir = tempDir(t);
    const receiver = await notifySocket(t, path.join(dir, 'notify.sock'));
    const env = { NOTIFY_SOCKET: path.join(dir, 'notify.sock') };
    const coord = path.join(dir, 'coord');
    const owner = startFixture(t, PROCESS, ['--dir', coord, '--id', 'a', '--tcp', 'web'], env);
    await owner.line('ready');
    const doomed = startFixture(t, PROCESS, ['--dir', coord, '--id', 'b', '--ready', 'stdin']);
    await doomed.line('created');
    await doomed.kill('SIGKILL');
    await owner.line('upgrade-failed');
    const statuses = (): string[] =>
      messagesFrom(receiver, owner.pid)
        .map((m) => m.STATUS)
        .filter((status): status is string => status !== undefined);
    const last = await until(() => {
      const latest = statuses().at(-1);
      return latest?.startsWith('serving:') === true && statuses().length >= 4 ? latest : null;
    }, 'a serving status after the failure');
    assert.match(last, /^serving: 1 descriptor\(s\), id a \(the last handoff failed: .+\)$/);
  });

  it('pings the watchdog at half of WATCHDOG_USEC', async (t) => {
    const dir = tempDir(t);
    const address = path.join(dir, 'notify.sock');
    const receiver = await notifySocket(t, address);
    const env = { NOTIFY_SOCKET: address, WATCHDOG_USEC: '100000' };
    const child = startFixture(t, PROCESS, ['--dir', dir, '--id', 'a'], env);
    await child.line('ready');
    await until(
      () => messagesFrom(receiver, child.pid).filter((m) => m.WATCHDOG === '1').length >= 3,
      'three pings',
    );
  });

  it('stays silent with notify: false', async (t) => {
    const dir = tempDir(t);
    const address = path.join(dir, 'notify.sock');
    const receiver = await notifySocket(t, address);
    const script = `
      import { Upgrader } from 'tableroll';
      const upg = await Upgrader.create(${JSON.stringify(dir)}, 'quiet', { notify: false });
      await upg.ready();
      upg.stop();
      console.log(JSON.stringify({ event: 'done' }));`;
    const quiet = new Child(process.execPath, ['--input-type=module', '-e', script], {
      env: { NOTIFY_SOCKET: address },
      cwd: ROOT,
    });
    await quiet.line('done');
    // A marker from a notifying process proves the receiver was listening all along.
    const loud = startFixture(t, PROCESS, ['--dir', dir, '--id', 'loud'], {
      NOTIFY_SOCKET: address,
    });
    await until(
      () => messagesFrom(receiver, loud.pid).some((m) => m.READY === '1'),
      'READY=1 from the marker',
      30_000,
    );
    assert.deepEqual(messagesFrom(receiver, quiet.pid), []);
  });
});

describe('socket activation', () => {
  it('adopts LISTEN_FDS under their names, and the next instance inherits them', async (t) => {
    const dir = tempDir(t);
    // What systemd does: a bound socket at fd 3, LISTEN_PID naming the service's process.
    const listener = native.inetListen('127.0.0.1', 0, 4, 128, {});
    t.after(() => native.close(listener));
    const port = native.socketInfo(listener)!.port;
    const fixture = path.join(FIXTURES, PROCESS);
    const script = `LISTEN_PID=$$ exec "${process.execPath}" "${fixture}" --dir "${dir}" --id a --tcp web`;
    const activated = new Child('sh', ['-c', script], {
      env: { LISTEN_FDS: '1', LISTEN_FDNAMES: 'web' },
      fd3: listener,
    });
    t.after(() => activated.kill());
    const created = await activated.line('created');
    assert.deepEqual(created.inherited, [
      { kind: 'listener', id: 'web', network: 'tcp', addr: `127.0.0.1:${port}`, inherited: true },
    ]);
    const listening = await activated.line('listening');
    assert.equal(
      (listening.address as { port: number }).port,
      port,
      'served on the activated socket',
    );
    await activated.line('ready');
    assert.equal(
      (await httpGet({ port, host: '127.0.0.1' })).body.trim(),
      `hello from ${activated.pid}`,
    );

    const next = startFixture(t, PROCESS, ['--dir', dir, '--id', 'b', '--tcp', 'web']);
    await next.line('ready');
    await activated.exited;
    assert.equal(
      (await httpGet({ port, host: '127.0.0.1' })).body.trim(),
      `hello from ${next.pid}`,
    );
  });

  it('ignores LISTEN_FDS meant for another process', async (t) => {
    const dir = tempDir(t);
    const child = startFixture(t, PROCESS, ['--dir', dir, '--id', 'a'], {
      LISTEN_FDS: '1',
      LISTEN_PID: '1',
      LISTEN_FDNAMES: 'web',
    });
    assert.deepEqual((await child.line('created')).inherited, []);
  });
});

describe('example unit files', () => {
  const units = fs
    .readdirSync(path.join(ROOT, 'examples/systemd'))
    .filter((f) => /\.(service|socket)$/.test(f));

  it('are all there', () => {
    assert.deepEqual(units.sort(), ['app.socket', 'app@.service', 'liveroll@.service']);
  });

  for (const unit of units) {
    it(`${unit} passes systemd-analyze verify`, (t) => {
      const which = spawnSync('sh', ['-c', 'command -v systemd-analyze']);
      if (which.status !== 0) return t.skip('systemd-analyze is not installed');
      const result = spawnSync(
        'systemd-analyze',
        ['verify', path.join(ROOT, 'examples/systemd', unit)],
        {
          encoding: 'utf8',
        },
      );
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stderr.trim(), '', 'no warnings either');
    });
  }
});
