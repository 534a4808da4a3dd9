/**
 * The native addon against the real kernel: real sockets, real descriptors, real processes.
 * Peers that Node cannot play (several descriptors in one message, unix datagram receivers) are
 * Python one-liners; anything that needs another process (flock, exit behaviour) is a child.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { Deadline } from '../src/deadline.js';
import { ErrorCodes, TablerollError } from '../src/errors.js';
import {
  DISCONNECT,
  READABLE,
  WRITABLE,
  native,
  type FileStatus,
  type PollCallback,
  type Poller,
} from '../src/native.js';

const ADDON = fileURLToPath(new URL('../../build/Release/tableroll.node', import.meta.url));
const TIMEOUT = { timeout: 30_000 };
/** Above RLIMIT_NOFILE, so never an open descriptor. */
const BAD_FD = 999_999;
const O_CLOEXEC = 0o2000000;
const O_NONBLOCK = 0o4000;

// ---------------------------------------------------------------------------------------------
// Helpers

/** Descriptors and Pollers a test opened; whatever it did not close is closed when it ends. */
class Resources {
  private readonly fds = new Set<number>();
  private readonly pollers: Poller[] = [];
  readonly dir: string;

  constructor(t: TestContext) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tableroll-native-'));
    t.after(() => {
      for (const poller of this.pollers) poller.close();
      for (const fd of this.fds) native.close(fd);
      fs.rmSync(this.dir, { recursive: true, force: true });
    });
  }

  fd(fd: number): number {
    assert.ok(fd >= 0, `expected a descriptor, got ${fd}`);
    this.fds.add(fd);
    return fd;
  }

  close(fd: number): void {
    this.fds.delete(fd);
    native.close(fd);
  }

  /** The descriptor now belongs to Node, which closes it. */
  release(fd: number): number {
    this.fds.delete(fd);
    return fd;
  }

  poller(fd: number, callback: PollCallback): Poller {
    const poller = new native.Poller(fd, callback);
    this.pollers.push(poller);
    return poller;
  }

  path(name: string): string {
    return path.join(this.dir, name);
  }

  /** A connected pair of unix stream sockets, made by the addon. */
  pair(): { listener: number; client: number; server: number; socketPath: string } {
    const socketPath = this.path(`${randomUUID().slice(0, 8)}.sock`);
    const listener = this.fd(native.unixListen(socketPath, 8));
    const client = this.fd(native.unixConnect(socketPath));
    const server = this.fd(native.accept(listener));
    return { listener, client, server, socketPath };
  }
}

/** A child process read line by line; killed when the test ends. */
class Child {
  readonly process: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  stderr = '';
  private readonly lines: string[] = [];
  private ended = false;
  private wake: () => void = () => {};

  constructor(t: TestContext, command: string, args: string[]) {
    this.process = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const input = readline.createInterface({ input: this.process.stdout! });
    input.on('line', (line) => {
      this.lines.push(line);
      this.wake();
    });
    input.on('close', () => {
      this.ended = true;
      this.wake();
    });
    this.process.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    // 'close' rather than 'exit': our ends of its pipes are closed too, so fd counts are exact.
    this.exited = new Promise((resolve) =>
      this.process.on('close', (code, signal) => resolve({ code, signal })),
    );
    t.after(async () => {
      if (this.process.exitCode === null && this.process.signalCode === null) {
        this.process.kill('SIGKILL');
      }
      await this.exited;
    });
  }

