/**
 * Wire compatibility between the Node Upgrader and an independent peer of the protocol
 * (test/fixtures/py_peer.py): handoffs in both directions, a mixed chain, a v0 newcomer, Go's
 * byte vectors, HTTP load. test/fixtures/raw_peer.py records the Node newcomer's exact bytes
 * and plays a newcomer that ends the handoff in Go's order, slowly.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { startLoad, type Load } from '../../scripts/http-load.js';
import {
  FIXTURES,
  ROOT,
  httpGet,
  startCommand,
  startFixture,
  tempDir,
  until,
  type Child,
  type Line,
} from '../support/helpers.js';

const PY_PEER = path.join(ROOT, 'test/fixtures/py_peer.py');
const RAW_PEER = path.join(ROOT, 'test/fixtures/raw_peer.py');
const PYTHON = process.env.PYTHON ?? 'python3';
const NODE_PROCESS = 'upgrader-process.js';
const TIMEOUT = { timeout: 30_000 };

const hex = (text: string): string => Buffer.from(text, 'utf8').toString('hex');
// The vectors observed from Go tableroll v2.1.0 (docs/design.md describes the protocol).
const VECTOR_EMPTY = '00000005' + '0920' + hex('[]') + '0a';
const VECTOR_THREE =
  '000000b2' +
  '0920' +
  hex(
    '[{"kind":"file","id":"f1","network":"","addr":""},' +
      '{"kind":"conn","id":"c1","network":"unixgram","addr":""},' +
      '{"kind":"listener","id":"web","network":"tcp","addr":"127.0.0.1:0"}]',
  ) +
  '0a';
const VECTOR_READY = '42' + '0000000e' + hex('{"version":1}') + '0a';
const VECTOR_REPLY = '00000018' + hex('{"msg":"stepping down"}') + '0a';

/** Runs the Node fixture with a unixgram socketpair end inherited; `{fd}` in args names it. */
const WITH_UNIXGRAM = `
import os, socket, sys
ours, _theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
ours.set_inheritable(True)
args = [arg.replace("{fd}", str(ours.fileno())) for arg in sys.argv[1:]]
os.execv(args[0], args)
`;

function py(t: TestContext, args: string[]): Child {
  return startCommand(t, PYTHON, [PY_PEER, ...args]);
}

function nodeProcess(t: TestContext, dir: string, id: string, ...args: string[]): Child {
  return startFixture(t, NODE_PROCESS, ['--dir', dir, '--id', id, ...args]);
}

/** The port of a py_peer `listening` line ("127.0.0.1:43211"). */
function pyPort(line: Line): number {
  const port = Number(String(line.addr).split(':').pop());
  assert.ok(port > 0, JSON.stringify(line));
  return port;
}

/** The port a Node fixture printed for listener `id`. */
async function nodePort(child: Child, id = 'web'): Promise<number> {
  const line = await child.line((l) => l.event === 'listening' && l.id === id);
  return (line.address as { port: number }).port;
}

const isListening =
  (name: string) =>
  (line: Line): boolean =>
    line.event === 'listening' && line.name === name;

function pidFile(dir: string): string {
  return fs.readFileSync(path.join(dir, 'pid'), 'utf8');
}

/** What the fds of process `pid` point to ("socket:[123]", "/path/of/file", ...). */
function fdTargets(pid: number): string[] {
  const dir = `/proc/${pid}/fd`;
  return fs.readdirSync(dir).flatMap((fd) => {
    try {
      return [fs.readlinkSync(path.join(dir, fd))];
    } catch {
      return []; // closed meanwhile
    }
  });
}

async function bodyAt(target: { port: number } | { socketPath: string }): Promise<string> {
  const where = 'port' in target ? { host: '127.0.0.1', port: target.port } : target;
  const { status, body } = await httpGet(where);
  assert.equal(status, 200);
  return body;
}

async function exitCode(child: Child): Promise<number | null> {
  return (await child.exited).code;
}

