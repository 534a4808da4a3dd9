/**
 * The framework examples in examples/, run as a user would: a second copy takes the port over
 * from the first under load (keep-alive and one-request-per-connection clients), with no failed
 * request, and the first drains and exits. The snippets in docs/frameworks.md are these files.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import fs from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { WebSocket } from 'ws';
import { startLoad } from '../../scripts/http-load.js';
import { ROOT, certificate, startCommand, tempDir, until, type Child } from '../support/helpers.js';

const EXAMPLES = ['express', 'fastify', 'koa', 'hono'];
const VERBATIM = [...EXAMPLES, 'websocket', 'unix-socket', 'http2', 'cluster'];

/** Starts copies of dist/examples/<name>.js with the given arguments, killed after the test. */
function example(t: TestContext, name: string): (args: string[]) => Child {
  const script = path.join(ROOT, 'dist/examples', `${name}.js`);
  return (args) => startCommand(t, process.execPath, [script, ...args]);
}

describe('framework examples', () => {
  for (const name of EXAMPLES) {
    it(`${name}: hands its port to a second copy under load with no failed request`, async (t) => {
      const run = example(t, name);
      const dir = tempDir(t);
      const args = ['--dir', dir, '--port', '0'];
      const first = run(args);
      const { port } = (await first.line('ready')) as { port: number };
      const load = startLoad(
        { host: '127.0.0.1', port },
        { keepAliveClients: 2, freshClients: 2, maxMs: 60_000 },
      );
      const second = run(args);
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
    const run = example(t, 'unix-socket');
    const dir = tempDir(t);
    const socketPath = path.join(dir, 'app.sock');
    const args = ['--dir', path.join(dir, 'coord'), '--socket', socketPath];
    const first = run(args);
    await first.line('ready');
    assert.equal(fs.statSync(socketPath).mode & 0o777, 0o660);
    const load = startLoad({ socketPath }, { keepAliveClients: 2, freshClients: 2, maxMs: 60_000 });
    const second = run(args);
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

/** Sends numbered lines one at a time over TCP; reconnects on a close and resends the last. */
class LineClient {
  readonly acknowledgedBy = new Map<number, string>();
  readonly errors: string[] = [];
  private next = 0;
  private stopped = false;
  private socket: net.Socket | undefined;

  constructor(private readonly port: number) {}

  start(): void {
    const socket = net.connect(this.port, '127.0.0.1');
    this.socket = socket;
    let pending = '';
    socket.on('connect', () => socket.write(`${this.next}\n`));
    socket.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk;
      for (let nl = pending.indexOf('\n'); nl !== -1; nl = pending.indexOf('\n')) {
        const [pid, n] = pending.slice(0, nl).split(' ');
        pending = pending.slice(nl + 1);
        this.acknowledgedBy.set(Number(n), pid!);
        this.next++;
        if (!this.stopped && socket.writable) socket.write(`${this.next}\n`);
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => this.errors.push(err.code ?? err.message));
    socket.on('close', () => {
      if (!this.stopped) this.start();
    });
  }

  stop(): void {
    this.stopped = true;
    this.socket?.end();
  }
}

describe('tcp and udp examples', () => {
  it('tcp: persistent line-echo clients move to the new process with no reset and no line lost', async (t) => {
    const run = example(t, 'tcp-echo');
    const dir = tempDir(t);
    const args = ['--dir', dir, '--port', '0'];
    const first = run(args);
    const { port } = (await first.line('ready')) as { port: number };
    const clients = Array.from({ length: 3 }, () => new LineClient(port));
    t.after(() => clients.forEach((c) => c.stop()));
    clients.forEach((c) => c.start());
    await until(() => clients.every((c) => c.acknowledgedBy.size > 10), 'lines to the first');
    const second = run(args);
    await second.line('ready');
    assert.equal((await first.line('exit')).reason, 'upgraded');
    const bySecond = (c: LineClient): number =>
      [...c.acknowledgedBy.values()].filter((pid) => pid === String(second.pid)).length;
    await until(() => clients.every((c) => bySecond(c) > 10), 'lines to the second');
    clients.forEach((c) => c.stop());
    for (const client of clients) {
      assert.deepEqual(client.errors, [], 'no reset');
      const numbers = [...client.acknowledgedBy.keys()].sort((a, b) => a - b);
      assert.deepEqual(numbers, [...numbers.keys()], 'every line answered, none skipped');
    }
    second.proc.kill('SIGTERM');
    assert.equal((await second.exited).code, 0);
  });

  it('udp: datagrams sent across the handoff are answered by one process or the other; the loss is printed and bounded', async (t) => {
    const run = example(t, 'udp-echo');
    const dir = tempDir(t);
    const args = ['--dir', dir, '--port', '0'];
    const first = run(args);
    const { port } = (await first.line('ready')) as { port: number };
    const client = dgram.createSocket('udp4');
    t.after(() => client.close());
    const answers = new Map<number, string>();
    client.on('message', (message) => {
      const [pid, n] = message.toString().split(' ');
      answers.set(Number(n), pid!);
    });
    await new Promise<void>((resolve) => client.bind(0, '127.0.0.1', resolve));
    let sent = 0;
    const send = (): void => client.send(String(sent++), port, '127.0.0.1');
    // One datagram per answer (or per 20 ms without one), through the whole handoff.
    let stopped = false;
    const pump = async (): Promise<void> => {
      while (!stopped) {
        const before = answers.size;
        send();
        await until(() => answers.size > before || stopped, 'an answer', 20).catch(() => {});
      }
    };
    const pumping = pump();
    await until(() => answers.size > 50, 'answers from the first');
    const second = run(args);
    await second.line('ready');
    assert.equal((await first.line('exit')).reason, 'upgraded');
    const bySecond = (): number =>
      [...answers.values()].filter((pid) => pid === String(second.pid)).length;
    await until(() => bySecond() > 50, 'answers from the second');
    stopped = true;
    await pumping;
    const lost = sent - answers.size;
    t.diagnostic(`udp: ${sent} datagrams sent, ${answers.size} answered, ${lost} lost`);
    assert.ok(lost <= Math.max(2, sent * 0.01), `${lost} of ${sent} datagrams lost`);
    second.proc.kill('SIGTERM');
    assert.equal((await second.exited).code, 0);
  });
});

/** A TLS example started with a fresh certificate: how to start more copies, and the first. */
async function startTlsExample(t: TestContext, name: string) {
  const run = example(t, name);
  const dir = tempDir(t);
  const { cert, key } = certificate(dir);
  const args = ['--dir', path.join(dir, 'coord'), '--port', '0', '--cert', cert, '--key', key];
  const first = run(args);
  const { port } = (await first.line('ready')) as { port: number };
  return { run, args, first, port, ca: fs.readFileSync(cert) };
}

describe('http2 example', () => {
  it('a client multiplexing streams over one session sees no reset, a GOAWAY, and a new session on the new process', async (t) => {
    const { run, args, first, port, ca } = await startTlsExample(t, 'http2');
    const connect = (): http2.ClientHttp2Session => {
      const session = http2.connect(`https://127.0.0.1:${port}`, { ca });
      session.on('error', () => {});
      t.after(() => session.destroy());
      return session;
    };
    const get = (session: http2.ClientHttp2Session, p: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const stream = session.request({ ':path': p });
        let body = '';
        stream.setEncoding('utf8').on('data', (c: string) => (body += c));
        stream.on('end', () => resolve(body));
        stream.on('error', reject);
        stream.end();
      });
    const session = connect();
    const goaway = once(session, 'goaway');
    assert.match(await get(session, '/'), new RegExp(`hello from ${first.pid} over 2.0`));
    const inFlight = [get(session, '/?ms=300'), get(session, '/?ms=500'), get(session, '/?ms=700')];
    // An HTTP/1.1 client (allowHTTP1) with a request in flight too.
    const http1 = new Promise<{ body: string; connection: string | undefined }>(
      (resolve, reject) => {
        https
          .get({ host: '127.0.0.1', port, path: '/?ms=500', ca, agent: false }, (res) => {
            let body = '';
            res.setEncoding('utf8').on('data', (c: string) => (body += c));
            res.on('end', () => resolve({ body, connection: res.headers.connection }));
          })
          .on('error', reject);
      },
    );
    const second = run(args);
    await second.line('ready');
    await goaway;
    for (const body of await Promise.all(inFlight)) {
      assert.match(body, new RegExp(`hello from ${first.pid}`), 'streams in flight finished');
    }
    const answer = await http1;
    assert.match(answer.body, new RegExp(`hello from ${first.pid} over 1.1`));
    assert.equal(answer.connection, 'close');
    const exit = await first.line('exit');
    assert.deepEqual([exit.reason, exit.forced], ['upgraded', false]);
    assert.match(await get(connect(), '/'), new RegExp(`hello from ${second.pid} over 2.0`));
    second.proc.kill('SIGTERM');
    assert.equal((await second.exited).code, 0);
  });
});

describe('https example', () => {
  it('hands its TLS port over under keep-alive and one-shot load with no failed request', async (t) => {
    const { run, args, first, port, ca } = await startTlsExample(t, 'https-server');
    const keepAlive = new https.Agent({ keepAlive: true, ca });
    t.after(() => keepAlive.destroy());
    const outcome = { ok: 0, failed: [] as string[], bodies: new Set<string>() };
    let stopped = false;
    const loop = async (agent: https.Agent | false): Promise<void> => {
      while (!stopped) {
        await new Promise<void>((resolve) => {
          const req = https.get({ host: '127.0.0.1', port, path: '/', agent, ca }, (res) => {
            let body = '';
            res.setEncoding('utf8').on('data', (c: string) => (body += c));
            res.on('end', () => {
              outcome.ok++;
              outcome.bodies.add(body.trim());
              resolve();
            });
          });
          req.on('error', (err) => {
            outcome.failed.push(String(err));
            resolve();
          });
        });
      }
    };
    const loops = [loop(keepAlive), loop(keepAlive), loop(false), loop(false)];
    await until(() => outcome.ok > 20, 'requests to the first');
    const second = run(args);
    await second.line('ready');
    const exit = await first.line('exit');
    assert.deepEqual([exit.reason, exit.forced], ['upgraded', false]);
    await until(() => outcome.bodies.has(`hello from ${second.pid}`), 'the second to answer');
    const served = outcome.ok;
    await until(() => outcome.ok > served + 20, 'more requests to the second');
    stopped = true;
    await Promise.all(loops);
    assert.deepEqual(outcome.failed, []);
    assert.ok(outcome.bodies.has(`hello from ${first.pid}`));
    second.proc.kill('SIGTERM');
    assert.equal((await second.exited).code, 0);
  });
});

describe('cluster example', () => {
  it('4 workers hand over to the next group under load: no failed request, no old worker left', async (t) => {
    const run = example(t, 'cluster');
    const dir = tempDir(t);
    const args = ['--dir', dir, '--port', '0', '--workers', '4'];
    const first = run(args);
    const ready = await first.line('ready');
    const port = ready.port as number;
    const oldWorkers = ready.workers as number[];
    t.after(() => oldWorkers.forEach((pid) => killQuietly(pid)));
    const load = startLoad(
      { host: '127.0.0.1', port },
      { keepAliveClients: 4, freshClients: 4, maxMs: 60_000 },
    );
    await until(() => load.result.ok > 50, 'requests to the first group');
    const second = run(args);
    const next = await second.line('ready');
    t.after(() => (next.workers as number[]).forEach((pid) => killQuietly(pid)));
    assert.equal(next.port, port);
    assert.equal((await first.line('exit')).reason, 'upgraded');
    assert.equal((await first.exited).code, 0);
    for (const pid of oldWorkers) assert.ok(!isAlive(pid), `old worker ${pid} is gone`);
    const served = load.result.ok;
    await until(() => load.result.ok > served + 50, 'requests to the second group');
    const result = await load.stop();
    assert.equal(result.failed, 0, JSON.stringify(result.reasons));
    const answered = (pids: number[]): number =>
      pids.filter((pid) => (result.bodies[`hello from ${pid}`] ?? 0) > 0).length;
    assert.ok(answered(oldWorkers) >= 2, 'the old workers shared the load');
    assert.ok(answered(next.workers as number[]) >= 2, 'the new workers share the load');
    second.proc.kill('SIGTERM');
    assert.equal((await second.exited).code, 0);
  });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

describe('docs/frameworks.md snippets', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'docs', 'frameworks.md'), 'utf8');
  for (const name of VERBATIM) {
    it(`${name}: the snippet in docs/frameworks.md is an excerpt of the example, in order and unedited`, () => {
      const marker = `<!-- example: ${name} -->\n\`\`\`ts\n`;
      const at = readme.indexOf(marker);
      assert.ok(at !== -1, `docs/frameworks.md has a snippet for examples/${name}.ts`);
      const snippet = readme.slice(at + marker.length, readme.indexOf('```', at + marker.length));
      const source = fs.readFileSync(path.join(ROOT, 'examples', `${name}.ts`), 'utf8').split('\n');
      let from = 0;
      for (const line of snippet.split('\n').filter((l) => l !== '' && l !== '// ...')) {
        const found = source.indexOf(line, from);
        assert.ok(found !== -1, `examples/${name}.ts has, in this order: ${line}`);
        from = found + 1;
      }
    });
  }
});

describe('websocket example', () => {
  it('every client gets a 1001 close, reconnects to the new process, and no acknowledged message is lost', async (t) => {
    const run = example(t, 'websocket');
    const dir = tempDir(t);
    const args = ['--dir', dir, '--port', '0'];
    const first = run(args);
    const { port } = (await first.line('ready')) as { port: number };
    const clients = Array.from({ length: 3 }, () => new EchoClient(`ws://127.0.0.1:${port}/`));
    t.after(() => clients.forEach((c) => c.stop()));
    clients.forEach((c) => c.start());
    await until(() => clients.every((c) => c.acknowledgedBy.size > 10), 'messages to the first');
    const second = run(args);
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
