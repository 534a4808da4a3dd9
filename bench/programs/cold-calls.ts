/**
 * One cold run of the calls a newcomer's handoff makes once per process, done either through
 * the addon (as tableroll does) or through Node's own API, timed from the first call to the
 * last. Prints one JSON line `{ event: 'cold', us }`.
 *
 *   node dist/bench/programs/cold-calls.js --calls files|timer|none --via addon|node|none --dir D
 *
 * files: what joining a coordination directory does to it: lstat the path's components, mkdir,
 *        open `pid` (O_NOFOLLOW, creating it), fstat, pread, chmod and stat a socket file,
 *        fstat and pwrite the id, close.
 * timer: arm a deadline's timer and cancel it: a timerfd watched by a Poller on Node's loop, or
 *        setTimeout and clearTimeout.
 * none:  nothing, the clock's own cost.
 * The addon is loaded in both cases (a newcomer loads it anyway for flock and SCM_RIGHTS).
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { READABLE, native } from '../../src/native.js';

const { values } = parseArgs({
  options: {
    calls: { type: 'string' },
    via: { type: 'string' },
    dir: { type: 'string' },
  },
});
const dir = values.dir!;
const { O_RDWR, O_CREAT, O_NOFOLLOW } = fs.constants;
// The socket file both variants chmod and stat, and the upgrade socket's Poller a newcomer has
// made before its first deadline: both ready before the clock starts.
const sock = path.join(dir, 'a.sock');
const listener = native.unixListen(sock, 8);
const acceptPoller = new native.Poller(listener, () => {});
acceptPoller.unref();
acceptPoller.start(READABLE);
const id = Buffer.from('newcomer-id');

function filesViaAddon(): void {
  let at = '/';
  native.lstat(at);
  for (const part of dir.split('/').filter((p) => p !== '')) {
    at = path.join(at, part);
    native.lstat(at);
  }
  try {
    native.mkdir(path.join(dir, 'sub'), 0o700);
  } catch {
    // It exists: as for an existing coordination directory.
  }
  const fd = native.open(path.join(dir, 'pid'), O_RDWR | O_CREAT | O_NOFOLLOW, 0o600);
  native.fstat(fd);
  const buf = Buffer.allocUnsafe(64);
  native.pread(fd, buf, 0);
  native.chmod(sock, 0o600);
  native.stat(sock);
  native.fstat(fd);
  native.pwrite(fd, id, 0);
  native.close(fd);
}

function filesViaNode(): void {
  let at = '/';
  fs.lstatSync(at);
  for (const part of dir.split('/').filter((p) => p !== '')) {
    at = path.join(at, part);
    fs.lstatSync(at);
  }
  try {
    fs.mkdirSync(path.join(dir, 'sub'), 0o700);
  } catch {
    // It exists.
  }
  const fd = fs.openSync(path.join(dir, 'pid'), O_RDWR | O_CREAT | O_NOFOLLOW, 0o600);
  fs.fstatSync(fd);
  const buf = Buffer.allocUnsafe(64);
  fs.readSync(fd, buf, 0, buf.length, 0);
  fs.chmodSync(sock, 0o600);
  fs.statSync(sock);
  fs.fstatSync(fd);
  fs.writeSync(fd, id, 0, id.length, 0);
  fs.closeSync(fd);
}

function timerViaAddon(): void {
  const fd = native.timerFd(60_000);
  const poller = new native.Poller(fd, () => {});
  poller.unref();
  poller.start(READABLE);
  poller.close();
  native.close(fd);
}

function timerViaNode(): void {
  const timer = setTimeout(() => {}, 60_000);
  timer.unref();
  clearTimeout(timer);
}

const runs: Record<string, () => void> = {
  'none none': () => {},
  'files addon': filesViaAddon,
  'files node': filesViaNode,
  'timer addon': timerViaAddon,
  'timer node': timerViaNode,
};
const run = runs[`${values.calls} ${values.via}`];
if (!run) throw new Error('usage: --calls files|timer --via addon|node --dir D');
const started = process.hrtime.bigint();
run();
const us = Number(process.hrtime.bigint() - started) / 1000;
acceptPoller.close();
native.close(listener);
fs.unlinkSync(sock);
process.stdout.write(JSON.stringify({ event: 'cold', us }) + '\n');