/** Waits until `load` has had `count` answers with `body`. */
function servedBy(load: Load, body: string, count: number): Promise<boolean> {
  return until(() => (load.result.bodies[body] ?? 0) >= count, `${count} answers "${body}"`);
}

describe('a Python owner hands over to a Node newcomer', () => {
  it('gives it a TCP listener, a unix listener and a file, and exits', TIMEOUT, async (t) => {
    const dir = tempDir(t);
    const unixPath = path.join(dir, 'api.sock');
    const file = path.join(dir, 'f1.data');
    const owner = py(t, [
      'owner',
      ...['--dir', dir, '--id', 'py-a', '--serve'],
      ...['--tcp', 'web=127.0.0.1:0', '--unix', `api=${unixPath}`, '--file', `f1=${file}`],
    ]);
    const port = pyPort(await owner.line(isListening('web')));
    await owner.line('owner');
    assert.equal(await bodyAt({ port }), `py ${owner.pid} web\n`);

    const node = nodeProcess(t, dir, 'node-b', '--tcp', 'web', '--unix', `api=${unixPath}`);
    const created = await node.line('created');
    assert.deepEqual(created.inherited, [
      { kind: 'listener', id: 'web', network: 'tcp', addr: '127.0.0.1:0', inherited: true },
      { kind: 'listener', id: 'api', network: 'unix', addr: unixPath, inherited: true },
      { kind: 'file', id: 'f1', network: '', addr: '', inherited: true },
    ]);
    assert.equal(await nodePort(node), port, 'serves on the inherited port');
    await node.line('ready');
    assert.equal((await owner.line('upgrade-completed')).ready_byte, '42');
    assert.equal(await exitCode(owner), 0);

    assert.equal(pidFile(dir), 'node-b');
    assert.equal(await bodyAt({ port }), `hello from ${node.pid}\n`);
    assert.equal(await bodyAt({ socketPath: unixPath }), `hello from ${node.pid}\n`);
    assert.ok(fdTargets(node.pid).includes(file), 'the Node process holds the inherited file');
  });
});

describe('a Node owner hands over to a Python newcomer', () => {
  it('gives it its listeners, reports upgrade-completed and exits', TIMEOUT, async (t) => {
    const dir = tempDir(t);
    const unixPath = path.join(dir, 'api.sock');
    const owner = nodeProcess(t, dir, 'node-a', '--tcp', 'web', '--unix', `api=${unixPath}`);
    const port = await nodePort(owner);
    await owner.line('ready');
    // Read before the handoff: the newcomer becomes ready on its own, and the owner may have
    // closed its sockets and exited by the time the newcomer's report arrives.
    const ownerSockets = fdTargets(owner.pid);

    const newcomer = py(t, ['newcomer', '--dir', dir, '--id', 'py-b', '--serve']);
    const inherited = (await newcomer.line('inherited')).entries as Line[];
    assert.deepEqual(
      inherited.map((e) => [e.kind, e.id, e.network, e.addr, e.name]),
      [
        ['listener', 'web', 'tcp', '127.0.0.1:0', 'listener(web): tcp:127.0.0.1:0'],
        ['listener', 'api', 'unix', unixPath, `listener(api): unix:${unixPath}`],
      ],
    );
    for (const entry of inherited) assert.ok(ownerSockets.includes(String(entry.target)));
    assert.equal(pyPort(await newcomer.line(isListening('web'))), port);
    assert.equal((await newcomer.line('ready')).reply_hex, VECTOR_REPLY);
    await newcomer.line('owner');
    await owner.line('upgrade-completed');
    assert.equal((await owner.line('exit')).reason, 'upgraded');
    assert.equal(await exitCode(owner), 0);

    assert.equal(pidFile(dir), 'py-b');
    assert.equal(await bodyAt({ port }), `py ${newcomer.pid} web\n`);
    assert.equal(await bodyAt({ socketPath: unixPath }), `py ${newcomer.pid} api\n`);
  });

  it('completes with a v0 newcomer (ready byte 0x2A)', TIMEOUT, async (t) => {
    const dir = tempDir(t);
    const owner = nodeProcess(t, dir, 'node-a', '--tcp', 'web');
    const port = await nodePort(owner);
    await owner.line('ready');

    const v0 = py(t, ['newcomer', '--dir', dir, '--id', 'py-v0', '--serve', '--ready-byte', '2a']);
    const ready = await v0.line('ready');
    assert.equal(ready.ready_byte, '2a');
    assert.equal(ready.reply_hex, null, 'a v0 newcomer reads no reply');
    await v0.line('owner');
    await owner.line('upgrade-completed');
    assert.equal(await exitCode(owner), 0);
    assert.equal(pidFile(dir), 'py-v0');
    assert.equal(await bodyAt({ port }), `py ${v0.pid} web\n`);
  });
});

