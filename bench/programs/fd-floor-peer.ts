/**
 * One side of the fd-passing floor (bench/fd-floor.ts): the addon's raw SCM_RIGHTS round trip
 * between two Node processes, with none of the Upgrader around it.
 *
 *   --role receiver --path P [--pregrow N]
 *                              listens on the unix socket P; on stdin `expect N` it receives
 *                              N descriptors (one per message, waiting with a Poller), answers
 *                              one byte, closes them, and prints {"event":"received"}
 *   --role sender --path P --fds N
 *                              binds N TCP listeners, connects to P; on stdin `go K` it sends
 *                              K of them one per message and waits for the byte, printing
 *                              {"event":"round-trip","ms":...} (first send to the answer)
 *
 * Both print {"event":"ready"} once set up, so start-up is never timed. --pregrow N makes the
 * receiver open and close 2N+64 descriptors first, so that the kernel's fd table is already
 * large enough (growing it costs an RCU grace period in a multi-threaded process).
 */
import fs from 'node:fs';
import readline from 'node:readline';
import { parseArgs } from 'node:util';
import { READABLE, WRITABLE, native, type Poller } from '../../src/native.js';

const { values } = parseArgs({
  options: {
    role: { type: 'string' },
    path: { type: 'string' },
    fds: { type: 'string', default: '0' },
    pregrow: { type: 'string', default: '0' },
  },
});

const print = (line: object): void => {
  process.stdout.write(JSON.stringify(line) + '\n');
};

/** Waits for readiness of one fd on Node's loop with one Poller, as UnixChannel does. */
class Readiness {
  private settle: ((err: Error | null) => void) | null = null;
  private readonly poller: Poller;

  constructor(fd: number) {
    this.poller = new native.Poller(fd, (err) => {
      this.poller.stop();
      const settle = this.settle;
      this.settle = null;
      settle?.(err);
    });
  }

  wait(events: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.settle = (err) => (err ? reject(err) : resolve());
      this.poller.start(events);
    });
  }
}

function onCommand(handle: (words: string[]) => Promise<void>): void {
  readline.createInterface({ input: process.stdin }).on('line', (text) => {
    handle(text.split(' ')).catch((err: unknown) => {
      print({ event: 'error', message: String(err) });
      process.exit(1);
    });
  });
}

async function receiver(path: string, pregrow: number): Promise<void> {
  if (pregrow > 0) {
    const fds = Array.from({ length: 2 * pregrow + 64 }, () => fs.openSync('/dev/null', 'r'));
    for (const fd of fds) fs.closeSync(fd);
  }
  const listener = native.unixListen(path, 1);
  print({ event: 'ready' });
  const accepting = new Readiness(listener);
  let conn = native.accept(listener);
  while (conn < 0) {
    await accepting.wait(READABLE);
    conn = native.accept(listener);
  }
  const readable = new Readiness(conn);
  const buf = Buffer.alloc(4096);
  const answer = Buffer.from([0x42]);
  onCommand(async ([, count]) => {
    const expected = Number(count);
    const fds: number[] = [];
    print({ event: 'armed' });
    while (fds.length < expected) {
      const got = native.recv(conn, buf, 0, buf.length);
      if (got === null) {
        await readable.wait(READABLE);
        continue;
      }
      if (got.bytes === 0) throw new Error('the sender hung up');
      fds.push(...got.fds);
    }
    native.send(conn, answer, -1);
    for (const fd of fds) native.close(fd);
    print({ event: 'received', count: fds.length });
  });
}

async function sender(path: string, count: number): Promise<void> {
  const listeners = Array.from({ length: count }, () =>
    native.inetListen('127.0.0.1', 0, 4, 16, {}),
  );
  // Names as the protocol sends them: `listener(<id>): tcp:<addr>`.
  const names = listeners.map((fd, i) => {
    const info = native.socketInfo(fd)!;
    return Buffer.from(`listener(l${i}): tcp:${info.address}:${info.port}`);
  });
  const conn = native.unixConnect(path);
  const ready = new Readiness(conn);
  const buf = Buffer.alloc(16);
  print({ event: 'ready' });
  onCommand(async ([, k]) => {
    const n = Number(k);
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      while (native.send(conn, names[i]!, listeners[i]!) < 0) await ready.wait(WRITABLE);
    }
    let got = native.recv(conn, buf, 0, 1);
    while (got === null) {
      await ready.wait(READABLE);
      got = native.recv(conn, buf, 0, 1);
    }
    const ms = performance.now() - start;
    if (got.bytes !== 1) throw new Error('the receiver hung up');
    print({ event: 'round-trip', fds: n, ms });
  });
}

if (values.role === 'receiver') await receiver(values.path!, Number(values.pregrow));
else await sender(values.path!, Number(values.fds));
