// Tests of the Python reference peer (test/fixtures/py_peer.py) against itself, so the rest of
// the suite can trust it before pitting it against the Node implementation. Real processes,
// real sockets, a fresh temp directory per test, no fixed ports and no sleeps: every wait is
// on a JSON line the peer prints, bounded by a deadline.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT } from '../support/helpers.js';

// Compiled to dist/test/, the fixture stays in test/fixtures/ (tsc does not copy it).
const PY_PEER = [path.join(ROOT, 'test/fixtures/py_peer.py')].find((candidate) =>
  existsSync(candidate),
);
const PYTHON = process.env.PYTHON ?? 'python3';

const hex = (text: string): string => Buffer.from(text).toString('hex');
const VECTOR_EMPTY = '0000000509205b5d0a';
const VECTOR_READY = '42' + '0000000e' + hex('{"version":1}\n');
const VECTOR_REPLY = '00000018' + hex('{"msg":"stepping down"}\n');
const VECTOR_THREE_JSON =
  '[{"kind":"file","id":"f1","network":"","addr":""},' +
  '{"kind":"conn","id":"c1","network":"unixgram","addr":""},' +
  '{"kind":"listener","id":"web","network":"tcp","addr":"127.0.0.1:0"}]';
const VECTOR_THREE = '000000b2' + '0920' + hex(VECTOR_THREE_JSON) + '0a';

interface PeerEvent {
  event: string;
  [key: string]: unknown;
}

type Match = string | ((event: PeerEvent) => boolean);

/** Everyone waiting on any peer's output: re-checked on every line and every exit. */
const wakers = new Set<() => void>();
function wakeAll(): void {
  for (const wake of [...wakers]) wake();
}

/** Resolve when check() returns a value other than undefined; reject at the deadline. */
function until<T>(what: string, check: () => T | undefined, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const attempt = (): void => {
      let value: T | undefined;
      try {
        value = check();
      } catch (err) {
        done();
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      if (value !== undefined) {
        done();
        resolve(value);
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      wakers.delete(attempt);
    };
    wakers.add(attempt);
    attempt();
  });
}

/** One py_peer.py process, its parsed stdout events and its stderr. */
class PyPeer {
  readonly child: ChildProcess;
  readonly events: PeerEvent[] = [];
  stderr = '';
  exitCode: number | null | undefined = undefined; // undefined while running
  private partial = '';

  constructor(
    readonly label: string,
    args: string[],
  ) {
    assert.ok(PY_PEER, 'test/fixtures/py_peer.py not found');
    this.child = spawn(PYTHON, [PY_PEER, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout?.setEncoding('utf8');
    this.child.stderr?.setEncoding('utf8');
    this.child.stdout?.on('data', (chunk: string) => {
      const lines = (this.partial + chunk).split('\n');
      this.partial = lines.pop() ?? '';
      for (const line of lines) {
        if (line.trim() === '') continue;
        const parsed: unknown = JSON.parse(line);
        this.events.push(parsed as PeerEvent);
      }
      wakeAll();
    });
    this.child.stderr?.on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    this.child.on('exit', (code, signal) => {
      this.exitCode = code ?? (signal ? -1 : null);
      wakeAll();
    });
  }

  get pid(): number {
    assert.ok(this.child.pid, `${this.label} has no pid`);
    return this.child.pid;
  }

  find(match: Match, from = 0): PeerEvent | undefined {
    const test = typeof match === 'string' ? (e: PeerEvent) => e.event === match : match;
    return this.events.slice(from).find(test);
  }

  count(name: string): number {
    return this.events.filter((e) => e.event === name).length;
  }

  /** The first event (from index `from`) that matches; fails fast if the process exits first. */
  waitFor(match: Match, timeoutMs = 10_000, from = 0): Promise<PeerEvent> {
    const what = `${this.label}: ${typeof match === 'string' ? match : 'matching event'}`;
    return until(
      what,
      () => {
        const found = this.find(match, from);
        if (found) return found;
        if (this.exitCode !== undefined) {
          throw new Error(`${what}: exited ${this.exitCode}; stderr: ${this.stderr}`);
        }
        return undefined;
      },
      timeoutMs,
    );
  }

  waitExit(timeoutMs = 10_000): Promise<number | null> {
    return until(
      `${this.label} to exit`,
      () => (this.exitCode === undefined ? undefined : this.exitCode),
      timeoutMs,
    );
  }

  /** Lets a peer started with --wait-stdin begin. */
  go(): void {
    this.child.stdin?.end('\n');
  }

  kill(): void {
    if (this.exitCode === undefined) this.child.kill('SIGKILL');
  }
}

/** A temp directory and the processes of one test, all removed when the test ends. */
function scope(t: TestContext): { dir: string; peer: (label: string, args: string[]) => PyPeer } {
  const dir = mkdtempSync(path.join(tmpdir(), 'pypeer-'));
  const peers: PyPeer[] = [];
  t.after(async () => {
    for (const p of peers) p.kill();
    await Promise.all(peers.map((p) => p.waitExit(5_000).catch(() => null)));
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    dir,
    peer: (label, args) => {
      const p = new PyPeer(label, args);
      peers.push(p);
      return p;
    },
  };
}

interface HttpResult {
  status: number;
  body: string;
}

function httpGet(target: { port: number } | { socketPath: string }): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { ...target, host: '127.0.0.1', path: '/', agent: false, timeout: 5_000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('http timeout')));
    req.on('error', reject);
  });
}

