/**
 * The native addon against the real kernel, with real sockets, descriptors and processes:
 * how the addon fails: syscall errors shaped like Node errors, bad arguments as
 * TypeError or RangeError.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';

import { native, type PollCallback } from '../../src/native.js';
import {
  TIMEOUT,
  BAD_FD,
  Resources,
  openFdCount,
  throwsWithoutLeak,
  errnoOf,
} from '../support/native-kit.js';
import { currentUmask, permissions } from '../support/native-kit.js';

test('syscall errors look like Node errors', TIMEOUT, (t) => {
  const res = new Resources(t);
  const stale = res.path('stale.sock');
  res.close(res.fd(native.unixListen(stale, 1)));
  assert.ok(fs.statSync(stale).isSocket(), 'the socket file must survive close: nothing unlinks');
  throwsWithoutLeak(() => native.unixConnect(stale), {
    name: 'Error',
    message: `connect ECONNREFUSED ${stale}`,
    code: 'ECONNREFUSED',
    errno: errnoOf('ECONNREFUSED'),
    syscall: 'connect',
    path: stale,
  });
  throwsWithoutLeak(() => native.unixListen(stale, 1), {
    message: `bind EADDRINUSE ${stale}`,
    code: 'EADDRINUSE',
    errno: errnoOf('EADDRINUSE'),
    syscall: 'bind',
    path: stale,
  });
  const missing = res.path('missing.sock');
  assert.throws(() => native.unixConnect(missing), {
    message: `connect ENOENT ${missing}`,
    code: 'ENOENT',
    errno: errnoOf('ENOENT'),
    syscall: 'connect',
    path: missing,
  });

  // sun_path holds 108 bytes including the NUL.
  const sized = (length: number) => res.dir + '/' + 'x'.repeat(length - res.dir.length - 1);
  res.fd(native.unixListen(sized(107), 1));
  for (const [call, syscall] of [
    [(socketPath: string) => native.unixListen(socketPath, 1), 'bind'],
    [(socketPath: string) => native.unixConnect(socketPath), 'connect'],
  ] as const) {
    throwsWithoutLeak(() => call(sized(108)), {
      code: 'ENAMETOOLONG',
      errno: errnoOf('ENAMETOOLONG'),
      syscall,
      path: sized(108),
    });
  }

  const ebadf = (syscall: string) => ({
    message: `${syscall} EBADF`,
    code: 'EBADF',
    errno: errnoOf('EBADF'),
    syscall,
  });
  assert.throws(() => native.close(BAD_FD), ebadf('close'));
  assert.throws(() => native.dup(BAD_FD), ebadf('fcntl'));
  assert.throws(() => native.setCloexec(BAD_FD, true), ebadf('fcntl'));
  assert.throws(() => native.flockExclusive(BAD_FD), ebadf('flock'));
  assert.throws(() => native.accept(BAD_FD), ebadf('accept'));
  assert.throws(() => native.send(BAD_FD, Buffer.from('x'), -1), ebadf('sendmsg'));
  assert.throws(() => native.recv(BAD_FD, Buffer.alloc(1), 0, 1), ebadf('recvmsg'));
  assert.throws(() => native.peerCredentials(BAD_FD), ebadf('getsockopt'));
  assert.throws(() => native.fstat(BAD_FD), ebadf('fstat'));
  assert.throws(() => native.fchmod(BAD_FD, 0o600), ebadf('fchmod'));
  assert.throws(() => native.pread(BAD_FD, Buffer.alloc(1), 0), ebadf('read'));
  assert.throws(() => native.pwrite(BAD_FD, Buffer.from('x'), 0), ebadf('write'));
  assert.throws(() => native.ftruncate(BAD_FD, 0), ebadf('ftruncate'));

  assert.throws(() => native.inetListen('not-an-ip', 0, 4, 1, {}), {
    code: 'EINVAL',
    syscall: 'inet_pton',
    address: 'not-an-ip',
  });
  assert.throws(() => native.inetListen('::1', 0, 4, 1, {}), { code: 'EINVAL' });
});

test('bad arguments throw TypeError or RangeError with Node codes', TIMEOUT, (t) => {
  const res = new Resources(t);
  const { client } = res.pair();
  const typeError = { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' };
  const rangeError = { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' };
  const untyped = native as unknown as Record<string, (...args: unknown[]) => unknown>;
  assert.throws(() => untyped.unixListen!(42, 1), typeError);
  assert.throws(() => untyped.close!('3'), typeError);
  assert.throws(() => untyped.send!(client, 'text', -1), typeError);
  assert.throws(() => untyped.send!(client, new Uint16Array(2), -1), typeError);
  assert.throws(() => untyped.setCloexec!(client, 1), typeError);
  assert.throws(() => untyped.inetListen!('127.0.0.1', 0, 4, 1, null), typeError);
  assert.throws(() => new native.Poller(client, 'nope' as unknown as PollCallback), typeError);
  assert.throws(() => native.close(1.5), rangeError);
  assert.throws(() => native.close(NaN), rangeError);
  assert.throws(() => native.close(-1), rangeError);
  assert.throws(() => native.send(client, Buffer.from('x'), -2), rangeError);
  assert.throws(() => native.recv(client, Buffer.alloc(4), 2, 3), rangeError);
  assert.throws(() => native.recv(client, Buffer.alloc(4), 5, 1), rangeError);
  assert.throws(() => native.recv(client, Buffer.alloc(4), 0, 0), rangeError);
  assert.throws(() => untyped.recvEach!(client, 'text', 1), typeError);
  assert.throws(() => untyped.recvEach!(client, Buffer.alloc(4), '1'), typeError);
  assert.throws(() => untyped.recvEach!(client, Buffer.alloc(4)), typeError);
  for (const max of [0, -1, 1.5, NaN, 2 ** 31]) {
    assert.throws(() => native.recvEach(client, Buffer.alloc(4), max), rangeError);
  }
  assert.throws(() => native.recvEach(-1, Buffer.alloc(4), 1), rangeError);
  assert.throws(() => untyped.growFdTable!(client, '4095'), typeError);
  assert.throws(() => untyped.growFdTable!(client), typeError);
  assert.throws(() => untyped.growFdTable!('3', 4095), typeError);
  for (const highest of [-1, 1.5, NaN, Infinity, 2 ** 31]) {
    assert.throws(() => native.growFdTable(client, highest), rangeError);
  }
  assert.throws(() => native.growFdTable(-1, 4095), rangeError);
  assert.throws(() => native.inetListen('127.0.0.1', 65536, 4, 1, {}), rangeError);
  assert.throws(() => native.inetListen('127.0.0.1', 0, 5 as 4, 1, {}), rangeError);
  assert.throws(() => native.unixConnect(res.path('a\0b')), {
    name: 'TypeError',
    code: 'ERR_INVALID_ARG_VALUE',
  });

  // timerFd: a number of milliseconds, 0 and up.
  assert.throws(() => untyped.timerFd!('30'), typeError);
  assert.throws(() => untyped.timerFd!(), typeError);
  assert.throws(() => untyped.timerFd!(30n), typeError);
  for (const ms of [-1, -1e-9, NaN, -Infinity, Infinity]) {
    assert.throws(() => native.timerFd(ms), rangeError);
  }

  // The file calls.
  const before = openFdCount();
  const file = res.fd(fs.openSync(res.path('file'), 'w+'));
  const { O_RDWR, O_CREAT } = fs.constants;
  const pathCalls = [
    (target: unknown) => untyped.mkdir!(target, 0o700),
    (target: unknown) => untyped.stat!(target),
    (target: unknown) => untyped.open!(target, O_RDWR | O_CREAT, 0o600),
    (target: unknown) => untyped.chmod!(target, 0o600),
  ];
  for (const call of pathCalls) {
    assert.throws(() => call(42), typeError);
    assert.throws(() => call(undefined), typeError);
    assert.throws(() => call(Buffer.from(res.path('buffer'))), typeError);
    // The kernel would cut the path at the NUL and make 'a'.
    assert.throws(() => call(res.path('a\0b')), {
      name: 'TypeError',
      code: 'ERR_INVALID_ARG_VALUE',
      message: "The argument 'path' must not contain null bytes",
    });
  }
  for (const mode of [-1, 0o10000, 1.5, NaN]) {
    assert.throws(() => native.mkdir(res.path('bad-mode'), mode), rangeError);
    assert.throws(() => native.open(res.path('bad-mode'), O_RDWR | O_CREAT, mode), rangeError);
    assert.throws(() => native.chmod(res.path('file'), mode), rangeError);
    assert.throws(() => native.fchmod(file, mode), rangeError);
  }
  assert.throws(() => untyped.mkdir!(res.path('bad-mode'), '700'), typeError);
  assert.throws(() => untyped.open!(res.path('bad-mode'), O_RDWR | O_CREAT), typeError);
  assert.throws(() => untyped.open!(res.path('bad-mode'), String(O_RDWR), 0), typeError);
  assert.throws(() => native.open(res.path('bad-mode'), -1, 0o600), rangeError);
  assert.throws(() => untyped.fchmod!(file, '600'), typeError);
  // Nothing was made or changed.
  const made = fs.readdirSync(res.dir).filter((name) => !name.endsWith('.sock'));
  assert.deepEqual(made, ['file']);
  assert.equal(permissions(res.path('file')), 0o666 & ~currentUmask());

  assert.throws(() => untyped.fstat!(String(file)), typeError);
  assert.throws(() => native.fstat(-1), rangeError);
  assert.throws(() => untyped.pread!(file, 'text', 0), typeError);
  assert.throws(() => untyped.pread!(file, new Uint16Array(2), 0), typeError);
  assert.throws(() => untyped.pwrite!(file, 'text', 0), typeError);
  assert.throws(() => untyped.pread!(file, Buffer.alloc(1), '0'), typeError);
  assert.throws(() => untyped.pwrite!(file, Buffer.alloc(1)), typeError);
  assert.throws(() => untyped.ftruncate!(file, '0'), typeError);
  for (const position of [-1, 1.5, NaN, -Infinity]) {
    assert.throws(() => native.pread(file, Buffer.alloc(1), position), rangeError);
    assert.throws(() => native.pwrite(file, Buffer.from('x'), position), rangeError);
    assert.throws(() => native.ftruncate(file, position), rangeError);
  }
  assert.equal(fs.fstatSync(file).size, 0, 'nothing was written');
  res.close(file);
  assert.equal(openFdCount(), before);
});