describe('mixed chains', () => {
  it('passes a listener Python -> Node -> Python -> Node', { timeout: 45_000 }, async (t) => {
    const dir = tempDir(t);
    const first = py(t, [
      'owner',
      '--dir',
      dir,
      '--id',
      'p1',
      '--serve',
      '--tcp',
      'web=127.0.0.1:0',
    ]);
    const port = pyPort(await first.line(isListening('web')));
    await first.line('owner');

    const second = nodeProcess(t, dir, 'n2', '--tcp', 'web');
    assert.equal(await nodePort(second), port);
    await second.line('ready');
    assert.equal(await exitCode(first), 0);
    assert.equal(await bodyAt({ port }), `hello from ${second.pid}\n`);

    const third = py(t, ['newcomer', '--dir', dir, '--id', 'p3', '--serve']);
    const [web] = (await third.line('inherited')).entries as Line[];
    assert.equal(web?.name, 'listener(web): tcp:127.0.0.1:0');
    await third.line('owner');
    assert.equal(await exitCode(second), 0);
    assert.equal(await bodyAt({ port }), `py ${third.pid} web\n`);

    const fourth = nodeProcess(t, dir, 'n4', '--tcp', 'web');
    const created = await fourth.line('created');
    assert.deepEqual(
      (created.inherited as Line[]).map((e) => [e.kind, e.id, e.addr]),
      [['listener', 'web', '127.0.0.1:0']],
    );
    assert.equal(await nodePort(fourth), port);
    await fourth.line('ready');
    assert.equal(await exitCode(third), 0);
    assert.equal(pidFile(dir), 'n4');
    assert.equal(await bodyAt({ port }), `hello from ${fourth.pid}\n`);
  });
});

