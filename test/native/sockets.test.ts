/**
 * The native addon against the real kernel, with real sockets, descriptors and processes:
 * sockets the addon makes and describes: peer credentials, TCP, UDP, unix and abstract.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import { test } from 'node:test';

import { READABLE, native } from '../../src/native.js';
import {
  TIMEOUT,
  BAD_FD,
  Resources,
  Child,
  openFdCount,
  throwsWithoutLeak,
  errnoOf,
  nextEvent,
  PY_SEND_FDS,
  PY_RECV_DATAGRAM,
} from '../support/native-kit.js';

test('peerCredentials names the process at the other end', TIMEOUT, (t) => {
  const res = new Resources(t);
  const { client, server } = res.pair();
  const expected = { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() };
  assert.deepEqual(native.peerCredentials(server), expected);
  assert.deepEqual(native.peerCredentials(client), expected);
});

test('inetListen on 127.0.0.1 and ::1 with port 0, described by socketInfo', TIMEOUT, async (t) => {
  const res = new Resources(t);
  for (const [address, family, name] of [
    ['127.0.0.1', 4, 'inet'],
    ['::1', 6, 'inet6'],
  ] as const) {
    const fd = res.fd(native.inetListen(address, 0, family, 8, {}));
    const info = native.socketInfo(fd)!;
    assert.equal(info.port > 0, true);
    assert.deepEqual(info, {
      family: name,
      type: 'stream',
      listening: true,
      address,
      port: info.port,
      path: '',
    });
    const socket = net.connect(info.port, address);
    t.after(() => socket.destroy());
    await once(socket, 'connect');
    const accepted = await nextEvent(res, fd, READABLE);
    assert.equal(accepted.events, READABLE);
    assert.ok(res.fd(native.accept(fd)) >= 0);
  }
});

test('inetListen sets IPV6_V6ONLY both ways', TIMEOUT, async (t) => {
  const res = new Resources(t);
  for (const ipv6Only of [false, true]) {
    const fd = res.fd(native.inetListen('::', 0, 6, 8, { ipv6Only }));
    const socket = net.connect(native.socketInfo(fd)!.port, '127.0.0.1');
    t.after(() => socket.destroy());
    const outcome = await once(socket, 'connect').then(
      () => 'connected',
      (err: NodeJS.ErrnoException) => err.code,
    );
    assert.equal(outcome, ipv6Only ? 'ECONNREFUSED' : 'connected');
  }
});

test('inetListen shares a port only with SO_REUSEPORT', TIMEOUT, (t) => {
  const res = new Resources(t);
  const first = res.fd(native.inetListen('127.0.0.1', 0, 4, 8, { reusePort: true }));
  const { port } = native.socketInfo(first)!;
  res.fd(native.inetListen('127.0.0.1', port, 4, 8, { reusePort: true }));
  throwsWithoutLeak(() => native.inetListen('127.0.0.1', port, 4, 8, {}), {
    code: 'EADDRINUSE',
    errno: errnoOf('EADDRINUSE'),
    syscall: 'bind',
    address: '127.0.0.1',
    port,
    message: `bind EADDRINUSE 127.0.0.1:${port}`,
  });
});

test('udpBind gives a socket that dgram can adopt', TIMEOUT, async (t) => {
  const res = new Resources(t);
  const fd = res.fd(native.udpBind('127.0.0.1', 0, 4, {}));
  const info = native.socketInfo(fd)!;
  assert.deepEqual(info, {
    family: 'inet',
    type: 'dgram',
    listening: false,
    address: '127.0.0.1',
    port: info.port,
    path: '',
  });
  assert.equal(native.socketInfo(res.fd(native.udpBind('::1', 0, 6, {})))!.family, 'inet6');

  const receiver = dgram.createSocket('udp4');
  const sender = dgram.createSocket('udp4');
  t.after(() => {
    receiver.close();
    sender.close();
  });
  // With an fd, dgram emits 'listening' synchronously inside bind().
  const listening = once(receiver, 'listening');
  receiver.bind({ fd: res.release(fd) });
  await listening;
  sender.send('ping', info.port, '127.0.0.1');
  const [message] = (await once(receiver, 'message')) as [Buffer];
  assert.equal(message.toString(), 'ping');
});

test('udpBind sets SO_REUSEADDR only when asked', TIMEOUT, (t) => {
  const res = new Resources(t);
  const first = res.fd(native.udpBind('127.0.0.1', 0, 4, { reuseAddr: true }));
  const { port } = native.socketInfo(first)!;
  throwsWithoutLeak(() => native.udpBind('127.0.0.1', port, 4, {}), { code: 'EADDRINUSE' });
  res.fd(native.udpBind('127.0.0.1', port, 4, { reuseAddr: true }));
});

test(
  'socketInfo on unix sockets, an abstract one, a regular file and a closed fd',
  TIMEOUT,
  async (t) => {
    const res = new Resources(t);
    const { listener, client, server, socketPath } = res.pair();
    const unix = { family: 'unix', type: 'stream', address: '', port: 0 };
    assert.deepEqual(native.socketInfo(listener), { ...unix, listening: true, path: socketPath });
    assert.deepEqual(native.socketInfo(client), { ...unix, listening: false, path: '' });
    // An accepted socket carries the listener's address.
    assert.deepEqual(native.socketInfo(server), { ...unix, listening: false, path: socketPath });

    const name = `@tableroll-test-${randomUUID()}`;
    const abstractPath = res.path('abstract.sock');
    const peer = new Child(t, 'python3', ['-c', PY_SEND_FDS, abstractPath, name]);
    assert.equal(await peer.line(), 'listening');
    const fd = res.fd(native.unixConnect(abstractPath));
    assert.equal(await peer.line(), 'sent');
    const [abstract] = native.recv(fd, Buffer.alloc(8), 0, 8)!.fds.map((got) => res.fd(got));
    assert.deepEqual(native.socketInfo(abstract!), { ...unix, listening: false, path: name });

    const file = res.fd(fs.openSync(res.path('plain'), 'w'));
    assert.equal(native.socketInfo(file), null);
    assert.throws(() => native.socketInfo(BAD_FD), { code: 'EBADF', syscall: 'getsockopt' });
  },
);

test('sendDatagram reaches a path socket and an abstract one', TIMEOUT, async (t) => {
  const res = new Resources(t);
  const before = openFdCount();
  const payload = 'READY=1\nSTATUS=serving';
  for (const target of [res.path('notify.sock'), `@tableroll-test-${randomUUID()}`]) {
    const receiver = new Child(t, 'python3', ['-c', PY_RECV_DATAGRAM, target]);
    assert.equal(await receiver.line(), 'ready');
    native.sendDatagram(target, Buffer.from(payload));
    assert.equal(JSON.parse(await receiver.line()), payload);
    await receiver.exited; // its pipes must be closed before fds are counted
  }
  const missing = res.path('missing.sock');
  assert.throws(() => native.sendDatagram(missing, Buffer.from('x')), {
    code: 'ENOENT',
    syscall: 'sendto',
    path: missing,
  });
  // 108 bytes fit an abstract name (no NUL terminator); 109 do not.
  const longest = `@${'a'.repeat(107)}`;
  assert.throws(() => native.sendDatagram(longest, Buffer.from('x')), { code: 'ECONNREFUSED' });
  assert.throws(() => native.sendDatagram(`${longest}a`, Buffer.from('x')), {
    code: 'ENAMETOOLONG',
    syscall: 'sendto',
  });
  assert.equal(openFdCount(), before, 'sendDatagram leaked its socket');
});

/** The process's umask, read without changing it. */