function portOf(event: PeerEvent): number {
  const port = Number(String(event.addr).split(':').pop());
  assert.ok(port > 0, `no port in ${JSON.stringify(event)}`);
  return port;
}

function readPid(dir: string): string {
  return readFileSync(path.join(dir, 'pid'), 'utf8');
}

function entriesOf(event: PeerEvent): PeerEvent[] {
  assert.ok(Array.isArray(event.entries), 'event has no entries');
  return event.entries as PeerEvent[];
}

function isListening(name: string): (e: PeerEvent) => boolean {
  return (e) => e.event === 'listening' && e.name === name;
}

test(
  'a Python newcomer takes over a Python owner without dropping a request',
  { timeout: 60_000 },
  async (t) => {
    const { dir, peer } = scope(t);
    const owner = peer('owner', [
      'owner',
      '--dir',
      dir,
      '--id',
      'A',
      '--tcp',
      'web=127.0.0.1:0',
      '--serve',
    ]);
    const listening = await owner.waitFor('listening');
    const port = portOf(listening);
    await owner.waitFor('owner');
    assert.equal(readPid(dir), 'A');
    assert.deepEqual(await httpGet({ port }), { status: 200, body: `py ${owner.pid} web\n` });

    // Requests one after another for the whole handoff.
    const results: Array<HttpResult | { error: string }> = [];
    let stop = false;
    t.after(() => {
      stop = true; // also when an assertion below fails
    });
    const loop = (async () => {
      while (!stop) {
        try {
          results.push(await httpGet({ port }));
        } catch (err) {
          results.push({ error: String(err) });
        }
        wakeAll();
      }
    })();

    const newcomer = peer('newcomer', ['newcomer', '--dir', dir, '--id', 'B', '--serve']);
    const inherited = await newcomer.waitFor('inherited');
    const [web] = entriesOf(inherited);
    assert.equal(entriesOf(inherited).length, 1);
    assert.equal(web?.id, 'web');
    assert.equal(web?.name, 'listener(web): tcp:127.0.0.1:0');
    assert.equal(web?.target, listening.target, 'the newcomer holds the same socket');
    const ready = await newcomer.waitFor('ready');
    assert.equal(ready.reply_hex, VECTOR_REPLY, 'the reply bytes are the documented ones');
    await newcomer.waitFor('owner');
    await owner.waitFor('upgrade-completed');
    assert.equal(await owner.waitExit(), 0);
    const requestsBeforeExit = results.length;
    await until(
      'one request after the owner exited',
      () => (results.length > requestsBeforeExit ? true : undefined),
      10_000,
    );
    stop = true;
    await loop;

    assert.ok(results.length > 1);
    for (const result of results) {
      assert.ok('status' in result, `request failed during the handoff: ${JSON.stringify(result)}`);
      assert.equal(result.status, 200);
      assert.ok(
        [`py ${owner.pid} web\n`, `py ${newcomer.pid} web\n`].includes(result.body),
        result.body,
      );
    }
    const bodies = new Set(results.map((r) => ('body' in r ? r.body : '')));
    assert.ok(bodies.has(`py ${owner.pid} web\n`), 'served by the owner during the handoff');
    assert.ok(bodies.has(`py ${newcomer.pid} web\n`), 'served by the newcomer afterwards');
    assert.deepEqual(await httpGet({ port }), { status: 200, body: `py ${newcomer.pid} web\n` });
    assert.equal(readPid(dir), 'B');
    assert.ok(owner.find('exit'));
    assert.equal(newcomer.exitCode, undefined, 'the newcomer keeps serving');
  },
);