describe("Go's byte vectors", () => {
  it(
    'an owner with no descriptors sends exactly the empty vector, and stays owner',
    TIMEOUT,
    async (t) => {
      const dir = tempDir(t);
      const owner = nodeProcess(t, dir, 'node-a');
      await owner.line('ready');
      for (let round = 0; round < 2; round++) {
        const from = owner.lines.length;
        const dump = py(t, ['dump-owner', '--dir', dir, '--id', `dump${round}`]);
        const metadata = await dump.line('metadata');
        assert.equal(metadata.hex, VECTOR_EMPTY);
        assert.equal(await exitCode(dump), 0, dump.stderr);
        // The dump closes without a ready byte: a failed handoff, after which we own again.
        const failed = await owner.line('upgrade-failed', 10_000, from);
        assert.equal(failed.code, 'ERR_TABLEROLL_HANDOFF_FAILED');
        owner.send('fds');
        assert.equal((await owner.line('fds', 5_000, from)).state, 'owner');
      }
      assert.equal(pidFile(dir), 'node-a');
    },
  );

  it(
    'an owner with a file, a unixgram conn and a TCP listener sends the three-entry vector',
    TIMEOUT,
    async (t) => {
      const dir = tempDir(t);
      const file = path.join(dir, 'f1.data');
      // Insertion order file, conn, listener, as in the Go vector.
      const owner = startCommand(t, PYTHON, [
        ...['-c', WITH_UNIXGRAM, process.execPath, path.join(FIXTURES, 'wire-owner.js')],
        ...['--dir', dir, '--id', 'node-a', '--file', `f1=${file}`, '--conn', 'c1={fd}'],
        ...['--tcp', 'web'],
      ]);
      const port = await nodePort(owner);
      await owner.line('owner');

      const dump = py(t, ['dump-owner', '--dir', dir, '--id', 'dump']);
      const metadata = await dump.line('metadata');
      assert.equal(metadata.hex, VECTOR_THREE);
      assert.equal(metadata.length, 0xb2);
      assert.equal(await exitCode(dump), 0, dump.stderr);
      const descriptors = dump.lines.filter((l) => l.event === 'descriptor');
      assert.deepEqual(
        descriptors.map((d) => [d.name, d.fds, d.ctrunc]),
        [
          ['file(f1): ', 1, false],
          ['conn(c1): unixgram:', 1, false],
          ['listener(web): tcp:127.0.0.1:0', 1, false],
        ],
        'one fd per message, names in Go style',
      );
      const [fileTarget, connTarget, webTarget] = descriptors.map(
        (d) => (d.targets as string[])[0],
      );
      assert.equal(fileTarget, file);
      const ownerTargets = fdTargets(owner.pid);
      assert.match(String(connTarget), /^socket:\[\d+\]$/);
      assert.ok(ownerTargets.includes(String(connTarget)), 'the conn is the one the owner holds');
      assert.ok(ownerTargets.includes(String(webTarget)), 'the listener is the one it serves on');
      assert.equal((await owner.line('upgrade-failed')).code, 'ERR_TABLEROLL_HANDOFF_FAILED');

      // Still the owner: the next real newcomer gets all three.
      const next = nodeProcess(t, dir, 'node-b', '--tcp', 'web');
      const created = await next.line('created');
      assert.deepEqual(
        (created.inherited as Line[]).map((e) => [e.kind, e.id]),
        [
          ['file', 'f1'],
          ['conn', 'c1'],
          ['listener', 'web'],
        ],
      );
      assert.equal(await nodePort(next), port);
      await next.line('ready');
      await owner.line('upgrade-completed');
      assert.equal(await exitCode(owner), 0);
      assert.equal(await bodyAt({ port }), `hello from ${next.pid}\n`);
    },
  );

  it(
    'a Node newcomer\'s ready message is exactly 42, length, {"version":1}, LF',
    TIMEOUT,
    async (t) => {
      const dir = tempDir(t);
      const owner = startCommand(t, PYTHON, [RAW_PEER, 'owner', '--dir', dir, '--id', 'raw']);
      const port = pyPort(await owner.line('listening'));
      await owner.line('owner');

      const node = nodeProcess(t, dir, 'node-b', '--tcp', 'web');
      assert.equal(await nodePort(node), port);
      const received = await owner.line('received');
      assert.equal(received.received_hex, VECTOR_READY);
      assert.equal(received.complete, true);
      await node.line('ready');
      assert.equal((await owner.line('done')).peer_closed, true, 'the newcomer hung up after');
      assert.equal(await exitCode(owner), 0);
      assert.equal(pidFile(dir), 'node-b');
      assert.equal(await bodyAt({ port }), `hello from ${node.pid}\n`);
    },
  );
});

