/**
 * The native addon against the real kernel, with real sockets, descriptors and processes:
 * flock, dup and close-on-exec, and growing the fd table.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { native } from '../../src/native.js';
import {
  ADDON,
  TIMEOUT,
  Resources,
  Child,
  nodeChild,
  hasCloexec,
  fdTarget,
} from '../support/native-kit.js';

test(
  'flockExclusive excludes other holders and the lock dies with its holder',
  TIMEOUT,
  async (t) => {
    const res = new Resources(t);
    const lockPath = res.path('lock');
    const probe = `
    const fd = require('fs').openSync(process.argv[2], 'r');
    console.log(require(process.argv[1]).flockExclusive(fd));
    if (process.argv[3] === 'hold') setInterval(() => {}, 1 << 30);`;

    const mine = res.fd(fs.openSync(lockPath, 'w'));
    assert.equal(native.flockExclusive(mine), true);
    // The lock belongs to the open file description, so even our own second open is refused.
    const second = res.fd(fs.openSync(lockPath, 'r'));
    assert.equal(native.flockExclusive(second), false);
    assert.equal(await nodeChild(t, probe, lockPath).line(), 'false');
    res.close(mine);
    res.close(second);

    const holder = nodeChild(t, probe, lockPath, 'hold');
    assert.equal(await holder.line(), 'true');
    const waiting = res.fd(fs.openSync(lockPath, 'r'));
    assert.equal(native.flockExclusive(waiting), false);
    holder.process.kill('SIGKILL');
    await holder.exited;
    assert.equal(native.flockExclusive(waiting), true);
  },
);

test('dup and setCloexec', TIMEOUT, (t) => {
  const res = new Resources(t);
  const { client } = res.pair();
  const copy = res.fd(native.dup(client));
  assert.notEqual(copy, client);
  assert.equal(fdTarget(copy), fdTarget(client));
  assert.equal(hasCloexec(copy), true);
  native.setCloexec(copy, false);
  assert.equal(hasCloexec(copy), false);
  native.setCloexec(copy, true);
  assert.equal(hasCloexec(copy), true);
  // A lowest number: the copy lands at or above it (this is how a newcomer grows its fd table).
  const high = res.fd(native.dup(client, 700));
  assert.ok(high >= 700, `got fd ${high}`);
  assert.equal(fdTarget(high), fdTarget(client));
  assert.equal(hasCloexec(high), true);
  assert.throws(() => native.dup(client, -1), { code: 'ERR_OUT_OF_RANGE' });
});

test('every descriptor the addon creates, accepts or receives is close-on-exec', TIMEOUT, (t) => {
  const res = new Resources(t);
  const { listener, client, server } = res.pair();
  const tcp4 = res.fd(native.inetListen('127.0.0.1', 0, 4, 8, {}));
  const tcp6 = res.fd(native.inetListen('::1', 0, 6, 8, {}));
  const udp4 = res.fd(native.udpBind('127.0.0.1', 0, 4, {}));
  const udp6 = res.fd(native.udpBind('::1', 0, 6, {}));
  assert.equal(native.send(client, Buffer.from('x'), tcp4), 1);
  const received = native.recv(server, Buffer.alloc(8), 0, 8)!.fds.map((fd) => res.fd(fd));
  assert.equal(received.length, 1);
  const dup = res.fd(native.dup(tcp4));
  for (const fd of [listener, client, server, tcp4, tcp6, udp4, udp6, ...received, dup]) {
    assert.equal(hasCloexec(fd), true, `fd ${fd} (${fdTarget(fd)}) lacks FD_CLOEXEC`);
  }
});

test('a received descriptor is not inherited by a child process', TIMEOUT, async (t) => {
  const res = new Resources(t);
  const { client, server } = res.pair();
  const tcp = res.fd(native.inetListen('127.0.0.1', 0, 4, 8, {}));
  native.send(client, Buffer.from('x'), tcp);
  const [received] = native.recv(server, Buffer.alloc(8), 0, 8)!.fds.map((fd) => res.fd(fd));
  const target = fdTarget(received!);
  const childFds = async () => (await promisify(execFile)('ls', ['-l', '/proc/self/fd'])).stdout;

  assert.ok(!(await childFds()).includes(target), `${target} leaked into a child`);
  // Control: without FD_CLOEXEC the same socket does reach the child.
  const inheritable = res.fd(native.dup(received!));
  native.setCloexec(inheritable, false);
  assert.ok((await childFds()).includes(target));
});

// Calls growFdTable (with a copy of an fd open on /dev/null) with each of argv[3..] in turn, then
// polls until FDSize in /proc/self/status reaches argv[2] and no descriptor is open past the old
// table, or 10 s pass. Prints {before, after, returned, beyond} (the descriptors past the old
// table, which the growth must not leave open), then 'alive' once it has opened and closed a file.
const GROW_FD_TABLE = `
const a = require(process.argv[1]);
const fs = require('fs');
const fdSize = () =>
  Number(/^FDSize:\\s+(\\d+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]);
(async () => {
  const wanted = Number(process.argv[2]);
  const before = fdSize();
  const source = fs.openSync('/dev/null', 'r');
  // Descriptors past the old table: only the growth's own copy can be there, and only until the
  // growth's thread closes it. Node opens its own descriptors at the lowest free numbers.
  const beyond = () =>
    fs.readdirSync('/proc/self/fd').map(Number).filter((fd) => fd >= before);
  const returned = process.argv
    .slice(3)
    .map((highest) => typeof a.growFdTable(source, Number(highest)));
  const deadline = Date.now() + 10000;
  while ((fdSize() < wanted || beyond().length > 0) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  console.log(JSON.stringify({ before, after: fdSize(), returned, beyond: beyond() }));
  fs.closeSync(fs.openSync('/dev/null', 'r'));
  console.log('alive');
})();`;

test('growFdTable grows the fd table on a thread of its own', TIMEOUT, async (t) => {
  const child = nodeChild(t, GROW_FD_TABLE, '4096', '4095');
  const { before, after, returned, beyond } = JSON.parse(await child.line()) as {
    before: number;
    after: number;
    returned: string[];
    beyond: number[];
  };
  assert.deepEqual(returned, ['undefined']);
  assert.ok(before < 4096, `the table already held ${before} descriptors`);
  assert.ok(after >= 4096, `FDSize ${before} grew only to ${after}`);
  // Counting every open descriptor raced twice: with the thread between its growth and its
  // close (FDSize is already big, the copy still open), and with Node opening one of its own.
  assert.deepEqual(beyond, [], 'the growth left a descriptor open past the old table');
  assert.equal(await child.line(), 'alive');
  assert.deepEqual(await child.exited, { code: 0, signal: null }, child.stderr);
});

test(
  'growFdTable beyond RLIMIT_NOFILE neither throws nor grows past the limit',
  TIMEOUT,
  async (t) => {
    // With a limit of 1024 only the last call can grow the table: to 1024 slots, and no further.
    const child = new Child(t, 'sh', [
      '-c',
      'ulimit -n 1024 && exec "$0" "$@"',
      process.execPath,
      '-e',
      GROW_FD_TABLE,
      ADDON,
      '1024',
      String(1e9),
      String(2 ** 31 - 1),
      '4095',
      '1023',
    ]);
    const { before, after, returned } = JSON.parse(await child.line()) as {
      before: number;
      after: number;
      returned: string[];
    };
    assert.deepEqual(returned, ['undefined', 'undefined', 'undefined', 'undefined']);
    assert.ok(before < 1024, `the table already held ${before} descriptors`);
    assert.equal(after, 1024);
    assert.equal(await child.line(), 'alive');
    assert.deepEqual(await child.exited, { code: 0, signal: null }, child.stderr);
  },
);

/** How many times a timerfd expired since it was last read: its 8-byte little-endian counter. */