test(
  'dump-owner reproduces the empty-owner vector and the owner survives it',
  { timeout: 30_000 },
  async (t) => {
    const { dir, peer } = scope(t);
    const owner = peer('owner', ['owner', '--dir', dir, '--id', 'A']);
    await owner.waitFor('owner');

    for (let round = 1; round <= 2; round++) {
      const dump = peer(`dump${round}`, ['dump-owner', '--dir', dir, '--id', `D${round}`]);
      const metadata = await dump.waitFor('metadata');
      assert.equal(metadata.hex, VECTOR_EMPTY);
      assert.equal(metadata.version, 1);
      assert.equal(await dump.waitExit(), 0, dump.stderr);
      // Closing without the ready byte fails the handoff; the owner goes back to owner.
      await owner.waitFor(
        (e) => e.event === 'upgrade-failed' && owner.count('upgrade-failed') >= round,
      );
    }
    assert.equal(owner.exitCode, undefined);
    assert.equal(readPid(dir), 'A');
  },
);

test(
  'dump-owner reproduces the three-descriptor vector byte for byte',
  { timeout: 30_000 },
  async (t) => {
    const { dir, peer } = scope(t);
    const file = path.join(dir, 'f1.data');
    const owner = peer('owner', [
      'owner',
      '--dir',
      dir,
      '--id',
      'A',
      '--file',
      `f1=${file}`,
      '--unixgram',
      'c1',
      '--tcp',
      'web=127.0.0.1:0',
    ]);
    const listening = await owner.waitFor(isListening('web'));
    // The socket is bound to a real port, but the metadata records the address asked for.
    assert.notEqual(portOf(listening), 0);
    await owner.waitFor('owner');

    const dump = peer('dump', ['dump-owner', '--dir', dir, '--id', 'D']);
    const metadata = await dump.waitFor('metadata');
    assert.equal(metadata.hex, VECTOR_THREE);
    assert.equal(metadata.length, 0xb2);
    assert.equal(await dump.waitExit(), 0, dump.stderr);

    const descriptors = dump.events.filter((e) => e.event === 'descriptor');
    assert.deepEqual(
      descriptors.map((e) => [e.name, e.fds, e.ctrunc]),
      [
        [`file(f1): ${file}`, 1, false],
        ['conn(c1): unixgram:', 1, false],
        ['listener(web): tcp:127.0.0.1:0', 1, false],
      ],
    );
    const targets = descriptors.map((e) => (e.targets as string[])[0]);
    assert.equal(targets[0], file);
    assert.match(String(targets[1]), /^socket:\[\d+\]$/);
    assert.equal(targets[2], listening.target);
    await owner.waitFor('upgrade-failed');
    assert.equal(owner.exitCode, undefined);
  },
);

test('the v0 ready byte (0x2A) completes a handoff', { timeout: 30_000 }, async (t) => {
  const { dir, peer } = scope(t);
  const owner = peer('owner', [
    'owner',
    '--dir',
    dir,
    '--id',
    'A',
    '--tcp',
    'web=127.0.0.1:0',
    '--serve',
  ]);
  const port = portOf(await owner.waitFor('listening'));
  await owner.waitFor('owner');

  const newcomer = peer('newcomer', [
    'newcomer',
    '--dir',
    dir,
    '--id',
    'B',
    '--serve',
    '--ready-byte',
    '2a',
  ]);
  assert.equal((await newcomer.waitFor('ready')).ready_byte, '2a');
  await newcomer.waitFor('owner');
  assert.equal((await owner.waitFor('upgrade-completed')).ready_byte, '2a');
  assert.equal(await owner.waitExit(), 0);
  assert.equal(readPid(dir), 'B');
  assert.deepEqual(await httpGet({ port }), { status: 200, body: `py ${newcomer.pid} web\n` });
});