  async line(): Promise<string> {
    while (this.lines.length === 0) {
      if (this.ended) throw new Error(`child printed nothing more; stderr: ${this.stderr}`);
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    return this.lines.shift()!;
  }
}

/** Node running `script` (CommonJS) with the addon's path as argv[1] and `args` after it. */
function nodeChild(t: TestContext, script: string, ...args: string[]): Child {
  return new Child(t, process.execPath, ['-e', script, ADDON, ...args]);
}

/** The open file's flags, with O_CLOEXEC standing for the descriptor's FD_CLOEXEC. */
function fdFlags(fd: number): number {
  const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const flags = /^flags:\s+([0-7]+)$/m.exec(info);
  assert.ok(flags, `no flags line in fdinfo of ${fd}`);
  return parseInt(flags[1]!, 8);
}

function hasCloexec(fd: number): boolean {
  return (fdFlags(fd) & O_CLOEXEC) !== 0;
}

function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** `fn` must throw as `expected` and leave no descriptor behind (a half-made socket). */
function throwsWithoutLeak(fn: () => unknown, expected: object): void {
  const before = openFdCount();
  assert.throws(fn, expected);
  assert.equal(openFdCount(), before, 'the failed call leaked a descriptor');
}

/** What a descriptor refers to, such as 'socket:[12345]'. */
function fdTarget(fd: number): string {
  return fs.readlinkSync(`/proc/self/fd/${fd}`);
}

function errnoOf(code: keyof typeof os.constants.errno): number {
  return -os.constants.errno[code];
}

/** The first event on `fd`; the Poller is closed when it fires. */
function nextEvent(
  res: Resources,
  fd: number,
  events: number,
): Promise<{ err: Error | null; events: number }> {
  return new Promise((resolve) => {
    const poller = res.poller(fd, (err, fired) => {
      poller.close();
      resolve({ err, events: fired });
    });
    poller.start(events);
  });
}

/** Resolves once the event loop has run a complete poll phase after this call. */
async function afterAPollPhase(): Promise<void> {
  // The first immediate ends the current loop iteration; the second runs in the check phase of
  // the next one, after its poll phase has dispatched every ready descriptor.
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
}

// Listens on argv[1], accepts one connection and sends one message ('fds') carrying either
// argv[2] copies of a /dev/null descriptor or, for '@name', a stream socket bound to that
// abstract name. Prints 'listening', then 'sent' or 'error <errno>'.
const PY_SEND_FDS = `
import os, socket, sys
listener = socket.socket(socket.AF_UNIX)
listener.bind(sys.argv[1])
listener.listen(1)
print('listening', flush=True)
conn, _ = listener.accept()
if sys.argv[2].startswith('@'):
    extra = socket.socket(socket.AF_UNIX)
    extra.bind('\\0' + sys.argv[2][1:])
    fds = [extra.fileno()]
else:
    fds = [os.open('/dev/null', os.O_RDONLY)] * int(sys.argv[2])
try:
    socket.send_fds(conn, [b'fds'], fds)
    print('sent', flush=True)
except OSError as e:
    print('error', e.errno, flush=True)
`;

// Binds a unix datagram socket to argv[1] ('@name' for the abstract namespace, bound with the
// exact name length), prints 'ready', then the first datagram as JSON.
const PY_RECV_DATAGRAM = `
import json, socket, sys
name = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\\0' + name[1:] if name.startswith('@') else name)
print('ready', flush=True)
print(json.dumps(s.recv(4096).decode()), flush=True)
`;

// ---------------------------------------------------------------------------------------------
// Descriptors

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
// polls FDSize in /proc/self/status until it reaches argv[2] or 10 s pass. Prints {before, after,
// returned, fdsBefore, fdsAfter} (the open fds, which the growth must leave as they were), then
// 'alive' once it has opened and closed a file.
const GROW_FD_TABLE = `
const a = require(process.argv[1]);
const fs = require('fs');
const fdSize = () =>
  Number(/^FDSize:\\s+(\\d+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]);
(async () => {
  const wanted = Number(process.argv[2]);
  const before = fdSize();
  const source = fs.openSync('/dev/null', 'r');
  const openFds = () => fs.readdirSync('/proc/self/fd').length;
  const fdsBefore = openFds();
  const returned = process.argv
    .slice(3)
    .map((highest) => typeof a.growFdTable(source, Number(highest)));
  const deadline = Date.now() + 10000;
  while (fdSize() < wanted && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  const fdsAfter = openFds();
  console.log(JSON.stringify({ before, after: fdSize(), returned, fdsBefore, fdsAfter }));
  fs.closeSync(fs.openSync('/dev/null', 'r'));
  console.log('alive');
})();`;

test('growFdTable grows the fd table on a thread of its own', TIMEOUT, async (t) => {
  const child = nodeChild(t, GROW_FD_TABLE, '4096', '4095');
  const { before, after, returned, fdsBefore, fdsAfter } = JSON.parse(await child.line()) as {
    before: number;
    after: number;
    returned: string[];
    fdsBefore: number;
    fdsAfter: number;
  };
  assert.deepEqual(returned, ['undefined']);
  assert.ok(before < 4096, `the table already held ${before} descriptors`);
  assert.ok(after >= 4096, `FDSize ${before} grew only to ${after}`);
  assert.equal(fdsAfter, fdsBefore, 'the growth left a descriptor open');
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

// ---------------------------------------------------------------------------------------------
// timerFd

/** How many times a timerfd expired since it was last read: its 8-byte little-endian counter. */
function readExpirations(fd: number): bigint {
  const counter = Buffer.alloc(8);
  assert.equal(fs.readSync(fd, counter), 8);
  return counter.readBigUInt64LE();
}

/** What is left of a timerfd's time, in ms, from /proc/self/fdinfo. */
function timeLeft(fd: number): number {
  const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const value = /^it_value: \((\d+), (\d+)\)$/m.exec(info);
  assert.ok(value, `no it_value line in fdinfo of ${fd}: ${info}`);
  return Number(value[1]) * 1e3 + Number(value[2]) / 1e6;
}

describe('timerFd', () => {
  test('is a one-shot CLOCK_MONOTONIC timerfd, non-blocking and close-on-exec', TIMEOUT, (t) => {
    const res = new Resources(t);
    const before = openFdCount();
    const fd = res.fd(native.timerFd(10_000));
    assert.equal(openFdCount(), before + 1);
    assert.equal(fdTarget(fd), 'anon_inode:[timerfd]');
    assert.equal(hasCloexec(fd), true);
    assert.equal(fdFlags(fd) & O_NONBLOCK, O_NONBLOCK);
    const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    assert.match(info, /^clockid: 1$/m, 'not CLOCK_MONOTONIC');
    assert.match(info, /^it_interval: \(0, 0\)$/m, 'not one-shot');
    const left = timeLeft(fd);
    assert.ok(left > 9_000 && left <= 10_000, `${left} ms left of 10 s`);
    // Not expired yet, and non-blocking: reading fails at once instead of waiting.
    assert.throws(() => fs.readSync(fd, Buffer.alloc(8)), { code: 'EAGAIN' });

    // The longest wait allowed, 1e12 ms, fits the timespec without overflowing.
    const longest = res.fd(native.timerFd(1e12));
    assert.ok(timeLeft(longest) > 1e12 - 60_000, `${timeLeft(longest)} ms left of 1e12`);
    res.close(longest);
    res.close(fd);
    assert.equal(openFdCount(), before);
  });

  test('becomes readable once its time has passed, and only once', TIMEOUT, async (t) => {
    const res = new Resources(t);
    const before = openFdCount();
    const start = performance.now();
    const fd = res.fd(native.timerFd(30));
    const fired = await nextEvent(res, fd, READABLE);
    const elapsed = performance.now() - start;
    assert.deepEqual(fired, { err: null, events: READABLE });
    assert.ok(elapsed >= 25, `a 30 ms timer fired after ${elapsed.toFixed(1)} ms`);
    assert.equal(readExpirations(fd), 1n);
    assert.throws(() => fs.readSync(fd, Buffer.alloc(8)), { code: 'EAGAIN' });
    res.close(fd);
    assert.equal(openFdCount(), before);
  });

  test('0 ms and a fraction of a millisecond fire at once', TIMEOUT, async (t) => {
    // A zero it_value would disarm a timerfd, which would then never fire.
    const res = new Resources(t);
    for (const ms of [0, 0.25, 1e-9]) {
      const fd = res.fd(native.timerFd(ms));
      assert.deepEqual(await nextEvent(res, fd, READABLE), { err: null, events: READABLE });
      assert.equal(readExpirations(fd), 1n, `timerFd(${ms})`);
      res.close(fd);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Passing descriptors

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

test('peerCredentials names the process at the other end', TIMEOUT, (t) => {
  const res = new Resources(t);
  const { client, server } = res.pair();
  const expected = { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() };
  assert.deepEqual(native.peerCredentials(server), expected);
  assert.deepEqual(native.peerCredentials(client), expected);
});

// ---------------------------------------------------------------------------------------------
// Inet and unix sockets, socketInfo

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

// ---------------------------------------------------------------------------------------------
// Files: mkdir, stat, fstat, open, chmod, fchmod, pread, pwrite, ftruncate

/** The process's umask, read without changing it. */
function currentUmask(): number {
  const umask = /^Umask:\s+([0-7]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  assert.ok(umask, 'no Umask line in /proc/self/status');
  return parseInt(umask[1]!, 8);
}

/** The permission bits of `target`, setuid, setgid and sticky included. */
function permissions(target: string): number {
  return fs.statSync(target).mode & 0o7777;
}

/** The fields of fs.Stats that native.stat and native.fstat return. */
function statusOf({ mode, uid, size, ino, dev, nlink, mtimeMs }: fs.Stats): FileStatus {
  return { mode, uid, size, ino, dev, nlink, mtimeMs };
}

describe('files', () => {
  test(
    'mkdir: true when created, false when the name exists, errors with the path',
    TIMEOUT,
    (t) => {
      const res = new Resources(t);
      const before = openFdCount();
      const dir = res.path('dir');
      assert.equal(native.mkdir(dir, 0o777), true);
      assert.ok(fs.statSync(dir).isDirectory());
      assert.equal(permissions(dir), 0o777 & ~currentUmask());
      const owned = res.path('owned');
      assert.equal(native.mkdir(owned, 0o700), true);
      assert.equal(permissions(owned), 0o700);

      // Something by that name already, a directory or a file: left as it is.
      fs.chmodSync(dir, 0o711);
      assert.equal(native.mkdir(dir, 0o700), false);
      assert.equal(permissions(dir), 0o711);
      const file = res.path('file');
      fs.writeFileSync(file, 'contents');
      assert.equal(native.mkdir(file, 0o700), false);
      assert.equal(fs.readFileSync(file, 'utf8'), 'contents');

      const orphan = res.path('missing/child');
      assert.throws(() => native.mkdir(orphan, 0o700), {
        name: 'Error',
        message: `mkdir ENOENT ${orphan}`,
        code: 'ENOENT',
        errno: errnoOf('ENOENT'),
        syscall: 'mkdir',
        path: orphan,
      });
      assert.equal(fs.existsSync(res.path('missing')), false);
      const underFile = path.join(file, 'child');
      assert.throws(() => native.mkdir(underFile, 0o700), {
        message: `mkdir ENOTDIR ${underFile}`,
        code: 'ENOTDIR',
        errno: errnoOf('ENOTDIR'),
        syscall: 'mkdir',
        path: underFile,
      });
      assert.equal(openFdCount(), before);
    },
  );

  test('stat and fstat give the fields of fs.statSync and fs.fstatSync', TIMEOUT, (t) => {
    const res = new Resources(t);
    const file = res.path('file');
    fs.writeFileSync(file, 'twelve bytes');
    fs.chmodSync(file, 0o640);
    const link = res.path('link');
    fs.symlinkSync(file, link);
    const fd = res.fd(fs.openSync(file, 'r'));
    const before = openFdCount();

    const expected = statusOf(fs.statSync(file));
    assert.equal(expected.size, 12);
    assert.deepEqual(native.stat(file), expected);
    assert.deepEqual(native.stat(link), expected, 'stat follows a symbolic link');
    assert.deepEqual(native.lstat(link), statusOf(fs.lstatSync(link)), 'lstat does not');
    assert.equal(native.lstat(link).mode & 0o170000, 0o120000); // S_IFLNK
    assert.deepEqual(native.lstat(file), expected);
    assert.deepEqual(native.fstat(fd), statusOf(fs.fstatSync(fd)));
    assert.deepEqual(native.fstat(fd), expected);
    assert.equal(native.stat(file).mode, 0o100640); // S_IFREG | 0640
    assert.deepEqual(native.stat(res.dir), statusOf(fs.statSync(res.dir)));
    assert.equal(native.stat(res.dir).mode & 0o170000, 0o040000); // S_IFDIR
    const { client } = res.pair();
    assert.deepEqual(native.fstat(client), statusOf(fs.fstatSync(client)));

    // Sizes follow the file.
    fs.appendFileSync(file, '!');
    assert.equal(native.fstat(fd).size, 13);
    assert.equal(native.stat(file).size, 13);
    fs.linkSync(file, res.path('hardlink'));
    assert.equal(native.stat(file).nlink, 2);

    const missing = res.path('missing');
    assert.throws(() => native.stat(missing), {
      name: 'Error',
      message: `stat ENOENT ${missing}`,
      code: 'ENOENT',
      errno: errnoOf('ENOENT'),
      syscall: 'stat',
      path: missing,
    });
    assert.throws(() => native.stat(path.join(file, 'child')), {
      code: 'ENOTDIR',
      syscall: 'stat',
      path: path.join(file, 'child'),
    });
    assert.equal(openFdCount(), before + 3); // the pair
  });

  test('open adds close-on-exec and creates with the mode; errors carry the path', TIMEOUT, (t) => {
    const res = new Resources(t);
    const { O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_TRUNC } = fs.constants;
    const before = openFdCount();
    const file = res.path('created');
    const fd = res.fd(native.open(file, O_RDWR | O_CREAT, 0o640));
    assert.equal(openFdCount(), before + 1);
    assert.equal(hasCloexec(fd), true);
    assert.equal(fdTarget(fd), file);
    assert.ok(fs.statSync(file).isFile());
    assert.equal(permissions(file), 0o640 & ~currentUmask());
    assert.equal(fs.writeSync(fd, 'written'), 7);
    assert.equal(fs.readFileSync(file, 'utf8'), 'written');

    // An existing file: O_CREAT without O_EXCL opens it, and its mode stays.
    const again = res.fd(native.open(file, O_RDWR | O_CREAT, 0o600));
    assert.equal(hasCloexec(again), true);
    assert.equal(permissions(file), 0o640 & ~currentUmask());
    // The access mode is the one asked for.
    const reader = res.fd(native.open(file, O_RDONLY, 0));
    assert.equal(hasCloexec(reader), true);
    assert.equal(fdFlags(reader) & 3, O_RDONLY);
    assert.throws(() => fs.writeSync(reader, 'x'), { code: 'EBADF' });
    const writer = res.fd(native.open(file, O_WRONLY | O_TRUNC, 0));
    assert.equal(fdFlags(writer) & 3, O_WRONLY);
    assert.equal(fs.statSync(file).size, 0, 'O_TRUNC emptied the file');
    for (const opened of [fd, again, reader, writer]) res.close(opened);
    assert.equal(openFdCount(), before);

    throwsWithoutLeak(() => native.open(file, O_RDWR | O_CREAT | O_EXCL, 0o600), {
      name: 'Error',
      message: `open EEXIST ${file}`,
      code: 'EEXIST',
      errno: errnoOf('EEXIST'),
      syscall: 'open',
      path: file,
    });
    const missing = res.path('missing');
    throwsWithoutLeak(() => native.open(missing, O_RDONLY, 0), {
      name: 'Error',
      message: `open ENOENT ${missing}`,
      code: 'ENOENT',
      errno: errnoOf('ENOENT'),
      syscall: 'open',
      path: missing,
    });
    assert.equal(fs.existsSync(missing), false);
    throwsWithoutLeak(() => native.open(res.dir, O_RDWR, 0), {
      code: 'EISDIR',
      syscall: 'open',
      path: res.dir,
    });
    // O_CREAT | O_EXCL makes a new file with exactly the mode (less the umask).
    const exclusive = res.path('exclusive');
    res.close(res.fd(native.open(exclusive, O_WRONLY | O_CREAT | O_EXCL, 0o600)));
    assert.equal(permissions(exclusive), 0o600 & ~currentUmask());
    assert.equal(openFdCount(), before);
  });

  test('chmod and fchmod set the mode, with no umask applied', TIMEOUT, (t) => {
    const res = new Resources(t);
    const file = res.path('file');
    fs.writeFileSync(file, '', { mode: 0o600 });
    const fd = res.fd(fs.openSync(file, 'r'));
    const before = openFdCount();
    for (const mode of [0o777, 0o4750, 0o640, 0]) {
      native.chmod(file, mode);
      assert.equal(permissions(file), mode, `chmod ${mode.toString(8)}`);
    }
    for (const mode of [0o666, 0o2710, 0o600]) {
      native.fchmod(fd, mode);
      assert.equal(permissions(file), mode, `fchmod ${mode.toString(8)}`);
      assert.equal(native.fstat(fd).mode, 0o100000 | mode);
    }
    const dir = res.path('dir');
    fs.mkdirSync(dir, { mode: 0o700 });
    native.chmod(dir, 0o1777);
    assert.equal(permissions(dir), 0o1777);
    assert.ok(fs.statSync(dir).isDirectory());

    const missing = res.path('missing');
    assert.throws(() => native.chmod(missing, 0o600), {
      name: 'Error',
      message: `chmod ENOENT ${missing}`,
      code: 'ENOENT',
      errno: errnoOf('ENOENT'),
      syscall: 'chmod',
      path: missing,
    });
    assert.equal(openFdCount(), before);
  });

  test('pread and pwrite at a position leave the file offset alone; ftruncate', TIMEOUT, (t) => {
    const res = new Resources(t);
    const file = res.path('data');
    fs.writeFileSync(file, 'hello world');
    const before = openFdCount();
    const fd = res.fd(native.open(file, fs.constants.O_RDWR, 0));

    const word = Buffer.alloc(5);
    assert.equal(native.pread(fd, word, 6), 5);
    assert.equal(word.toString(), 'world');
    // Short at the end of the file, then 0 at it and beyond it.
    const wide = Buffer.alloc(8, '.');
    assert.equal(native.pread(fd, wide, 8), 3);
    assert.equal(wide.toString(), 'rld.....');
    assert.equal(native.pread(fd, wide, 11), 0);
    assert.equal(native.pread(fd, wide, 1000), 0);
    assert.equal(wide.toString(), 'rld.....');
    // Into the end of a buffer through a subarray, as the coordination directory reads.
    const whole = Buffer.alloc(11, '-');
    assert.equal(native.pread(fd, whole.subarray(6), 6), 5);
    assert.equal(whole.toString(), '------world');
    const plain = new Uint8Array(2);
    assert.equal(native.pread(fd, plain, 0), 2);
    assert.deepEqual([...plain], [...Buffer.from('he')]);
    assert.equal(native.pread(fd, Buffer.alloc(0), 0), 0);

    assert.equal(native.pwrite(fd, Buffer.from('J'), 0), 1);
    assert.equal(native.pwrite(fd, Buffer.from('WORLD!'), 6), 6);
    assert.equal(fs.readFileSync(file, 'utf8'), 'Jello WORLD!');
    // Past the end: a hole of zeros before the data.
    assert.equal(native.pwrite(fd, new Uint8Array([0x7a]), 14), 1);
    assert.deepEqual(fs.readFileSync(file), Buffer.from('Jello WORLD!\0\0z'));
    assert.equal(native.pwrite(fd, Buffer.alloc(0), 0), 0);
    // Neither call moved the file offset: a plain read still starts at 0.
    const head = Buffer.alloc(5);
    assert.equal(fs.readSync(fd, head, 0, 5, null), 5);
    assert.equal(head.toString(), 'Jello');

    native.ftruncate(fd, 5);
    assert.equal(native.fstat(fd).size, 5);
    assert.equal(fs.readFileSync(file, 'utf8'), 'Jello');
    native.ftruncate(fd, 8);
    assert.deepEqual(fs.readFileSync(file), Buffer.from('Jello\0\0\0'));
    native.ftruncate(fd, 0);
    assert.equal(native.fstat(fd).size, 0);
    assert.equal(native.pread(fd, word, 0), 0);

    // The kernel's refusals, as Node reports them for fs.readSync and fs.writeSync.
    const reader = res.fd(native.open(file, fs.constants.O_RDONLY, 0));
    assert.throws(() => native.pwrite(reader, Buffer.from('x'), 0), {
      name: 'Error',
      message: 'write EBADF',
      code: 'EBADF',
      errno: errnoOf('EBADF'),
      syscall: 'write',
    });
    assert.throws(() => native.ftruncate(reader, 0), {
      message: 'ftruncate EINVAL',
      code: 'EINVAL',
      errno: errnoOf('EINVAL'),
      syscall: 'ftruncate',
    });
    const writer = res.fd(native.open(file, fs.constants.O_WRONLY, 0));
    assert.throws(() => native.pread(writer, word, 0), {
      message: 'read EBADF',
      code: 'EBADF',
      errno: errnoOf('EBADF'),
      syscall: 'read',
    });
    const directory = res.fd(native.open(res.dir, fs.constants.O_RDONLY, 0));
    assert.throws(() => native.pread(directory, word, 0), { code: 'EISDIR', syscall: 'read' });
    const { client } = res.pair();
    assert.throws(() => native.pread(client, word, 0), { code: 'ESPIPE', syscall: 'read' });
    assert.throws(() => native.pwrite(client, word, 0), { code: 'ESPIPE', syscall: 'write' });
    for (const opened of [fd, reader, writer, directory]) res.close(opened);
    assert.equal(openFdCount(), before + 3); // the pair
  });
});

// ---------------------------------------------------------------------------------------------
// Errors

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

// ---------------------------------------------------------------------------------------------
// Poller

describe('Poller', () => {
  test('fires when readable, writable or disconnected', TIMEOUT, async (t) => {
    const res = new Resources(t);
    const { client, server } = res.pair();
    assert.deepEqual(await nextEvent(res, client, WRITABLE), { err: null, events: WRITABLE });
    const readable = nextEvent(res, server, READABLE);
    native.send(client, Buffer.from('x'), -1);
    assert.deepEqual(await readable, { err: null, events: READABLE });
    native.recv(server, Buffer.alloc(1), 0, 1);
    const hangup = nextEvent(res, server, READABLE | DISCONNECT);
    res.close(client);
    assert.deepEqual(await hangup, { err: null, events: READABLE | DISCONNECT });
  });

  test('reports a socket error as a Node-style error', TIMEOUT, async (t) => {
    const res = new Resources(t);
    const { client, server } = res.pair();
    // Closing with unread data resets the peer (ECONNRESET), which epoll reports as EPOLLERR;
    // libuv turns that into UV_EBADF and stops the watcher.
    native.send(server, Buffer.from('unread'), -1);
    res.close(client);
    const { err, events } = await nextEvent(res, server, WRITABLE);
    assert.equal(events, 0);
    assert.ok(err instanceof Error);
    assert.deepEqual(
      { ...err, message: err.message },
      { code: 'EBADF', errno: errnoOf('EBADF'), syscall: 'uv_poll', message: 'uv_poll EBADF' },
    );
    assert.throws(() => native.recv(server, Buffer.alloc(8), 0, 8), {
      code: 'ECONNRESET',
      syscall: 'recvmsg',
    });
  });

  test('stop, start again and change the mask', TIMEOUT, async (t) => {
    const res = new Resources(t);
    const { client, server } = res.pair();
    const seen: number[] = [];
    let wake = () => {};
    const poller = res.poller(server, (_err, events) => {
      seen.push(events);
      poller.stop();
      wake();
    });
    const nextCall = () => new Promise<void>((resolve) => (wake = resolve));

    poller.start(READABLE);
    poller.stop();
    native.send(client, Buffer.from('x'), -1);
    await afterAPollPhase();
    assert.deepEqual(seen, []);

    let call = nextCall();
    poller.start(READABLE);
    await call;
    assert.deepEqual(seen, [READABLE]);

    // start() replaces the mask: data is still waiting, but only writability is asked for.
    call = nextCall();
    poller.start(READABLE);
    poller.start(WRITABLE);
    await call;
    assert.deepEqual(seen, [READABLE, WRITABLE]);
  });

  test(
    'close is idempotent, silences the callback and makes other methods throw',
    TIMEOUT,
    async (t) => {
      const res = new Resources(t);
      const { client, server } = res.pair();
      let calls = 0;
      const poller = res.poller(client, () => calls++);
      poller.start(WRITABLE);
      poller.close();
      poller.close();
      await afterAPollPhase();
      assert.equal(calls, 0);
      const closed = { code: 'ERR_INVALID_STATE', message: /the Poller is closed/ };
      assert.throws(() => poller.start(WRITABLE), closed);
      assert.throws(() => poller.stop(), closed);
      assert.throws(() => poller.ref(), closed);
      assert.throws(() => poller.unref(), closed);

      // Closed from inside its own callback while the fd stays writable.
      let inside = 0;
      const selfClosing = res.poller(server, () => {
        inside++;
        selfClosing.close();
      });
      selfClosing.start(WRITABLE);
      while (inside === 0) await afterAPollPhase();
      await afterAPollPhase();
      assert.equal(inside, 1);
    },
  );

  test('refuses what libuv cannot watch, and an fd closed under it', TIMEOUT, (t) => {
    const res = new Resources(t);
    const { client } = res.pair();
    const file = res.fd(fs.openSync(res.path('plain'), 'w'));
    const noop = () => {};
    assert.throws(() => new native.Poller(file, noop), { code: 'EPERM', syscall: 'uv_poll_init' });
    assert.throws(() => new native.Poller(BAD_FD, noop), {
      code: 'EBADF',
      syscall: 'uv_poll_init',
    });
    assert.throws(() => Reflect.apply(native.Poller, undefined, [client, noop]), TypeError);

    // libuv allows one active watcher per fd.
    const first = res.poller(client, noop);
    first.start(READABLE);
    assert.throws(() => new native.Poller(client, noop), { code: 'EEXIST' });
    first.stop();
    res.poller(client, noop).close();

    assert.throws(() => first.start(0), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => first.start(8), { code: 'ERR_OUT_OF_RANGE' });
    // libuv would abort the process on epoll_ctl's EBADF: start() must throw instead.
    const copy = res.fd(native.dup(client));
    const orphan = res.poller(copy, noop);
    res.close(copy);
    assert.throws(() => orphan.start(READABLE), { code: 'EBADF', syscall: 'uv_poll_start' });
  });

  test('promise reactions run after each callback, before the next one', TIMEOUT, async (t) => {
    const res = new Resources(t);
    const { client, server } = res.pair();
    const order: string[] = [];
    await new Promise<void>((resolve) => {
      let pending = 2;
      for (const fd of [client, server]) {
        const poller = res.poller(fd, () => {
          poller.close();
          order.push('callback');
          void Promise.resolve().then(() => {
            order.push('microtask');
            if (--pending === 0) resolve();
          });
        });
        poller.start(WRITABLE);
      }
    });
    assert.deepEqual(order, ['callback', 'microtask', 'callback', 'microtask']);
  });

  test(
    'an exception in the callback is an uncaught exception, and leaves no residue',
    TIMEOUT,
    async (t) => {
      const res = new Resources(t);
      const script = `
      const a = require(process.argv[1]);
      const listener = a.unixListen(process.argv[2], 1);
      const fd = a.unixConnect(process.argv[2]);
      const poller = new a.Poller(fd, () => { throw new Error('boom'); });
      process.on('uncaughtException', (err) => {
        poller.close();
        a.close(fd); // would rethrow 'boom' if the exception were left pending in the addon
        a.close(listener);
        console.log('caught ' + err.message);
      });
      poller.start(2);`;
      const child = nodeChild(t, script, res.path('throw.sock'));
      assert.equal(await child.line(), 'caught boom');
      assert.equal((await child.exited).code, 0, child.stderr);
    },
  );

  test('unref lets the process exit while watching; ref keeps it alive', TIMEOUT, async (t) => {
    const res = new Resources(t);
    const script = `
      const a = require(process.argv[1]);
      const fd = a.unixListen(process.argv[2], 1);
      const poller = new a.Poller(fd, () => {
        console.log('event');
        poller.close();
        a.close(a.accept(fd));
        a.close(fd);
      });
      poller.start(1);
      poller.unref();
      if (process.argv[3] === 'ref') poller.ref();
      console.log('watching');`;

    const unrefd = nodeChild(t, script, res.path('unref.sock'), 'unref');
    assert.equal(await unrefd.line(), 'watching');
    assert.deepEqual(await unrefd.exited, { code: 0, signal: null });

    const refd = nodeChild(t, script, res.path('ref.sock'), 'ref');
    assert.equal(await refd.line(), 'watching');
    res.fd(native.unixConnect(res.path('ref.sock')));
    assert.equal(await refd.line(), 'event');
    assert.deepEqual(await refd.exited, { code: 0, signal: null });
  });

  test(
    'garbage collection and worker teardown with live Pollers do not crash',
    TIMEOUT,
    async (t) => {
      const res = new Resources(t);
      const script = `
      const a = require(process.argv[1]);
      const { Worker } = require('worker_threads');
      const socketPath = process.argv[2];
      const listener = a.unixListen(socketPath, 8);
      const total = 1000;
      let collected = 0;
      const registry = new FinalizationRegistry(() => collected++);
      for (let i = 0; i < total; i++) {
        const poller = new a.Poller(listener, () => {});
        if (i % 2 === 0) { poller.start(1); poller.stop(); }
        registry.register(poller, i);
      }
      // Started and dropped: pinned while active, so it must survive collection.
      let active = new a.Poller(a.dup(listener), () => {});
      active.start(1);
      active.unref();
      const pinned = new WeakRef(active);
      active = null;
      const collect = async () => {
        for (let i = 0; i < 20; i++) { gc(); await new Promise((r) => setImmediate(r)); }
      };
      const worker = async (body) => {
        const w = new Worker(
          'const a = require(' + JSON.stringify(process.argv[1]) + ');' +
          'const { parentPort, workerData } = require("worker_threads");' +
          'const p = new a.Poller(a.unixConnect(workerData), () => {});' + body,
          { eval: true, workerData: socketPath });
        return w;
      };
      (async () => {
        await collect();
        console.log('collected ' + collected + ' pinned ' + (pinned.deref() !== undefined));
        pinned.deref().close();
        // A worker stopped mid-watch, and one that ends with an unref'd watch still active.
        const busy = await worker('p.start(2); parentPort.postMessage("watching");');
        await new Promise((r) => busy.once('message', r));
        await busy.terminate();
        const idle = await worker('p.start(1); p.unref();');
        const [code] = await require('events').once(idle, 'exit');
        await collect();
        console.log('workers ' + code);
      })();`;
      const child = new Child(t, process.execPath, [
        '--expose-gc',
        '-e',
        script,
        ADDON,
        res.path('gc.sock'),
      ]);
      assert.equal(await child.line(), 'collected 1000 pinned true');
      assert.equal(await child.line(), 'workers 0');
      assert.deepEqual(await child.exited, { code: 0, signal: null }, child.stderr);
    },
  );
});

// ---------------------------------------------------------------------------------------------
// Deadline: its timer is a timerFd watched by an unref'd Poller

/** Keeps the process alive until the test ends: a Deadline's timer alone does not. */
function keepAlive(t: TestContext): void {
  const interval = setInterval(() => {}, 1_000);
  t.after(() => clearInterval(interval));
}

/** The reason `deadline` fires with. */
function firing(deadline: Deadline): Promise<TablerollError> {
  return new Promise((resolve) => {
    deadline.onFire(resolve);
  });
}

/**
 * Resolves when a 60 ms deadline made now fires: later than a 30 ms one made before, on the same
 * clock, so a 30 ms deadline that was going to fire has fired by then.
 */
async function pastItsTime(): Promise<void> {
  const keepAlive = setInterval(() => {}, 1_000);
  const control = new Deadline(60, 'control');
  try {
    await firing(control);
  } finally {
    clearInterval(keepAlive);
    control.dispose();
  }
}

describe('Deadline', () => {
  test('times out with ERR_TABLEROLL_TIMEOUT and closes its timer fd', TIMEOUT, async (t) => {
    keepAlive(t);
    const before = openFdCount();
    const start = performance.now();
    const deadline = new Deadline(30, 'x');
    t.after(() => deadline.dispose());
    assert.equal(openFdCount(), before + 1, 'one timerfd');
    assert.equal(deadline.reason, undefined);
    deadline.throwIfFired();

    const reason = await firing(deadline);
    const elapsed = performance.now() - start;
    assert.ok(elapsed >= 25, `a 30 ms deadline fired after ${elapsed.toFixed(1)} ms`);
    assert.ok(reason instanceof TablerollError);
    assert.equal(reason.code, 'ERR_TABLEROLL_TIMEOUT');
    assert.equal(reason.message, 'x timed out after 30 ms');
    assert.equal(deadline.reason, reason);
    assert.throws(
      () => deadline.throwIfFired(),
      (err) => err === reason,
    );
    assert.equal(openFdCount(), before);
  });

  test('dispose before expiry closes the timer fd, and it never fires', TIMEOUT, async () => {
    const before = openFdCount();
    const deadline = new Deadline(30, 'x');
    let fired = 0;
    deadline.onFire(() => fired++);
    assert.equal(openFdCount(), before + 1);
    deadline.dispose();
    assert.equal(openFdCount(), before);
    deadline.dispose();
    await pastItsTime();
    assert.equal(fired, 0);
    assert.equal(deadline.reason, undefined);
    assert.equal(openFdCount(), before);
  });

  test('fired by hand, it closes the timer fd and keeps the first reason', TIMEOUT, async () => {
    const before = openFdCount();
    const deadline = new Deadline(30, 'x');
    const reasons: TablerollError[] = [];
    deadline.onFire((reason) => reasons.push(reason));
    assert.equal(openFdCount(), before + 1);
    const byHand = new TablerollError(ErrorCodes.STOPPED, 'stopped by hand');
    deadline.fire(byHand);
    assert.equal(openFdCount(), before);
    assert.equal(deadline.reason, byHand);
    deadline.fire(new TablerollError(ErrorCodes.ABORTED, 'again'));
    await pastItsTime();
    assert.deepEqual(reasons, [byHand]);
    assert.equal(deadline.reason, byHand);
    deadline.dispose();
    assert.equal(openFdCount(), before);
  });

  test(
    'a timeout reaches the deadlines that follow it and closes their timers',
    TIMEOUT,
    async (t) => {
      keepAlive(t);
      const before = openFdCount();
      const parent = new Deadline(30, 'the parent');
      const child = new Deadline(10_000, 'the child', [parent]);
      const untimed = new Deadline(Infinity, 'untimed', [child]);
      t.after(() => [untimed, child, parent].forEach((deadline) => deadline.dispose()));
      assert.equal(openFdCount(), before + 2);
      const reason = await firing(untimed);
      assert.equal(reason.message, 'the parent timed out after 30 ms');
      assert.equal(child.reason, reason);
      assert.equal(parent.reason, reason);
      assert.equal(openFdCount(), before);
    },
  );

  test('with no time, or a parent that has fired, it opens no fd', TIMEOUT, () => {
    const before = openFdCount();
    const forever = new Deadline(Infinity, 'forever');
    assert.equal(openFdCount(), before);
    const stopped = new TablerollError(ErrorCodes.STOPPED, 'stopped');
    forever.fire(stopped);
    const late = new Deadline(30, 'late', [forever]);
    assert.equal(late.reason, stopped);
    const aborted = new Deadline(30, 'aborted', [AbortSignal.abort()]);
    assert.equal(aborted.reason?.code, 'ERR_TABLEROLL_ABORTED');
    assert.equal(openFdCount(), before);
    for (const deadline of [forever, late, aborted]) deadline.dispose();
  });

  test('a time beyond what a timerfd takes is accepted and does not fire', TIMEOUT, () => {
    const before = openFdCount();
    const far = [1e13, Number.MAX_SAFE_INTEGER, Number.MAX_VALUE].map(
      (ms) => new Deadline(ms, 'far'),
    );
    for (const deadline of far) assert.equal(deadline.reason, undefined);
    assert.equal(openFdCount(), before + far.length);
    for (const deadline of far) deadline.dispose();
    assert.equal(openFdCount(), before);
  });
});

// ---------------------------------------------------------------------------------------------
// Leaks

test('no descriptor leaks over 200 handoffs and 200 Pollers', TIMEOUT, async (t) => {
  const res = new Resources(t);
  const socketPath = res.path('leak.sock');
  const listener = res.fd(native.unixListen(socketPath, 8));
  const buf = Buffer.alloc(8);
  const before = openFdCount();
  for (let i = 0; i < 200; i++) {
    const client = native.unixConnect(socketPath);
    const server = native.accept(listener);
    assert.equal(native.send(client, Buffer.from('x'), client), 1);
    const { fds } = native.recv(server, buf, 0, buf.length)!;
    assert.equal(fds.length, 1);
    for (const fd of [...fds, server, client]) native.close(fd);
  }
  for (let i = 0; i < 200; i++) {
    const poller = new native.Poller(listener, () => {});
    poller.start(READABLE);
    poller.close();
  }
  await afterAPollPhase();
  assert.equal(openFdCount(), before);
});
