/**
 * Two or more Upgraders in one process, over real sockets: every handoff path that does not
 * need separate processes.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { ErrorCodes, Upgrader, drainHttpServer, type TablerollError } from 'tableroll';
import { native } from '../../src/native.js';
import { hasCloexec, httpGet, nextEvent, openFdCount, tempDir, until } from '../support/helpers.js';

/** An HTTP server on `handle` answering with `name`, closed after the test. */
async function serve(t: TestContext, handle: { fd: number }, name: string): Promise<http.Server> {
  const server = http.createServer((_req, res) => res.end(name));
  await new Promise<void>((resolve) => server.listen(handle, resolve));
  t.after(() => server.close());
  return server;
}

/** An upgrader stopped after the test. */
async function upgrader(
  t: TestContext,
  dir: string,
  id: string,
  timeoutMs?: number,
): Promise<Upgrader> {
  const upg = await Upgrader.create(dir, id, timeoutMs ? { upgradeTimeoutMs: timeoutMs } : {});
  t.after(() => upg.stop());
  return upg;
}

/** A connected pair of TCP sockets on loopback, destroyed after the test. */
async function tcpPair(t: TestContext): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = nextEvent<net.Socket>(server, 'connection');
  const client = net.connect(portOf(server), '127.0.0.1');
  await nextEvent(client, 'connect');
  const peer = await accepted;
  server.close();
  t.after(() => {
    client.destroy();
    peer.destroy();
  });
  return [client, peer];
}

function portOf(server: net.Server): number {
  return (server.address() as net.AddressInfo).port;
}

function ipv6Available(): boolean {
  try {
    native.close(native.inetListen('::1', 0, 6, 1, {}));
    return true;
  } catch {
    return false;
  }
}

