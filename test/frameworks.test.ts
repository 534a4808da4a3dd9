/**
 * The framework examples in examples/, run as a user would: a second copy takes the port over
 * from the first under load (keep-alive and one-request-per-connection clients), with no failed
 * request, and the first drains and exits. The README's snippets are these files.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { startLoad } from '../scripts/http-load.js';
import { ROOT, startCommand, tempDir, until } from './helpers.js';

const EXAMPLES = ['express', 'fastify', 'koa', 'hono'];
const VERBATIM = [...EXAMPLES, 'websocket', 'unix-socket'];

describe('framework examples', () => {
  for (const name of EXAMPLES) {
    const script = path.join(ROOT, 'dist/examples', `${name}.js`);
    it(`${name}: hands its port to a second copy under load with no failed request`, async (t) => {
      const dir = tempDir(t);
      const args = ['--dir', dir, '--port', '0'];
      const first = startCommand(t, process.execPath, [script, ...args]);
      const { port } = (await first.line('ready')) as { port: number };
      const load = startLoad(
        { host: '127.0.0.1', port },
        { keepAliveClients: 2, freshClients: 2, maxMs: 60_000 },
      );
      const second = startCommand(t, process.execPath, [script, ...args]);
      assert.equal((await second.line('ready')).port, port);
      const exit = await first.line('exit');
      assert.deepEqual([exit.reason, exit.forced], ['upgraded', false]);
      assert.equal((await first.exited).code, 0);
      const served = load.result.ok;
      await until(() => load.result.ok > served + 20, 'requests served by the second copy');
      const result = await load.stop();
      assert.equal(result.failed, 0, JSON.stringify(result.reasons));
      assert.ok((result.bodies[`hello from ${first.pid}`] ?? 0) > 0);
      assert.ok((result.bodies[`hello from ${second.pid}`] ?? 0) > 0);
      second.proc.kill('SIGTERM');
      assert.equal((await second.exited).code, 0);
    });
  }
});

/**
 * A client that sends numbered messages one at a time and counts the acknowledgements; on a
 * close it reconnects and sends again what was not acknowledged.
 */
class EchoClient {
  readonly closeCodes: number[] = [];
  readonly acknowledgedBy = new Map<number, string>();
  private next = 0;
  private stopped = false;
  private socket: WebSocket | undefined;

  constructor(private readonly url: string) {}

  start(): void {
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.on('open', () => this.send());
    socket.on('message', (data: Buffer) => {
      const [pid, n] = data.toString().split(' ');
      this.acknowledgedBy.set(Number(n), pid!);
      this.next++;
      this.send();
    });
    socket.on('close', (code) => {
      this.closeCodes.push(code);
      if (!this.stopped) this.start();
    });
    socket.on('error', () => {});
  }

  private send(): void {
    if (!this.stopped && this.socket?.readyState === WebSocket.OPEN)
      this.socket.send(String(this.next));
  }

  stop(): void {
    this.stopped = true;
    this.socket?.close(1000);
  }
}

describe('unix socket example', () => {
  it('hands its socket to a second copy under load with no failed request; the path survives', async (t) => {
    const script = path.join(ROOT, 'dist/examples/unix-socket.js');
    const dir = tempDir(t);
    const socketPath = path.join(dir, 'app.sock');
    const args = ['--dir', path.join(dir, 'coord'), '--socket', socketPath];
    const first = startCommand(t, process.execPath, [script, ...args]);
    await first.line('ready');
    assert.equal(fs.statSync(socketPath).mode & 0o777, 0o660);
    const load = startLoad({ socketPath }, { keepAliveClients: 2, freshClients: 2, maxMs: 60_000 });
    const second = startCommand(t, process.execPath, [script, ...args]);
    await second.line('ready');
    assert.deepEqual((await first.line('exit')).reason, 'upgraded');
    assert.equal((await first.exited).code, 0);
    const served = load.result.ok;
    await until(() => load.result.ok > served + 20, 'requests served by the second copy');
    const result = await load.stop();
    assert.equal(result.failed, 0, JSON.stringify(result.reasons));
    assert.ok((result.bodies[`hello from ${second.pid}`] ?? 0) > 0);
    assert.ok(fs.statSync(socketPath).isSocket(), 'the old process did not unlink the path');
    second.proc.kill('SIGTERM');
    assert.equal((await second.exited).code, 0);
  });
});

describe('README snippets', () => {
  for (const name of VERBATIM) {
    it(`${name}: the README shows the example verbatim`, () => {
      const source = fs.readFileSync(path.join(ROOT, 'examples', `${name}.ts`), 'utf8');
      const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
      assert.ok(
        readme.includes('```ts\n' + source + '```'),
        `README.md must embed examples/${name}.ts`,
      );
    });
  }
});

describe('websocket example', () => {
  it('every client gets a 1001 close, reconnects to the new process, and no acknowledged message is lost', async (t) => {
    const script = path.join(ROOT, 'dist/examples/websocket.js');
    const dir = tempDir(t);
    const args = ['--dir', dir, '--port', '0'];
    const first = startCommand(t, process.execPath, [script, ...args]);
    const { port } = (await first.line('ready')) as { port: number };
    const clients = Array.from({ length: 3 }, () => new EchoClient(`ws://127.0.0.1:${port}/`));
    t.after(() => clients.forEach((c) => c.stop()));
    clients.forEach((c) => c.start());
    await until(() => clients.every((c) => c.acknowledgedBy.size > 10), 'messages to the first');
    const second = startCommand(t, process.execPath, [script, ...args]);
    await second.line('ready');
    const exit = await first.line('exit');
    assert.deepEqual([exit.reason, exit.forced], ['upgraded', false]);
    const bySecond = (c: EchoClient): number =>
      [...c.acknowledgedBy.values()].filter((pid) => pid === String(second.pid)).length;
    await until(() => clients.every((c) => bySecond(c) > 10), 'messages to the second');
    clients.forEach((c) => c.stop());
    for (const client of clients) {
      assert.equal(client.closeCodes[0], 1001, 'a going-away close, not a reset (1006)');
      const numbers = [...client.acknowledgedBy.keys()].sort((a, b) => a - b);
      assert.deepEqual(numbers, [...numbers.keys()], 'every message acknowledged, none skipped');
    }
    second.proc.kill('SIGTERM');
    assert.equal((await second.exited).code, 0);
  });
});
