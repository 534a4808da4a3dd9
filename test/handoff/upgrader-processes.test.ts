/**
 * Handoffs between separate processes (test/fixtures/upgrader-process.ts), with real signals:
 * chains, hundreds of listeners, deaths at each side, hung and concurrent newcomers, garbage.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { native } from '../../src/native.js';
import { startLoad } from '../../scripts/http-load.js';
import {
  Child,
  ROOT,
  httpGet,
  startCommand,
  startFixture,
  tempDir,
  until,
  type Line,
} from '../support/helpers.js';

const FIXTURE = 'upgrader-process.js';

function start(t: TestContext, dir: string, id: string, ...args: string[]): Child {
  return startFixture(t, FIXTURE, ['--dir', dir, '--id', id, ...args]);
}

/** The port a fixture printed for listener `id`. */
async function portOf(child: Child, id = 'web'): Promise<number> {
  const line = await child.line((l: Line) => l.event === 'listening' && l.id === id);
  return (line.address as { port: number }).port;
}

const pidBody = (child: Child): string => `hello from ${child.pid}`;

describe('handoffs between processes', () => {
  it('passes TCP and unix listeners down a chain of 10 processes under load with no failure', async (t) => {
    const dir = tempDir(t);
    const socketPath = path.join(dir, 'web.sock');
    const listen = ['--tcp', 'web', '--unix', `unix=${socketPath}`];
    let current = start(t, dir, 'p0', ...listen);
    const port = await portOf(current);
    await current.line('ready');
    const tcpLoad = startLoad(
      { host: '127.0.0.1', port },
      { keepAliveClients: 2, freshClients: 2, maxMs: 60_000 },
    );
    const unixLoad = startLoad(
      { socketPath },
      { keepAliveClients: 1, freshClients: 1, maxMs: 60_000 },
    );
    for (let i = 1; i < 10; i++) {
      const next = start(t, dir, `p${i}`, ...listen);
      assert.equal(await portOf(next), port);
      await next.line('ready');
      assert.deepEqual(await current.exited, { code: 0, signal: null });
      current = next;
    }
    const [tcp, unix] = await Promise.all([tcpLoad.stop(), unixLoad.stop()]);
    assert.deepEqual(
      [tcp.failed, unix.failed],
      [0, 0],
      JSON.stringify([tcp.reasons, unix.reasons]),
    );
    assert.ok(tcp.ok > 20 && unix.ok > 10, `served ${tcp.ok} TCP and ${unix.ok} unix requests`);
    assert.ok(fs.statSync(socketPath).isSocket());
    assert.equal((await httpGet({ port, host: '127.0.0.1' })).body.trim(), pidBody(current));
    assert.equal((await httpGet({ socketPath })).body.trim(), pidBody(current));
    assert.equal(fs.readFileSync(path.join(dir, 'pid'), 'utf8'), 'p9');
  });

  it('hands over 500 listeners', async (t) => {
    const dir = tempDir(t);
    const first = start(t, dir, 'a', '--listeners', '500');
    await first.line('ready');
    const second = start(t, dir, 'b', '--listeners', '500');
    const created = await second.line('created');
    assert.equal((created.inherited as unknown[]).length, 500);
    await second.line('ready');
    assert.equal((await first.exited).code, 0);
  });

  it('regression: a newcomer that misses its deadline stops serving and exits, and a late ready() is refused', async (t) => {
    const dir = tempDir(t);
    const owner = start(t, dir, 'a', '--tcp', 'web');
    const port = await portOf(owner);
    await owner.line('ready');
    const late = start(
      t,
      dir,
      'b',
      '--tcp',
      'web',
      '--ready',
      'stdin',
      '--timeout',
      '300',
      '--linger',
    );
    assert.equal(await portOf(late), port, 'the newcomer serves on the inherited socket');
    const failed = await late.line('upgrade-failed');
    assert.equal(failed.code, 'ERR_TABLEROLL_TIMEOUT');
    assert.equal((await late.line('complete')).reason, 'failed');
    late.send('fds');
    const fds = await late.line('fds');
    assert.equal(fds.state, 'stopped', 'the failed newcomer is no longer an upgrader in waiting');
    late.send('ready');
    const refused = await late.line('ready-failed');
    assert.equal(refused.code, 'ERR_TABLEROLL_TIMEOUT', 'ready() after the deadline is refused');
    // The owner still owns the port, and a next version takes over from it, not from b.
    assert.equal(fs.readFileSync(path.join(dir, 'pid'), 'utf8'), 'a');
    const next = start(t, dir, 'c', '--tcp', 'web');
    await next.line('ready');
    assert.deepEqual(await owner.exited, { code: 0, signal: null });
    assert.equal(fs.readFileSync(path.join(dir, 'pid'), 'utf8'), 'c');
  });

  it('regression: a newcomer that misses its deadline exits after draining, when it lets upgradeComplete() decide', async (t) => {
    const dir = tempDir(t);
    const owner = start(t, dir, 'a', '--tcp', 'web');
    const port = await portOf(owner);
    await owner.line('ready');
    const late = start(t, dir, 'b', '--tcp', 'web', '--ready', 'stdin', '--timeout', '300');
    await late.line('listening');
    assert.equal((await late.line('complete')).reason, 'failed');
    assert.deepEqual(await late.exited, { code: 0, signal: null });
    for (let i = 0; i < 20; i++) {
      assert.equal((await httpGet({ port, host: '127.0.0.1' })).body.trim(), pidBody(owner));
    }
  });

  it('regression: an owner at its descriptor limit neither spins nor crashes, and hands over once it has room', async (t) => {
    const dir = tempDir(t);
    const fixture = path.join(ROOT, 'dist/test/fixtures', FIXTURE);
    const owner = startCommand(t, 'sh', [
      '-c',
      `ulimit -n 200 && exec '${process.execPath}' '${fixture}' --dir '${dir}' --id a --tcp web`,
    ]);
    const port = await portOf(owner);
    await owner.line('ready');
    owner.send('fill');
    assert.equal((await owner.line('fill')).code, 'EMFILE');
    const newcomer = start(t, dir, 'b', '--tcp', 'web', '--timeout', '20000');
    // The newcomer's request waits in the queue while the owner cannot accept it. Sampled over
    // a second: an owner that retried accept() at once would use all of it.
    await until(() => fs.existsSync(path.join(dir, 'b.sock')), "the newcomer's socket");
    const cpu = (): number => {
      const fields = fs.readFileSync(`/proc/${owner.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return (Number(fields[11]) + Number(fields[12])) * 10; // utime + stime, in ms at 100 Hz
    };
    const [cpuBefore, wallBefore] = [cpu(), Date.now()];
    await until(() => Date.now() - wallBefore >= 1_000, 'a second of sampling');
    const used = cpu() - cpuBefore;
    assert.ok(used < 500, `the owner used ${used} ms of CPU in ${Date.now() - wallBefore} ms`);
    assert.equal(owner.proc.exitCode, null, 'the owner is alive');
    // (Its HTTP server cannot accept either meanwhile: Node resets those connections.)
    owner.send('unfill');
    await owner.line('unfill');
    await newcomer.line('ready');
    assert.deepEqual(await owner.exited, { code: 0, signal: null });
    assert.equal((await httpGet({ port, host: '127.0.0.1' })).body.trim(), pidBody(newcomer));
  });

  it('survives a newcomer SIGKILLed before ready: the owner keeps serving, the next upgrade works', async (t) => {
    const dir = tempDir(t);
    const owner = start(t, dir, 'a', '--tcp', 'web');
    const port = await portOf(owner);
    await owner.line('ready');
    const doomed = start(t, dir, 'b', '--tcp', 'web', '--ready', 'stdin');
    await doomed.line('listening');
    await doomed.kill('SIGKILL');
    const failed = await owner.line('upgrade-failed');
    assert.equal(failed.code, 'ERR_TABLEROLL_HANDOFF_FAILED');
    assert.equal((await httpGet({ port, host: '127.0.0.1' })).body.trim(), pidBody(owner));
    const next = start(t, dir, 'c', '--tcp', 'web');
    await next.line('ready');
    await owner.exited;
    assert.equal((await httpGet({ port, host: '127.0.0.1' })).body.trim(), pidBody(next));
  });

  it('survives the owner SIGKILLed mid-handoff: the newcomer takes over, the next upgrade works', async (t) => {
    const dir = tempDir(t);
    const owner = start(t, dir, 'a', '--tcp', 'web');
    const port = await portOf(owner);
    await owner.line('ready');
    const newcomer = start(t, dir, 'b', '--tcp', 'web', '--ready', 'stdin');
    assert.equal(await portOf(newcomer), port);
    await owner.kill('SIGKILL');
    newcomer.send('ready');
    await newcomer.line('ready');
    assert.equal((await httpGet({ port, host: '127.0.0.1' })).body.trim(), pidBody(newcomer));
    assert.equal(fs.readFileSync(path.join(dir, 'pid'), 'utf8'), 'b');
    const next = start(t, dir, 'c', '--tcp', 'web');
    await next.line('ready');
    await newcomer.exited;
  });

  it('times out a hung newcomer promptly and hands over to the next one', async (t) => {
    const dir = tempDir(t);
    const owner = start(t, dir, 'a', '--tcp', 'web', '--timeout', '500');
    const port = await portOf(owner);
    await owner.line('ready');
    const hung = start(t, dir, 'b', '--tcp', 'web', '--ready', 'stdin', '--linger');
    await hung.line('created');
    const failed = await owner.line('upgrade-failed');
    assert.equal(failed.code, 'ERR_TABLEROLL_TIMEOUT');
    // The hung newcomer let go of the lock when the owner hung up on it.
    assert.equal((await hung.line('upgrade-failed')).code, 'ERR_TABLEROLL_HANDOFF_FAILED');
    const next = start(t, dir, 'c', '--tcp', 'web');
    assert.equal(await portOf(next), port);
    await next.line('ready');
    await owner.exited;
    hung.send('ready');
    assert.equal((await hung.line('ready-failed')).code, 'ERR_TABLEROLL_HANDOFF_FAILED');
  });

  it('chains two newcomers started at once', async (t) => {
    const dir = tempDir(t);
    const owner = start(t, dir, 'a', '--tcp', 'web');
    const port = await portOf(owner);
    await owner.line('ready');
    const b = start(t, dir, 'b', '--tcp', 'web');
    const c = start(t, dir, 'c', '--tcp', 'web');
    await Promise.all([b.line('ready'), c.line('ready')]);
    await owner.exited;
    const last = fs.readFileSync(path.join(dir, 'pid'), 'utf8');
    const [winner, middle] = last === 'c' ? [c, b] : [b, c];
    assert.equal((await middle.exited).code, 0, 'the middle one handed over and exited');
    assert.ok(winner.alive);
    assert.equal((await httpGet({ port, host: '127.0.0.1' })).body.trim(), pidBody(winner));
  });

  it('restarts an id after a crash: its stale socket and the pid file naming it', async (t) => {
    const dir = tempDir(t);
    const crashed = start(t, dir, 'a', '--tcp', 'web');
    await crashed.line('ready');
    await crashed.kill('SIGKILL');
    assert.ok(fs.existsSync(path.join(dir, 'a.sock')), 'the crash left its socket');
    const again = start(t, dir, 'a', '--tcp', 'web');
    await again.line('ready');
    const created = again.lines.find((l) => l.event === 'created')!;
    assert.deepEqual(created.inherited, []);
    const fresh = await portOf(again);
    assert.equal((await httpGet({ port: fresh, host: '127.0.0.1' })).body.trim(), pidBody(again));
  });

  it('keeps owning after garbage on its upgrade socket, leaks nothing, serves the next upgrade', async (t) => {
    const dir = tempDir(t);
    const owner = start(t, dir, 'a', '--tcp', 'web', '--conn-and-file');
    const port = await portOf(owner);
    await owner.line('ready');
    owner.send('fdcount');
    const before = (await owner.line('fdcount')).count;
    for (const garbage of ['GET / HTTP/1.1\r\n\r\n', '\x00\x00\x00\x05', '\xff'.repeat(100)]) {
      const from = owner.lines.length;
      const fd = native.unixConnect(path.join(dir, 'a.sock'));
      await until(() => native.send(fd, Buffer.from(garbage, 'latin1'), -1) > 0, 'the write');
      const failed = await owner.line('upgrade-failed', 10_000, from);
      assert.equal(failed.code, 'ERR_TABLEROLL_PROTOCOL');
      native.close(fd);
    }
    const from = owner.lines.length;
    owner.send('fdcount');
    assert.equal((await owner.line('fdcount', 5_000, from)).count, before);
    assert.equal((await httpGet({ port, host: '127.0.0.1' })).body.trim(), pidBody(owner));
    const next = start(t, dir, 'b', '--tcp', 'web', '--conn-and-file');
    const created = await next.line('created');
    assert.deepEqual(
      (created.inherited as { id: string }[]).map((e) => e.id),
      ['web', 'f1', 'c1'],
    );
    await next.line('ready');
    assert.equal((await owner.exited).code, 0);
    next.send('children');
    const children = await next.line('children');
    // Beyond stdio, a child process sees no socket of ours (the listener, the conn).
    const sockets = Object.values(children.fds as Record<string, string>).filter((to) =>
      to.startsWith('socket:'),
    );
    assert.deepEqual(sockets, [], JSON.stringify(children.fds));
  });
});

describe('process lifetime', () => {
  it('keeps an owner alive with no server of its own, and lets it exit once it handed over', async (t) => {
    const dir = tempDir(t);
    // No server, no timer: only the Upgrader can keep this process alive.
    const script = `
      import { Upgrader } from 'tableroll';
      const upg = await Upgrader.create(${JSON.stringify(dir)}, 'bare');
      await upg.fds.listen('web', { host: '127.0.0.1', port: 0 });
      await upg.ready();
      console.log(JSON.stringify({ event: 'owner' }));
      upg.on('upgrade-completed', () => console.log(JSON.stringify({ event: 'completed' })));`;
    const bare = new Child(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT });
    t.after(() => bare.kill());
    await bare.line('owner');
    const next = start(t, dir, 'next', '--tcp', 'web');
    const created = await next.line('created');
    assert.equal((created.inherited as unknown[]).length, 1, 'the bare owner was still there');
    await next.line('ready');
    await bare.line('completed');
    assert.deepEqual(await bare.exited, { code: 0, signal: null });
  });
});
