/**
 * The native addon against the real kernel, with real sockets, descriptors and processes:
 * descriptors passed over unix sockets (SCM_RIGHTS): send, recv, recvEach, message
 * boundaries, MSG_CTRUNC, EAGAIN.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { describe, test } from 'node:test';

import { native } from '../../src/native.js';
import {
  ADDON,
  TIMEOUT,
  BAD_FD,
  Resources,
  Child,
  hasCloexec,
  openFdCount,
  throwsWithoutLeak,
  fdTarget,
  errnoOf,
  PY_SEND_FDS,
} from '../support/native-kit.js';

test(
  'payload and a TCP listener cross a unix socket, and the received listener serves',
  TIMEOUT,
  async (t) => {
    const res = new Resources(t);
    const { client, server } = res.pair();
    const tcp = res.fd(native.inetListen('127.0.0.1', 0, 4, 8, {}));
    const { port } = native.socketInfo(tcp)!;

    assert.equal(native.send(client, Buffer.from('hello'), tcp), 5);
    const buf = Buffer.alloc(64);
    const message = native.recv(server, buf, 10, 54)!;
    assert.equal(message.bytes, 5);
    assert.equal(message.truncated, false);
    assert.equal(buf.toString('utf8', 10, 15), 'hello');
    assert.equal(message.fds.length, 1);
    const received = res.fd(message.fds[0]!);
    assert.equal(fdTarget(received), fdTarget(tcp));
    res.close(tcp); // the received descriptor stands on its own

    const httpServer = net.createServer();
    t.after(() => httpServer.close());
    httpServer.listen({ fd: res.release(received) });
    await once(httpServer, 'listening');
    const accepted = once(httpServer, 'connection');
    const socket = net.connect(port, '127.0.0.1');
    t.after(() => socket.destroy());
    const [conn] = (await accepted) as [net.Socket];
    conn.destroy();
  },
);

test('several descriptors in one message, up to SCM_MAX_FD (253)', TIMEOUT, async (t) => {
  const res = new Resources(t);
  for (const count of [3, 253]) {
    const socketPath = res.path(`fds-${count}.sock`);
    const peer = new Child(t, 'python3', ['-c', PY_SEND_FDS, socketPath, String(count)]);
    assert.equal(await peer.line(), 'listening');
    const fd = res.fd(native.unixConnect(socketPath));
    assert.equal(await peer.line(), 'sent');
    const buf = Buffer.alloc(16);
    const message = native.recv(fd, buf, 0, 16)!;
    const fds = message.fds.map((received) => res.fd(received));
    assert.equal(buf.toString('utf8', 0, message.bytes), 'fds');
    assert.equal(message.truncated, false);
    assert.equal(fds.length, count);
    assert.equal(new Set(fds).size, count);
    assert.ok(fds.every((received) => fdTarget(received) === '/dev/null' && hasCloexec(received)));
    for (const received of fds) res.close(received);
    await peer.exited;
    assert.deepEqual(native.recv(fd, buf, 0, 16), { bytes: 0, fds: [], truncated: false });
  }
  // The kernel refuses a 254th descriptor on the sending side.
  const socketPath = res.path('fds-254.sock');
  const peer = new Child(t, 'python3', ['-c', PY_SEND_FDS, socketPath, '254']);
  assert.equal(await peer.line(), 'listening');
  res.fd(native.unixConnect(socketPath));
  assert.equal(await peer.line(), `error ${os.constants.errno.EINVAL}`);
});

test(
  'MSG_CTRUNC: with a full fd table, recv closes what arrived and reports truncated',
  TIMEOUT,
  async (t) => {
    // The receiver leaves room for one descriptor and is sent three: the kernel installs one,
    // drops two and sets MSG_CTRUNC. A control buffer too small for 253 fds cannot be provoked.
    const res = new Resources(t);
    const socketPath = res.path('ctrunc.sock');
    const peer = new Child(t, 'python3', ['-c', PY_SEND_FDS, socketPath, '3']);
    assert.equal(await peer.line(), 'listening');
    const receiver = `
    const a = require(process.argv[1]);
    const fs = require('fs');
    const fd = a.unixConnect(process.argv[2]);
    const count = () => fs.readdirSync('/proc/self/fd').length;
    const before = count();
    const fillers = [];
    try { for (;;) fillers.push(fs.openSync('/dev/null', 'r')); }
    catch (e) { if (e.code !== 'EMFILE') throw e; }
    fs.closeSync(fillers.pop());
    const poller = new a.Poller(fd, () => {
      const message = a.recv(fd, Buffer.alloc(16), 0, 16);
      poller.close();
      for (const filler of fillers) fs.closeSync(filler);
      console.log(JSON.stringify({ ...message, leaked: count() - before }));
      a.close(fd);
    });
    poller.start(1);`;
    const child = new Child(t, 'sh', [
      '-c',
      'ulimit -n 64 && exec "$0" "$@"',
      process.execPath,
      '-e',
      receiver,
      ADDON,
      socketPath,
    ]);
    const result = JSON.parse(await child.line()) as unknown;
    assert.deepEqual(result, { bytes: 3, fds: [], truncated: true, leaked: 0 });
    assert.equal((await child.exited).code, 0);
  },
);

test(
  'recv never reads past bytes that carried descriptors (kernel message boundaries)',
  TIMEOUT,
  (t) => {
    const res = new Resources(t);
    const { client, server } = res.pair();
    const send = (text: string, fd = -1) => native.send(client, Buffer.from(text), fd);
    const recv = (length = 64) => {
      const buf = Buffer.alloc(length);
      const message = native.recv(server, buf, 0, length)!;
      message.fds.forEach((fd) => res.close(fd));
      return [buf.toString('utf8', 0, message.bytes), message.fds.length];
    };
    send('a');
    send('bc', client);
    send('d');
    send('ef', client);
    // Plain bytes before a descriptor-carrying write are merged into it; nothing after it is.
    assert.deepEqual(recv(), ['abc', 1]);
    assert.deepEqual(recv(), ['def', 1]);
    // A short read takes the descriptors with the first part of the write.
    send('ghij', client);
    assert.deepEqual(recv(2), ['gh', 1]);
    assert.deepEqual(recv(), ['ij', 0]);
  },
);

test(
  'send refuses to attach a descriptor to zero bytes (the kernel would drop it)',
  TIMEOUT,
  (t) => {
    const res = new Resources(t);
    const { client } = res.pair();
    assert.throws(() => native.send(client, Buffer.alloc(0), client), {
      name: 'RangeError',
      code: 'ERR_OUT_OF_RANGE',
    });
    assert.equal(native.send(client, Buffer.alloc(0), -1), 0);
  },
);

test(
  'EAGAIN: accept -1, recv null, send -1 or partial, connect to a full backlog throws',
  TIMEOUT,
  (t) => {
    const res = new Resources(t);
    const { listener, client, server } = res.pair();
    assert.equal(native.accept(listener), -1);
    assert.equal(native.recv(server, Buffer.alloc(8), 0, 8), null);

    const big = Buffer.alloc(16 << 20);
    const partial = native.send(client, big, -1);
    assert.ok(partial > 0 && partial < big.length, `wrote ${partial} of ${big.length}`);
    assert.equal(native.send(client, big, -1), -1);

    // A unix listener with backlog 0 queues one connection and refuses the next with EAGAIN.
    const fullPath = res.path('full.sock');
    const full = res.fd(native.unixListen(fullPath, 0));
    res.fd(native.unixConnect(fullPath));
    throwsWithoutLeak(() => native.unixConnect(fullPath), {
      code: 'EAGAIN',
      errno: errnoOf('EAGAIN'),
      syscall: 'connect',
      path: fullPath,
    });
    assert.ok(res.fd(native.accept(full)) >= 0);
  },
);

test('recv reports end of stream as 0 bytes', TIMEOUT, (t) => {
  const res = new Resources(t);
  const { client, server } = res.pair();
  native.send(client, Buffer.from('last'), -1);
  res.close(client);
  assert.equal(native.recv(server, Buffer.alloc(8), 0, 8)!.bytes, 4);
  assert.deepEqual(native.recv(server, Buffer.alloc(8), 0, 8), {
    bytes: 0,
    fds: [],
    truncated: false,
  });
});

/** Splits what recvEach returned into its messages: [bytes, fdCount, ...fds] each. */
function eachMessage(flat: number[]): { bytes: number; count: number; fds: number[] }[] {
  const messages = [];
  for (let i = 0; i < flat.length;) {
    const [bytes, count] = [flat[i]!, flat[i + 1]!];
    assert.ok(count >= -1, `bad fd count ${count} in ${JSON.stringify(flat)}`);
    const fds = flat.slice(i + 2, i + 2 + Math.max(count, 0));
    assert.equal(fds.length, Math.max(count, 0), `short message in ${JSON.stringify(flat)}`);
    messages.push({ bytes, count, fds });
    i += 2 + fds.length;
  }
  return messages;
}