test(
  'a chain of three Python processes hands over tcp, unix and file descriptors',
  { timeout: 60_000 },
  async (t) => {
    const { dir, peer } = scope(t);
    const unixPath = path.join(dir, 'http.sock');
    const file = path.join(dir, 'f1.data');
    const first = peer('A', [
      'owner',
      '--dir',
      dir,
      '--id',
      'A',
      '--serve',
      '--tcp',
      'web=127.0.0.1:0',
      '--unix',
      `api=${unixPath}`,
      '--file',
      `f1=${file}`,
    ]);
    const port = portOf(await first.waitFor(isListening('web')));
    await first.waitFor('owner');

    // B and C start together: one waits on the lock while the other takes over from A, then
    // takes over from it.
    const b = peer('B', ['newcomer', '--dir', dir, '--id', 'B', '--serve']);
    const c = peer('C', ['newcomer', '--dir', dir, '--id', 'C', '--serve']);
    const middle = await until(
      'the middle process to step down',
      () => [b, c].find((p) => p.find('upgrade-completed')),
      30_000,
    );
    const last = middle === b ? c : b;
    assert.equal(await first.waitExit(), 0);
    assert.equal(await middle.waitExit(), 0);
    await last.waitFor('owner');
    assert.equal(last.exitCode, undefined);

    assert.equal((await middle.waitFor('inherited')).owner, 'A');
    const inherited = await last.waitFor('inherited');
    assert.equal(inherited.owner, middle.label);
    const byId = new Map(entriesOf(inherited).map((e) => [e.id, e]));
    assert.equal(byId.get('web')?.name, 'listener(web): tcp:127.0.0.1:0');
    assert.equal(byId.get('api')?.name, `listener(api): unix:${unixPath}`);
    assert.equal(byId.get('f1')?.target, file);

    assert.equal(readPid(dir), last.label);
    assert.deepEqual(await httpGet({ port }), { status: 200, body: `py ${last.pid} web\n` });
    assert.deepEqual(await httpGet({ socketPath: unixPath }), {
      status: 200,
      body: `py ${last.pid} api\n`,
    });
  },
);

test(
  'the owner times out a newcomer that never sends ready, refuses others meanwhile, then hands over',
  { timeout: 60_000 },
  async (t) => {
    const { dir, peer } = scope(t);
    const owner = peer('owner', [
      'owner',
      '--dir',
      dir,
      '--id',
      'A',
      '--tcp',
      'web=127.0.0.1:0',
      '--serve',
      '--timeout',
      '3',
    ]);
    const port = portOf(await owner.waitFor('listening'));
    await owner.waitFor('owner');
    // The intruder's interpreter starts now and waits: started only once the owner is
    // transferring, it could take longer to start than the owner waits for the stuck newcomer
    // (it did, once, with three suites on the machine).
    const intruder = peer('intruder', [
      'newcomer',
      '--dir',
      dir,
      '--id',
      'X',
      '--hostile',
      'silent',
      '--timeout',
      '10',
      '--wait-stdin',
    ]);
    await intruder.waitFor('waiting');

    const stuck = peer('stuck', ['newcomer', '--dir', dir, '--id', 'S', '--serve', '--no-ready']);
    await stuck.waitFor('holding');
    await owner.waitFor('upgrade-started');
    // While transferring, another request is closed without a byte written.
    intruder.go();
    const refused = await intruder.waitFor('hostile-done');
    assert.equal(refused.peer_closed, true);
    assert.equal((await owner.waitFor('refused')).state, 'transferring');

    const failed = await owner.waitFor('upgrade-failed', 10_000);
    assert.equal(failed.reason, 'timed out');
    await stuck.waitFor('peer-closed');
    assert.equal(readPid(dir), 'A');
    stuck.kill(); // releases the lock it still holds
    await stuck.waitExit();

    const newcomer = peer('newcomer', ['newcomer', '--dir', dir, '--id', 'B', '--serve']);
    await newcomer.waitFor('owner');
    assert.equal(await owner.waitExit(), 0);
    assert.equal(readPid(dir), 'B');
    assert.deepEqual(await httpGet({ port }), { status: 200, body: `py ${newcomer.pid} web\n` });
  },
);

