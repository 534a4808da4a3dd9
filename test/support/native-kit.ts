/**
 * What the native addon's tests share: the addon's path, resource tracking that closes whatever
 * a test left open, child processes, descriptor probes, and the Python one-liners that play
 * peers Node cannot (several descriptors in one message, unix datagram receivers).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

import { native, type PollCallback, type Poller } from '../../src/native.js';

export const ADDON = fileURLToPath(
  new URL('../../../build/Release/tableroll.node', import.meta.url),
);
export const TIMEOUT = { timeout: 30_000 };
/** Above RLIMIT_NOFILE, so never an open descriptor. */
export const BAD_FD = 999_999;
export const O_CLOEXEC = 0o2000000;
export const O_NONBLOCK = 0o4000;

// ---------------------------------------------------------------------------------------------
// Helpers

/** Descriptors and Pollers a test opened; whatever it did not close is closed when it ends. */
export class Resources {
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
export class Child {
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
export function nodeChild(t: TestContext, script: string, ...args: string[]): Child {
  return new Child(t, process.execPath, ['-e', script, ADDON, ...args]);
}

/** The open file's flags, with O_CLOEXEC standing for the descriptor's FD_CLOEXEC. */
export function fdFlags(fd: number): number {
  const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const flags = /^flags:\s+([0-7]+)$/m.exec(info);
  assert.ok(flags, `no flags line in fdinfo of ${fd}`);
  return parseInt(flags[1]!, 8);
}

export function hasCloexec(fd: number): boolean {
  return (fdFlags(fd) & O_CLOEXEC) !== 0;
}

export function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** This process's open descriptors, each with what it refers to. */
function openFds(): Map<string, string> {
  const fds = new Map<string, string>();
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      fds.set(fd, fs.readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // Closed since the listing (the listing's own descriptor, or another thread's).
    }
  }
  return fds;
}

/**
 * `fn` must throw as `expected` and leave no descriptor behind (a half-made socket). Another
 * thread of this process (libuv's pool, the test runner) may hold a descriptor for a moment
 * while the two listings are taken: a leak shows on each of three tries, such a passer-by not.
 */
export function throwsWithoutLeak(fn: () => unknown, expected: object): void {
  let extra: string[] = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    const before = openFds();
    assert.throws(fn, expected);
    extra = [...openFds()]
      .filter(([fd, target]) => before.get(fd) !== target)
      .map(([fd, target]) => `${fd} -> ${target}`);
    if (extra.length === 0) return;
  }
  assert.fail(`the failed call leaked a descriptor: ${extra.join(', ')}`);
}

/** What a descriptor refers to, such as 'socket:[12345]'. */
export function fdTarget(fd: number): string {
  return fs.readlinkSync(`/proc/self/fd/${fd}`);
}

export function errnoOf(code: keyof typeof os.constants.errno): number {
  return -os.constants.errno[code];
}

/** The first event on `fd`; the Poller is closed when it fires. */
export function nextEvent(
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
export async function afterAPollPhase(): Promise<void> {
  // The first immediate ends the current loop iteration; the second runs in the check phase of
  // the next one, after its poll phase has dispatched every ready descriptor.
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
}

// Listens on argv[1], accepts one connection and sends one message ('fds') carrying either
// argv[2] copies of a /dev/null descriptor or, for '@name', a stream socket bound to that
// abstract name. Prints 'listening', then 'sent' or 'error <errno>'.
export const PY_SEND_FDS = `
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
export const PY_RECV_DATAGRAM = `
import json, socket, sys
name = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\\0' + name[1:] if name.startswith('@') else name)
print('ready', flush=True)
print(json.dumps(s.recv(4096).decode()), flush=True)
`;

// ---------------------------------------------------------------------------------------------
// Descriptors

export function currentUmask(): number {
  const umask = /^Umask:\s+([0-7]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  assert.ok(umask, 'no Umask line in /proc/self/status');
  return parseInt(umask[1]!, 8);
}

export function permissions(target: string): number {
  return fs.statSync(target).mode & 0o7777;
}