/** Files in the test's directory, open for writing, each sent as a descriptor. */
function openFiles(res: Resources, count: number): number[] {
  return Array.from({ length: count }, (_, i) => res.fd(fs.openSync(res.path(`file-${i}`), 'w')));
}

/** The same open file: same device and inode. */
function sameFile(a: number, b: number): boolean {
  const [x, y] = [fs.fstatSync(a), fs.fstatSync(b)];
  return x.dev === y.dev && x.ino === y.ino;
}

/**
 * The receiving end of a pair with two one-descriptor messages queued, then a pending ECONNRESET:
 * the peer closed with unread data.
 */
function resetAfterTwo(res: Resources, file: number): number {
  const { client, server } = res.pair();
  native.send(client, Buffer.from('a'), file);
  native.send(client, Buffer.from('b'), file);
  native.send(server, Buffer.from('unread'), -1);
  res.close(client);
  return server;
}

describe('recvEach', () => {
  test('reads a burst of one-descriptor messages in one call, in order', TIMEOUT, (t) => {
    const res = new Resources(t);
    const { client, server } = res.pair();
    const files = openFiles(res, 3);
    const tcp = res.fd(native.inetListen('127.0.0.1', 0, 4, 8, {}));
    const sent = [files[0]!, tcp, files[1]!, files[2]!];
    const before = openFdCount();
    sent.forEach((fd, i) => {
      const text = String(i + 1).repeat(i + 1); // '1', '22', '333', '4444'
      assert.equal(native.send(client, Buffer.from(text), fd), text.length);
    });

    const buf = Buffer.alloc(64);
    const flat = native.recvEach(server, buf, 16)!;
    const messages = eachMessage(flat);
    assert.deepEqual(
      messages.map(({ bytes, count }) => [bytes, count]),
      [
        [1, 1],
        [2, 1],
        [3, 1],
        [4, 1],
      ],
    );
    // Each message was read into the buffer from its start: the last one is what is left there.
    assert.equal(buf.toString('utf8', 0, 4), '4444');
    const received = messages.map(({ fds }) => fds[0]!);
    assert.equal(openFdCount(), before + 4);
    assert.equal(new Set([...received, ...sent]).size, 8, 'every received fd is a new one');
    for (const [i, fd] of received.entries()) {
      assert.equal(hasCloexec(fd), true, `fd ${fd} lacks FD_CLOEXEC`);
      assert.equal(fdTarget(fd), fdTarget(sent[i]!));
      assert.ok(sameFile(fd, sent[i]!), `message ${i} carried the wrong file`);
    }
    assert.deepEqual(native.socketInfo(received[1]!), native.socketInfo(tcp));
    // A received file writes to the sent file.
    fs.writeSync(received[0]!, 'via the received fd');
    assert.equal(fs.readFileSync(res.path('file-0'), 'utf8'), 'via the received fd');

    assert.equal(native.recvEach(server, buf, 16), null);
    for (const fd of received) native.close(fd);
    assert.equal(openFdCount(), before);
  });

  test('reads at most max messages; the rest waits for the next call', TIMEOUT, (t) => {
    const res = new Resources(t);
    const { client, server } = res.pair();
    const [file] = openFiles(res, 1);
    const before = openFdCount();
    for (let i = 1; i <= 5; i++) native.send(client, Buffer.alloc(i, 'x'), file!);
    const buf = Buffer.alloc(16);
    const calls = [2, 2, 2, 1].map((max) => eachMessage(native.recvEach(server, buf, max) ?? []));
    assert.deepEqual(
      calls.map((messages) => messages.map(({ bytes, count }) => [bytes, count])),
      [
        [
          [1, 1],
          [2, 1],
        ],
        [
          [3, 1],
          [4, 1],
        ],
        [[5, 1]],
        [],
      ],
    );
    const received = calls.flat().flatMap(({ fds }) => fds);
    assert.equal(new Set(received).size, 5);
    assert.ok(received.every((fd) => sameFile(fd, file!) && hasCloexec(fd)));
    for (const fd of received) native.close(fd);
    assert.equal(openFdCount(), before);
  });

  test('returns null when nothing is queued', TIMEOUT, (t) => {
    const res = new Resources(t);
    const { client, server } = res.pair();
    assert.equal(native.recvEach(server, Buffer.alloc(8), 1), null);
    assert.equal(native.recvEach(client, Buffer.alloc(8), 100), null);
  });

  test(
    'stops after a message without descriptors, and reports the end of stream as [0, 0]',
    TIMEOUT,
    (t) => {
      const res = new Resources(t);
      const { client, server } = res.pair();
      const [file] = openFiles(res, 1);
      const before = openFdCount();
      native.send(client, Buffer.from('a'), file!);
      native.send(client, Buffer.from('bb'), file!);
      native.send(client, Buffer.from('ccc'), -1);
      res.close(client);
      const buf = Buffer.alloc(16);
      const messages = eachMessage(native.recvEach(server, buf, 10)!);
      assert.deepEqual(
        messages.map(({ bytes, count }) => [bytes, count]),
        [
          [1, 1],
          [2, 1],
          [3, 0],
        ],
      );
      assert.equal(buf.toString('utf8', 0, 3), 'ccc');
      // Stopped before the end of stream, which the next call finds, and the one after it too.
      assert.deepEqual(native.recvEach(server, buf, 10), [0, 0]);
      assert.deepEqual(native.recvEach(server, buf, 10), [0, 0]);
      for (const { fds } of messages) fds.forEach((fd) => native.close(fd));
      assert.equal(openFdCount(), before - 1); // the client
    },
  );

  test('a one-descriptor message then the end of stream, in one call', TIMEOUT, (t) => {
    const res = new Resources(t);
    const { client, server } = res.pair();
    const [file] = openFiles(res, 1);
    native.send(client, Buffer.from('last'), file!);
    res.close(client);
    const flat = native.recvEach(server, Buffer.alloc(8), 10)!;
    assert.equal(flat.length, 5);
    const received = res.fd(flat[2]!);
    assert.deepEqual(flat, [4, 1, received, 0, 0]);
    assert.ok(sameFile(received, file!));
  });

  test('stops after a message with two descriptors', TIMEOUT, async (t) => {
    const res = new Resources(t);
    const socketPath = res.path('two.sock');
    const peer = new Child(t, 'python3', ['-c', PY_SEND_FDS, socketPath, '2']);
    assert.equal(await peer.line(), 'listening');
    const fd = res.fd(native.unixConnect(socketPath));
    assert.equal(await peer.line(), 'sent');
    await peer.exited; // the end of stream is queued behind the message
    const buf = Buffer.alloc(16);
    const flat = native.recvEach(fd, buf, 10)!;
    assert.equal(flat.length, 4, JSON.stringify(flat));
    const fds = flat.slice(2).map((received) => res.fd(received));
    assert.deepEqual(flat, [3, 2, ...fds]);
    assert.equal(buf.toString('utf8', 0, 3), 'fds');
    assert.notEqual(fds[0], fds[1]);
    assert.ok(fds.every((received) => fdTarget(received) === '/dev/null' && hasCloexec(received)));
    assert.deepEqual(native.recvEach(fd, buf, 10), [0, 0]);
  });

  test(
    'a truncated message (MSG_CTRUNC) counts -1 and its descriptors are closed',
    TIMEOUT,
    async (t) => {
      // As for recv: room for one descriptor in the fd table, three sent.
      const res = new Resources(t);
      const socketPath = res.path('ctrunc.sock');
      const peer = new Child(t, 'python3', ['-c', PY_SEND_FDS, socketPath, '3']);
      assert.equal(await peer.line(), 'listening');
      const receiver = `
    const a = require(process.argv[1]);
    const fs = require('fs');
    const fd = a.unixConnect(process.argv[2]);
    const count = () => fs.readdirSync('/proc/self/fd').length;
    const before = count();
    const fillers = [];
    try { for (;;) fillers.push(fs.openSync('/dev/null', 'r')); }
    catch (e) { if (e.code !== 'EMFILE') throw e; }
    fs.closeSync(fillers.pop());
    const poller = new a.Poller(fd, () => {
      const result = a.recvEach(fd, Buffer.alloc(16), 10);
      poller.close();
      for (const filler of fillers) fs.closeSync(filler);
      console.log(JSON.stringify({ result, leaked: count() - before }));
      a.close(fd);
    });
    poller.start(1);`;
      const child = new Child(t, 'sh', [
        '-c',
        'ulimit -n 64 && exec "$0" "$@"',
        process.execPath,
        '-e',
        receiver,
        ADDON,
        socketPath,
      ]);
      assert.deepEqual(JSON.parse(await child.line()), { result: [3, -1], leaked: 0 });
      assert.equal((await child.exited).code, 0, child.stderr);
    },
  );

  test('a socket error: thrown when nothing was read, else by the next call', TIMEOUT, (t) => {
    const res = new Resources(t);
    const [file, notSocket] = openFiles(res, 2);
    const buf = Buffer.alloc(8);
    assert.throws(() => native.recvEach(BAD_FD, buf, 1), {
      name: 'Error',
      message: 'recvmsg EBADF',
      code: 'EBADF',
      errno: errnoOf('EBADF'),
      syscall: 'recvmsg',
    });
    assert.throws(() => native.recvEach(notSocket!, buf, 1), {
      code: 'ENOTSOCK',
      syscall: 'recvmsg',
    });

    // With max 2 the call stops before meeting the error; the next one throws it.
    const reset = resetAfterTwo(res, file!);
    const flat = native.recvEach(reset, buf, 2)!;
    assert.equal(flat.length, 6, JSON.stringify(flat));
    const fds = [flat[2]!, flat[5]!].map((fd) => res.fd(fd));
    assert.deepEqual(flat, [1, 1, fds[0], 1, 1, fds[1]]);
    assert.throws(() => native.recvEach(reset, buf, 10), {
      message: 'recvmsg ECONNRESET',
      code: 'ECONNRESET',
      errno: errnoOf('ECONNRESET'),
      syscall: 'recvmsg',
    });
    assert.deepEqual(native.recvEach(reset, buf, 10), [0, 0]);
  });

  test(
    'a reset met after reading messages ends the batch and reads as the end of stream',
    TIMEOUT,
    (t) => {
      const res = new Resources(t);
      const [file] = openFiles(res, 1);
      const reset = resetAfterTwo(res, file!);
      const buf = Buffer.alloc(8);
      const messages = eachMessage(native.recvEach(reset, buf, 10)!);
      messages.forEach(({ fds }) => fds.forEach((fd) => res.fd(fd)));
      assert.deepEqual(
        messages.map(({ bytes, count }) => [bytes, count]),
        [
          [1, 1],
          [1, 1],
        ],
      );
      // The kernel clears a pending socket error (sk_err) when recvmsg reports it: the loop met
      // it after the two messages, so what is left is the end of stream.
      assert.deepEqual(native.recvEach(reset, buf, 10), [0, 0]);
    },
  );

  test('refuses an empty buffer without reading', TIMEOUT, (t) => {
    const res = new Resources(t);
    const { client, server } = res.pair();
    native.send(client, Buffer.from('x'), -1);
    for (const empty of [Buffer.alloc(0), new Uint8Array(0), Buffer.alloc(8).subarray(8)]) {
      assert.throws(() => native.recvEach(server, empty, 1), {
        name: 'RangeError',
        code: 'ERR_OUT_OF_RANGE',
      });
    }
    assert.deepEqual(native.recvEach(server, Buffer.alloc(8), 1), [1, 0]);
  });
});