test('a Python owner survives every hostile newcomer mode', { timeout: 90_000 }, async (t) => {
  const { dir, peer } = scope(t);
  const owner = peer('owner', [
    'owner',
    '--dir',
    dir,
    '--id',
    'A',
    '--tcp',
    'web=127.0.0.1:0',
    '--timeout',
    '2',
  ]);
  await owner.waitFor('owner');
  const modes = [
    'random-bytes',
    'flood',
    'wrong-version',
    'bad-json',
    'eof-after-fds',
    'negative-length',
    'silent',
  ];
  for (const [index, mode] of modes.entries()) {
    const hostile = peer(mode, [
      'newcomer',
      '--dir',
      dir,
      '--id',
      `H${index}`,
      '--hostile',
      mode,
      '--timeout',
      '10',
    ]);
    const done = await hostile.waitFor('hostile-done', 15_000);
    assert.equal(await hostile.waitExit(), 0, `${mode}: ${hostile.stderr}`);
    if (mode !== 'eof-after-fds') assert.equal(done.peer_closed, true, mode);
    const failed = await owner.waitFor(() => owner.count('upgrade-failed') >= index + 1, 10_000);
    assert.ok(failed, mode);
    assert.equal(owner.count('upgrade-completed'), 0, mode);
  }
  const reasons = owner.events
    .filter((e) => e.event === 'upgrade-failed')
    .map((e) => String(e.reason));
  assert.match(reasons[2] ?? '', /version 2/);
  assert.match(reasons[5] ?? '', /negative/);
  assert.equal(reasons[6], 'timed out');

  // Still the owner, still giving the same descriptors.
  const dump = peer('dump', ['dump-owner', '--dir', dir, '--id', 'D']);
  assert.equal((await dump.waitFor('metadata')).version, 1);
  assert.equal(await dump.waitExit(), 0);
  assert.equal(readPid(dir), 'A');
});

test('a Python newcomer rejects every hostile owner mode', { timeout: 60_000 }, async (t) => {
  const { peer } = scope(t);
  const modes = [
    'random-bytes',
    'negative-length',
    'huge-length',
    'wrong-version',
    'bad-json',
    'fewer-fds',
    'more-fds',
    'multi-fds',
    'long-name',
    'silent',
    'close-after-metadata',
  ];
  // Four at a time: eleven Python owners starting at once on a busy machine took more than
  // the 10 s an owner is given to start.
  const batches = Array.from({ length: Math.ceil(modes.length / 4) }, (_, i) =>
    modes.slice(i * 4, i * 4 + 4),
  );
  for (const batch of batches) await Promise.all(batch.map(hostileOwner));

  async function hostileOwner(mode: string): Promise<void> {
    const dir = mkdtempSync(path.join(tmpdir(), 'pypeer-hostile-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const owner = peer(`owner ${mode}`, [
      'owner',
      '--dir',
      dir,
      '--id',
      'H',
      '--hostile',
      mode,
      '--timeout',
      '10',
    ]);
    await owner.waitFor('owner');
    const newcomer = peer(`newcomer ${mode}`, [
      'newcomer',
      '--dir',
      dir,
      '--id',
      'N',
      '--timeout',
      '2',
    ]);
    const code = await newcomer.waitExit(15_000);
    assert.notEqual(
      code,
      0,
      `${mode}: the newcomer accepted it: ${JSON.stringify(newcomer.events)}`,
    );
    assert.match(newcomer.stderr, /handoff failed|error/, mode);
    assert.equal(newcomer.find('ready'), undefined, mode);
    assert.equal(readPid(dir), 'H', mode);
    if (mode === 'silent') assert.match(newcomer.stderr, /timed out/);
    // The hostile owner saw the newcomer go away and was never told it could step down.
    const done = await owner.waitFor('hostile-done', 15_000);
    if (done.peer_closed !== null) assert.equal(done.peer_closed, true, mode);
    if (mode === 'more-fds') {
      // The newcomer took one fd and said ready: the documented ready bytes, then nothing.
      assert.equal(done.received_hex, VECTOR_READY);
    }
  }
});