describe("Go's order at the end of a handoff", () => {
  const failed = (line: Line): boolean => line.event === 'upgrade-failed';

  it(
    'a newcomer that hangs up before it records itself in pid still makes the owner step down',
    TIMEOUT,
    async (t) => {
      // Regression: Go's readyHandshake closes the connection when it returns, and only then
      // does Ready() write pid and release the lock (py_peer does the same). The Node owner read
      // pid as soon as the connection closed, found its own id and went back to owning: two
      // owners, and the old one never exits. raw_peer.py stretches that window until told.
      const dir = tempDir(t);
      const args = ['--dir', dir, '--id', 'node-a', '--tcp', 'web'];
      const owner = startFixture(t, NODE_PROCESS, args, { NODE_DEBUG: 'tableroll' });
      const port = await nodePort(owner);
      await owner.line('ready');

      const newcomer = startCommand(t, PYTHON, [RAW_PEER, 'newcomer', '--dir', dir, '--id', 'go']);
      assert.equal((await newcomer.line('closed')).reply_hex, VECTOR_REPLY);
      // Once the owner has seen the hang-up (its debug log says so), the newcomer records itself.
      await until(
        () => owner.stderr.includes('"step":"newcomer-closed"') || owner.lines.some(failed),
        'the owner to see the hang-up',
      );
      assert.ok(!owner.lines.some(failed), 'the owner gave up before the newcomer recorded itself');
      newcomer.send('record');
      await newcomer.line('owner');
      assert.equal(pidFile(dir), 'go');
      await owner.line('upgrade-completed', 5_000);
      assert.equal(await exitCode(owner), 0);
      assert.ok(!owner.lines.some(failed));
      await assert.rejects(bodyAt({ port }), 'nobody serves: the raw newcomer does not accept');
      newcomer.send('exit');
      assert.equal(await exitCode(newcomer), 0);
    },
  );

  it(
    'a newcomer that hangs up and dies without recording itself leaves the owner owning',
    TIMEOUT,
    async (t) => {
      const dir = tempDir(t);
      const owner = nodeProcess(t, dir, 'node-a', '--tcp', 'web');
      const port = await nodePort(owner);
      await owner.line('ready');
      const newcomer = startCommand(t, PYTHON, [RAW_PEER, 'newcomer', '--dir', dir, '--id', 'go']);
      await newcomer.line('closed');
      await newcomer.kill(); // releases the lock without writing pid
      const failure = await owner.line('upgrade-failed');
      assert.equal(failure.code, 'ERR_TABLEROLL_HANDOFF_FAILED');
      assert.equal(pidFile(dir), 'node-a');
      assert.equal(await bodyAt({ port }), `hello from ${owner.pid}\n`);
      const next = nodeProcess(t, dir, 'node-b', '--tcp', 'web');
      await next.line('ready');
      assert.equal(await exitCode(owner), 0);
    },
  );
});

describe('handoffs under HTTP load', () => {
  const load = (port: number): Load =>
    startLoad(
      { host: '127.0.0.1', port },
      { keepAliveClients: 2, freshClients: 2, maxMs: 20_000, requestTimeoutMs: 5_000 },
    );

  it('Node -> Python loses no request', TIMEOUT, async (t) => {
    const dir = tempDir(t);
    const owner = nodeProcess(t, dir, 'node-a', '--tcp', 'web');
    const port = await nodePort(owner);
    await owner.line('ready');
    const running = load(port);
    t.after(() => running.stop());
    await servedBy(running, `hello from ${owner.pid}`, 20);

    const newcomer = py(t, ['newcomer', '--dir', dir, '--id', 'py-b', '--serve']);
    await newcomer.line('owner');
    assert.equal(await exitCode(owner), 0);
    await servedBy(running, `py ${newcomer.pid} web`, 20);
    const result = await running.stop();
    assert.equal(result.failed, 0, JSON.stringify(result.reasons));
  });

  it('Python -> Node loses no request', TIMEOUT, async (t) => {
    const dir = tempDir(t);
    const owner = py(t, [
      'owner',
      '--dir',
      dir,
      '--id',
      'py-a',
      '--serve',
      '--tcp',
      'web=127.0.0.1:0',
    ]);
    const port = pyPort(await owner.line(isListening('web')));
    await owner.line('owner');
    const running = load(port);
    t.after(() => running.stop());
    await servedBy(running, `py ${owner.pid} web`, 20);

    const newcomer = nodeProcess(t, dir, 'node-b', '--tcp', 'web');
    await newcomer.line('ready');
    assert.equal(await exitCode(owner), 0);
    await servedBy(running, `hello from ${newcomer.pid}`, 20);
    const result = await running.stop();
    assert.equal(result.failed, 0, JSON.stringify(result.reasons));
  });
});