describe('handoff between two upgraders in one process', () => {
  it('hands a TCP listener over while a request is in flight on the old owner', async (t) => {
    const dir = tempDir(t);
    const a = await upgrader(t, dir, 'a');
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let arrived!: () => void;
    const inFlight = new Promise<void>((resolve) => (arrived = resolve));
    const serverA = http.createServer((_req, res) => {
      arrived();
      void held.then(() => res.end('a'));
    });
    const handleA = await a.fds.listen('web', { host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => serverA.listen(handleA, resolve));
    t.after(() => serverA.close());
    await a.ready();
    const port = portOf(serverA);
    const slow = httpGet({ port, host: '127.0.0.1' });
    await inFlight;

    const events: string[] = [];
    a.on('upgrade-started', () => events.push('started'));
    a.on('upgrade-completed', () => events.push('completed'));
    const b = await upgrader(t, dir, 'b');
    assert.deepEqual(b.fds.list(), [
      { kind: 'listener', id: 'web', network: 'tcp', addr: '127.0.0.1:0', inherited: true },
    ]);
    assert.equal(a.state, 'transferring');
    const serverB = await serve(t, await b.fds.listen('web', { host: '127.0.0.1', port: 0 }), 'b');
    assert.equal(portOf(serverB), port, 'the same socket, not a new bind');
    await b.ready();
    assert.equal(await a.upgradeComplete(), 'upgraded');
    assert.deepEqual(events, ['started', 'completed']);
    assert.equal(a.state, 'draining');
    assert.equal(b.state, 'owner');
    assert.equal(fs.readFileSync(path.join(dir, 'pid'), 'utf8'), 'b');

    const drained = drainHttpServer(serverA, { timeoutMs: 5_000 });
    release();
    assert.deepEqual(await slow.then((r) => [r.status, r.body]), [200, 'a']);
    assert.deepEqual(await drained, { forced: false });
    assert.equal((await httpGet({ port, host: '127.0.0.1' })).body, 'b');
  });

  it('hands over an IPv6 listener', async (t) => {
    if (!ipv6Available()) return t.skip('no IPv6 loopback on this machine');
    const dir = tempDir(t);
    const a = await upgrader(t, dir, 'a');
    const serverA = await serve(t, await a.fds.listen('v6', { host: '::1', port: 0 }), 'a');
    await a.ready();
    const b = await upgrader(t, dir, 'b');
    const serverB = await serve(t, await b.fds.listen('v6', { host: '::1', port: 0 }), 'b');
    await b.ready();
    const port = portOf(serverA);
    assert.equal(portOf(serverB), port);
    serverA.close();
    assert.equal((await httpGet({ port, host: '::1' })).body, 'b');
    assert.equal(b.fds.list()[0]!.addr, '[::1]:0');
  });

  it('hands over a unix listener whose path survives the old server closing', async (t) => {
    const dir = tempDir(t);
    const socketPath = path.join(dir, 'web.sock');
    const a = await upgrader(t, dir, 'a');
    const serverA = await serve(t, await a.fds.listen('unix', { path: socketPath }), 'a');
    await a.ready();
    assert.equal((await httpGet({ socketPath })).body, 'a');
    const b = await upgrader(t, dir, 'b');
    await serve(t, await b.fds.listen('unix', { path: socketPath }), 'b');
    await b.ready();
    await drainHttpServer(serverA, { timeoutMs: 1_000 });
    a.stop();
    assert.ok(fs.statSync(socketPath).isSocket(), 'the path is still there');
    assert.equal((await httpGet({ socketPath })).body, 'b');
  });

  it('hands over a UDP socket', async (t) => {
    const dir = tempDir(t);
    const echo = (name: string): dgram.Socket => {
      const socket = dgram.createSocket('udp4');
      socket.on('message', (msg, rinfo) =>
        socket.send(`${name}:${msg.toString()}`, rinfo.port, rinfo.address),
      );
      t.after(() => {
        try {
          socket.close();
        } catch {
          // The test closed it already.
        }
      });
      return socket;
    };
    const a = await upgrader(t, dir, 'a');
    const socketA = echo('a');
    const handleA = await a.fds.listenUdp('dns', { host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => socketA.bind(handleA, resolve));
    await a.ready();
    const b = await upgrader(t, dir, 'b');
    assert.equal(b.fds.list()[0]!.kind, 'conn');
    const socketB = echo('b');
    const handleB = await b.fds.listenUdp('dns', { host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => socketB.bind(handleB, resolve));
    await b.ready();
    socketA.close();
    const client = dgram.createSocket('udp4');
    t.after(() => client.close());
    const reply = nextEvent<Buffer>(client, 'message');
    client.send('ping', socketB.address().port, '127.0.0.1');
    assert.equal((await reply).toString(), 'b:ping');
  });

  it('times out a newcomer that never calls ready and offers the same fds to the next', async (t) => {
    const dir = tempDir(t);
    const a = await upgrader(t, dir, 'a', 300);
    const serverA = await serve(t, await a.fds.listen('web', { host: '127.0.0.1', port: 0 }), 'a');
    await a.ready();
    const failedA = nextEvent<TablerollError>(a, 'upgrade-failed');
    const b = await upgrader(t, dir, 'b');
    const failedB = nextEvent<TablerollError>(b, 'upgrade-failed');
    assert.equal((await failedA).code, ErrorCodes.TIMEOUT);
    assert.equal(a.state, 'owner');
    assert.equal(
      (await failedB).code,
      ErrorCodes.HANDOFF_FAILED,
      'the newcomer notices the owner hung up',
    );
    await assert.rejects(b.ready(), { code: ErrorCodes.HANDOFF_FAILED });

    const c = await upgrader(t, dir, 'c');
    const serverC = await serve(t, await c.fds.listen('web', { host: '127.0.0.1', port: 0 }), 'c');
    assert.equal(portOf(serverC), portOf(serverA));
    await c.ready();
    assert.equal(await a.upgradeComplete(), 'upgraded');
    assert.equal(fs.readFileSync(path.join(dir, 'pid'), 'utf8'), 'c');
  });

  it('refuses a second ready() and mutations during and after a transfer', async (t) => {
    const dir = tempDir(t);
    const a = await upgrader(t, dir, 'a');
    await a.fds.listen('web', { host: '127.0.0.1', port: 0 });
    await a.ready();
    await assert.rejects(a.ready(), { code: ErrorCodes.ALREADY_READY });
    const b = await upgrader(t, dir, 'b');
    assert.equal(a.state, 'transferring');
    await assert.rejects(a.fds.listen('other', { host: '127.0.0.1', port: 0 }), {
      code: ErrorCodes.STORE_LOCKED,
    });
    assert.throws(() => a.fds.remove('web'), { code: ErrorCodes.STORE_LOCKED });
    assert.ok(a.fds.listener('web'), 'reading is still allowed');
    await b.ready();
    await assert.rejects(b.ready(), { code: ErrorCodes.ALREADY_READY });
    await a.upgradeComplete();
    assert.throws(() => a.fds.addFile('f', 0), { code: ErrorCodes.STORE_CLOSED });
    a.stop();
    assert.throws(() => a.fds.listener('web'), { code: ErrorCodes.STOPPED });
    await assert.rejects(a.fds.listen('x', { port: 0 }), { code: ErrorCodes.STOPPED });
  });

  it('stop() during a transfer resolves completion once, as stopped, and fails the newcomer', async (t) => {
    const dir = tempDir(t);
    const a = await upgrader(t, dir, 'a');
    await a.fds.listen('web', { host: '127.0.0.1', port: 0 });
    await a.ready();
    const b = await upgrader(t, dir, 'b');
    const stopped = nextEvent(a, 'stopped');
    a.stop();
    a.stop();
    await stopped;
    assert.equal(await a.upgradeComplete(), 'stopped');
    await assert.rejects(b.ready(), { code: ErrorCodes.HANDOFF_FAILED });
    assert.equal(a.listenerCount('stopped'), 0);
  });

  it('stop() unlinks only its own socket and releases the lock', async (t) => {
    const dir = tempDir(t);
    const a = await upgrader(t, dir, 'a');
    await a.ready();
    const b = await upgrader(t, dir, 'b');
    await b.ready();
    a.stop();
    assert.deepEqual(fs.readdirSync(dir).sort(), ['b.sock', 'pid']);
    b.stop();
    assert.deepEqual(fs.readdirSync(dir), ['pid']);
    // The pid file still names b, whose socket is gone: the next process starts as owner.
    const c = await upgrader(t, dir, 'c');
    assert.deepEqual(c.fds.list(), []);
    await c.ready();
  });

  it('starts over a stale socket of its own id (Go blocks forever)', async (t) => {
    const dir = tempDir(t);
    native.close(native.unixListen(path.join(dir, 'a.sock'), 1)); // A crash leaves the file.
    const a = await upgrader(t, dir, 'a');
    await a.ready();
    assert.equal(a.state, 'owner');
  });

  it('refuses an id a live process is listening on', async (t) => {
    const dir = tempDir(t);
    await upgrader(t, dir, 'a');
    await assert.rejects(Upgrader.create(dir, 'a', { lockTimeoutMs: 100 }), {
      code: ErrorCodes.ID_IN_USE,
    });
  });

  it('treats a pid file naming our own id as no owner (Go dials itself)', async (t) => {
    const dir = tempDir(t);
    fs.writeFileSync(path.join(dir, 'pid'), 'a');
    const a = await upgrader(t, dir, 'a');
    assert.deepEqual(a.fds.list(), []);
    await a.ready();
    assert.equal(a.state, 'owner');
  });

  it('makes the second newcomer wait for the lock, then take over from the first', async (t) => {
    const dir = tempDir(t);
    const a = await upgrader(t, dir, 'a');
    await a.fds.listen('web', { host: '127.0.0.1', port: 0 });
    await a.ready();
    const b = await upgrader(t, dir, 'b');
    let cCreated = false;
    const c = Upgrader.create(dir, 'c').then((upg) => {
      cCreated = true;
      t.after(() => upg.stop());
      return upg;
    });
    // c is waiting for the lock b holds.
    await until(() => fs.readdirSync(dir).includes('c.sock'), 'c to bind its socket');
    assert.equal(cCreated, false);
    await b.ready();
    const upgC = await c;
    assert.equal(b.state, 'transferring', 'c took over from b, not from a');
    await upgC.ready();
    assert.equal(await b.upgradeComplete(), 'upgraded');
    assert.equal(fs.readFileSync(path.join(dir, 'pid'), 'utf8'), 'c');
  });

  it('gives up waiting for the lock after lockTimeoutMs', async (t) => {
    const dir = tempDir(t);
    await upgrader(t, dir, 'a'); // Holds the lock until ready().
    await assert.rejects(Upgrader.create(dir, 'b', { lockTimeoutMs: 50 }), {
      code: ErrorCodes.TIMEOUT,
    });
    assert.ok(!fs.existsSync(path.join(dir, 'b.sock')), 'a failed create leaves no socket');
  });

  it('keeps conns and files it never used across many upgrades (Go v3+ drops them)', async (t) => {
    const dir = tempDir(t);
    let previous = await upgrader(t, dir, 'u0');
    const file = path.join(dir, 'data');
    fs.writeFileSync(file, 'kept');
    const fd = fs.openSync(file, 'r');
    previous.fds.addFile('f1', fd, file);
    fs.closeSync(fd);
    const [client, peer] = await tcpPair(t);
    previous.fds.addConn('c1', client);
    await previous.ready();
    for (let i = 1; i <= 6; i++) {
      const next = await upgrader(t, dir, `u${i}`);
      await next.ready();
      await previous.upgradeComplete();
      previous.stop();
      previous = next;
    }
    assert.deepEqual(
      previous.fds
        .list()
        .map(({ kind, id, network, addr, inherited }) => [kind, id, network, addr, inherited]),
      [
        ['file', 'f1', '', file, true],
        ['conn', 'c1', 'tcp', `127.0.0.1:${client.localPort}`, true],
      ],
    );
    const handle = previous.fds.file('f1')!;
    const buf = Buffer.alloc(4);
    fs.readSync(handle.fd, buf, 0, 4, 0);
    fs.closeSync(handle.fd);
    assert.equal(buf.toString(), 'kept');
    // The connection still works six processes later.
    client.destroy();
    const conn = new net.Socket(previous.fds.conn('c1'));
    const echoed = nextEvent<Buffer>(peer, 'data');
    conn.end('still here');
    assert.equal((await echoed).toString(), 'still here');
  });

  it('regression: closes in ready() an inherited listener it never asked for, so its port refuses instead of hanging', async (t) => {
    const dir = tempDir(t);
    const a = await upgrader(t, dir, 'a');
    const serverA = await serve(t, await a.fds.listen('old', { host: '127.0.0.1', port: 0 }), 'a');
    const oldPort = portOf(serverA);
    await a.ready();
    const b = await upgrader(t, dir, 'b');
    assert.ok(b.fds.has('old'), 'inherited until ready()');
    await serve(t, await b.fds.listen('new', { host: '127.0.0.1', port: 0 }), 'b');
    await b.ready();
    assert.equal(b.fds.has('old'), false);
    assert.equal(await a.upgradeComplete(), 'upgraded');
    await drainHttpServer(serverA, { timeoutMs: 1_000 });
    a.stop();
    const refused = await new Promise<string>((resolve) => {
      const socket = net.connect(oldPort, '127.0.0.1');
      socket.on('connect', () => resolve('connected'));
      socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
    assert.equal(refused, 'ECONNREFUSED');
  });

  it('keeps an unclaimed inherited listener with keepUnclaimedListeners, for the next process', async (t) => {
    const dir = tempDir(t);
    const a = await upgrader(t, dir, 'a');
    await a.fds.listen('later', { host: '127.0.0.1', port: 0 });
    await a.ready();
    const b = await Upgrader.create(dir, 'b', { keepUnclaimedListeners: true });
    t.after(() => b.stop());
    await b.ready();
    await a.upgradeComplete();
    a.stop();
    const c = await upgrader(t, dir, 'c');
    assert.deepEqual(
      c.fds.list().map((entry) => entry.id),
      ['later'],
    );
    const server = await serve(t, await c.fds.listen('later', { host: '127.0.0.1', port: 0 }), 'c');
    await c.ready();
    assert.equal((await httpGet({ port: portOf(server), host: '127.0.0.1' })).body, 'c');
  });

  it('regression: finds the live owner when pid names a process that is gone (a newcomer killed after writing it)', async (t) => {
    const dir = tempDir(t);
    const a = await upgrader(t, dir, 'a');
    const serverA = await serve(t, await a.fds.listen('web', { host: '127.0.0.1', port: 0 }), 'a');
    await a.ready();
    // Another live process that owns nothing: it must be asked and refuse, not be mistaken.
    const waiting = await upgrader(t, dir, 'bystander');
    fs.closeSync(waiting.fds.listener('web')!.fd);
    await waiting.ready(); // took over from a...
    await a.upgradeComplete();
    a.stop();
    // ...and hands back to a fresh owner, so 'bystander' ends up draining (alive, not owner).
    const owner = await upgrader(t, dir, 'owner');
    const serverOwner = await serve(
      t,
      await owner.fds.listen('web', { host: '127.0.0.1', port: 0 }),
      'owner',
    );
    await owner.ready();
    assert.equal(await waiting.upgradeComplete(), 'upgraded');
    // The record now names a process that is gone, whose socket nobody answers.
    fs.writeFileSync(path.join(dir, 'pid'), 'ghost');
    const c = await upgrader(t, dir, 'c');
    assert.deepEqual(
      c.fds.list().map((entry) => [entry.id, entry.inherited]),
      [['web', true]],
    );
    const serverC = await serve(t, await c.fds.listen('web', { host: '127.0.0.1', port: 0 }), 'c');
    assert.equal(portOf(serverC), portOf(serverA));
    assert.equal(portOf(serverOwner), portOf(serverA));
    await c.ready();
    assert.equal(await owner.upgradeComplete(), 'upgraded');
    assert.equal(fs.readFileSync(path.join(dir, 'pid'), 'utf8'), 'c');
  });

  it('checks kinds and duplicates in the fd store', async (t) => {
    const dir = tempDir(t);
    const a = await upgrader(t, dir, 'a');
    await a.fds.listen('web', { host: '127.0.0.1', port: 0 });
    assert.throws(() => a.fds.conn('web'), { code: ErrorCodes.KIND_MISMATCH });
    await assert.rejects(a.fds.listenUdp('web', { port: 0 }), { code: ErrorCodes.KIND_MISMATCH });
    assert.throws(() => a.fds.addFile('web', 0), { code: ErrorCodes.DUPLICATE_ID });
    assert.throws(
      () => a.fds.addListener('x', 0),
      { code: ErrorCodes.INVALID_ARGUMENT },
      'stdin is no listener',
    );
    await assert.rejects(a.fds.listen('', { port: 0 }), { code: ErrorCodes.INVALID_ARGUMENT });
    await assert.rejects(a.fds.listen('p', { port: 70000 }), { code: ErrorCodes.INVALID_ARGUMENT });
    assert.equal(a.fds.remove('web'), true);
    assert.equal(a.fds.remove('web'), false);
  });

  it('hands over the store as it is when the newcomer comes, changes after ready() included', async (t) => {
    const dir = tempDir(t);
    const listen = async (upg: Upgrader, id: string): Promise<void> => {
      fs.closeSync((await upg.fds.listen(id, { host: '127.0.0.1', port: 0 })).fd);
    };
    const ids = (upg: Upgrader): string[] => upg.fds.list().map((entry) => entry.id);
    const a = await upgrader(t, dir, 'a');
    await listen(a, 'early');
    await listen(a, 'gone');
    await a.ready();
    // Turns of the loop, in which the owner encodes its store ahead of the next handoff (again
    // after each change). What the newcomer gets must not depend on whether it did.
    const turn = (): Promise<unknown> => new Promise((resolve) => setImmediate(resolve));
    await turn();
    await listen(a, 'late');
    await turn();
    assert.equal(a.fds.remove('gone'), true);
    const b = await upgrader(t, dir, 'b');
    assert.deepEqual(ids(b), ['early', 'late']);
    await listen(b, 'early');
    await listen(b, 'late');
    await b.ready();
    await a.upgradeComplete();
    // Changed just before a newcomer comes: whatever b encoded after its ready() is stale.
    await listen(b, 'later');
    const c = await upgrader(t, dir, 'c');
    assert.deepEqual(ids(c), ['early', 'late', 'later']);
    await c.ready();
    await b.upgradeComplete();
  });

  it('adopts a listening net.Server the application made itself', async (t) => {
    const dir = tempDir(t);
    const a = await upgrader(t, dir, 'a');
    const own = net.createServer();
    await new Promise<void>((resolve) => own.listen(0, '127.0.0.1', resolve));
    t.after(() => own.close());
    a.fds.addListener('own', own);
    assert.deepEqual(a.fds.list()[0], {
      kind: 'listener',
      id: 'own',
      network: 'tcp',
      addr: `127.0.0.1:${portOf(own)}`,
      inherited: false,
    });
    assert.throws(() => a.fds.addListener('none', net.createServer()), {
      code: ErrorCodes.INVALID_ARGUMENT,
    });
  });
});

describe('descriptor hygiene', () => {
  it('marks inherited fds close-on-exec, so child processes never get them', async (t) => {
    const dir = tempDir(t);
    const a = await upgrader(t, dir, 'a');
    await a.fds.listen('web', { host: '127.0.0.1', port: 0 });
    await a.ready();
    const b = await upgrader(t, dir, 'b');
    const handle = b.fds.listener('web')!;
    t.after(() => fs.closeSync(handle.fd));
    assert.ok(hasCloexec(handle.fd));
    // What a child process holds, by what each fd points to (socket:[inode], pipe:[...]).
    const inChild = execFileSync('ls', ['-l', '/proc/self/fd'], { encoding: 'utf8' });
    const socket = fs.readlinkSync(`/proc/self/fd/${handle.fd}`);
    assert.match(socket, /^socket:\[\d+\]$/);
    assert.ok(!inChild.includes(socket), `the child holds our listener ${socket}: ${inChild}`);
    await b.ready();
  });

  it('holds no fd once stopped, even from an owner listener or right after ready()', async (t) => {
    const dir = tempDir(t);
    // The first Upgrader of a process opens what Node opens lazily, and grows the fd table.
    const warm = await Upgrader.create(dir, 'warm');
    await warm.ready();
    warm.stop();
    const before = openFdCount();
    const a = await Upgrader.create(dir, 'a');
    a.on('owner', () => a.stop());
    await a.ready();
    assert.equal(a.state, 'stopped');
    assert.equal(openFdCount(), before, 'stopped by its owner listener');
    const b = await Upgrader.create(dir, 'b');
    await b.ready();
    b.stop();
    assert.equal(openFdCount(), before, 'stopped right after ready()');
  });

  it('leaks no fd over twenty handoffs, failed creates included', async (t) => {
    const dir = tempDir(t);
    const cycle = async (i: number): Promise<void> => {
      const a = await Upgrader.create(dir, `x${i}`);
      const server = http.createServer();
      const listener = await a.fds.listen('web', { host: '127.0.0.1', port: 0 });
      await new Promise<void>((resolve) => server.listen(listener, resolve));
      await a.ready();
      const b = await Upgrader.create(dir, `y${i}`);
      const handle = await b.fds.listen('web', { host: '127.0.0.1', port: 0 });
      await b.ready();
      await a.upgradeComplete();
      await drainHttpServer(server, { timeoutMs: 1_000 });
      fs.closeSync(handle.fd);
      a.stop();
      b.stop();
      await assert.rejects(Upgrader.create(dir, 'bad/id'));
      await assert.rejects(Upgrader.create(dir, `z${i}`, { signal: AbortSignal.abort() }));
    };
    await cycle(0); // Warm up lazily opened fds (dns, etc.).
    const before = openFdCount();
    for (let i = 1; i <= 20; i++) await cycle(i);
    await until(
      () => openFdCount() === before,
      `fd count back to ${before} (now ${openFdCount()})`,
      5_000,
    );
  });

  it('refuses a coordination directory other users can write to', async (t) => {
    const dir = tempDir(t);
    const open = path.join(dir, 'open');
    fs.mkdirSync(open);
    fs.chmodSync(open, 0o777);
    await assert.rejects(Upgrader.create(open, 'a'), { code: ErrorCodes.UNSAFE_DIRECTORY });
    fs.chmodSync(open, 0o1777); // Sticky and ours: others could still plant names in it.
    await assert.rejects(Upgrader.create(open, 'a'), { code: ErrorCodes.UNSAFE_DIRECTORY });
    fs.chmodSync(open, 0o700);
    const upg = await upgrader(t, open, 'a');
    await upg.ready();
    const sockMode = fs.statSync(path.join(open, 'a.sock')).mode & 0o777;
    const pidMode = fs.statSync(path.join(open, 'pid')).mode & 0o777;
    assert.deepEqual([sockMode, pidMode], [0o600, 0o600]);
    const file = path.join(dir, 'file');
    fs.writeFileSync(file, '');
    await assert.rejects(Upgrader.create(file, 'a'), { code: ErrorCodes.UNSAFE_DIRECTORY });
    if (process.getuid?.() === 0) {
      const theirs = path.join(dir, 'theirs');
      fs.mkdirSync(theirs, { mode: 0o700 });
      fs.chownSync(theirs, 65534, 65534);
      await assert.rejects(Upgrader.create(theirs, 'a'), { code: ErrorCodes.UNSAFE_DIRECTORY });
    }
  });
});

describe('fds.localAddress', () => {
  it('tells the port the kernel picked for port 0, and a unix path; list() keeps what was asked', async (t) => {
    const dir = tempDir(t);
    const upg = await upgrader(t, dir, 'a');
    const handle = await upg.fds.listen('web', { host: '127.0.0.1', port: 0 });
    const server = await serve(t, handle, 'a');
    const bound = upg.fds.localAddress('web');
    assert.deepEqual(bound, {
      family: 'IPv4',
      address: '127.0.0.1',
      port: (server.address() as net.AddressInfo).port,
    });
    assert.equal(upg.fds.list()[0]?.addr, '127.0.0.1:0', 'the wire keeps the address asked for');
    const socketPath = path.join(dir, 'web.sock');
    await upg.fds.listen('unix', { path: socketPath });
    assert.deepEqual(upg.fds.localAddress('unix'), { path: socketPath });
    assert.equal(upg.fds.localAddress('missing'), undefined);
  });
});
