/**
 * Request bodies in the native lane: a body over 64 KiB, or one held back for `100 Continue`,
 * streams from the client to the child as it comes instead of leaving for http.Server. Real
 * connections, real children; each body's SHA-256 is checked at the far end.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { deadPort, startChild, startProxy } from '../support/proxy-kit.js';
import { openFdCount, until } from '../support/helpers.js';
import type { ReverseProxy } from '../../src/liveroll/proxy/proxy.js';

const TIMEOUT = { timeout: 120_000 };

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** A child that answers each request with the SHA-256 of its body and its size. */
const hashing: Handler = (req, res) => {
  const hash = createHash('sha256');
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    hash.update(chunk);
  });
  req.on('end', () => res.end(`${size} ${hash.digest('hex')}`));
};

/** A raw client: what it received so far, and a wait for a condition on it. */
function client(
  t: TestContext,
  port: number,
): {
  socket: Socket;
  received: () => Buffer;
  closed: Promise<unknown>;
} {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  t.after(() => socket.destroy());
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  const closed = once(socket, 'close');
  return { socket, received: () => Buffer.concat(chunks), closed };
}

function digest(body: Buffer): string {
  return `${body.length} ${createHash('sha256').update(body).digest('hex')}`;
}

/** How many connections http.Server holds (the lane's are not among them). */
function serverHeld(proxy: ReverseProxy): Promise<number> {
  return new Promise((resolve, reject) =>
    proxy.server.getConnections((err, count) => (err ? reject(err) : resolve(count))),
  );
}

test(
  'native lane: 4 MiB uploads stream through C++ and the connection carries on',
  TIMEOUT,
  async (t) => {
    const { proxy, port } = await startProxy(t, { nativeLane: true });
    proxy.add({ name: 'a', host: '127.0.0.1', port: await startChild(t, hashing) });
    const c = client(t, port);
    const bodies = [randomBytes(4 << 20), randomBytes((4 << 20) + 12_345)];
    for (const body of bodies) {
      c.socket.write(`PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`);
      c.socket.write(body);
      await until(() => c.received().toString('latin1').endsWith(digest(body)), 'the digest');
    }
    const text = c.received().toString('latin1');
    assert.equal(text.split('HTTP/1.1 200 ').length - 1, 2, 'two answers on one connection');
    assert.doesNotMatch(text, /connection: close/i, 'the connection stays open');
    assert.equal(proxy.native?.size, 1, 'the lane holds the connection');
    assert.equal(await serverHeld(proxy), 0, 'http.Server never held it');
  },
);

test(
  'native lane: Expect: 100-continue goes to the child, whose 100 releases the body',
  TIMEOUT,
  async (t) => {
    const { proxy, port } = await startProxy(t, { nativeLane: true });
    const expects: string[] = [];
    const appPort = await startChild(t, (req, res) => {
      expects.push(String(req.headers.expect));
      hashing(req, res);
    });
    proxy.add({ name: 'a', host: '127.0.0.1', port: appPort });
    const c = client(t, port);
    const body = randomBytes(300_000);
    c.socket.write(
      `POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    // The client holds its body until the child (Node answers 100 itself) says so.
    await until(() => c.received().toString('latin1').includes('\r\n\r\n'), 'an interim answer');
    assert.equal(c.received().toString('latin1'), 'HTTP/1.1 100 Continue\r\n\r\n');
    c.socket.write(body);
    await until(() => c.received().toString('latin1').endsWith(digest(body)), 'the digest');
    assert.deepEqual(expects, ['100-continue'], 'the child saw the expectation');
    assert.equal(proxy.native?.size, 1, 'the lane holds the connection');
    assert.equal(await serverHeld(proxy), 0, 'http.Server never held it');
  },
);

test(
  'native lane: a child that refuses before the body ends the connection after its answer',
  TIMEOUT,
  async (t) => {
    const { proxy, port } = await startProxy(t, { nativeLane: true });
    let bodies = 0;
    const appPort = await startChild(
      t,
      (req, res) => {
        req.on('data', () => (bodies += 1));
        res.writeHead(413, { 'content-length': '8' }).end('too big\n');
      },
      (app) =>
        app.on('checkContinue', (_req, res) => {
          res.writeHead(417, { 'content-length': '4' }).end('no!\n');
        }),
    );
    proxy.add({ name: 'a', host: '127.0.0.1', port: appPort });
    await until(() => proxy.native !== undefined, 'the lane');
    const before = openFdCount();

    // With Expect: the 417 comes at once, and the body is never sent.
    const held = client(t, port);
    held.socket.write(
      'POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n',
    );
    await held.closed;
    assert.match(
      held.received().toString('latin1'),
      /^HTTP\/1\.1 417 [^]*connection: close[^]*no!\n$/i,
    );

    // Without: the 413 comes while 8 MiB are on their way; the client reads it, then the end.
    const pushed = client(t, port);
    pushed.socket.write('PUT /p HTTP/1.1\r\nHost: x\r\nContent-Length: 8388608\r\n\r\n');
    pushed.socket.write(randomBytes(8 << 20));
    await pushed.closed;
    assert.match(
      pushed.received().toString('latin1'),
      /^HTTP\/1\.1 413 [^]*connection: close[^]*too big\n$/i,
    );

    await until(() => proxy.native?.size === 0, 'the lane to hold no connection');
    await until(() => openFdCount() <= before, `descriptors back to ${before}`);
    const after = client(t, port);
    after.socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await after.closed;
    assert.match(after.received().toString('latin1'), /^HTTP\/1\.1 413 /, 'the proxy still serves');
  },
);

test(
  'native lane: a child that echoes the body as it reads it gets all of it, and so does the client',
  TIMEOUT,
  async (t) => {
    const { proxy, port } = await startProxy(t, { nativeLane: true });
    const appPort = await startChild(t, (req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      req.pipe(res);
    });
    proxy.add({ name: 'a', host: '127.0.0.1', port: appPort });
    const c = client(t, port);
    const body = randomBytes(3 << 20);
    c.socket.write(`POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`);
    c.socket.write(body);
    await c.closed; // the response began before the body ended: the connection's last
    const reply = c.received();
    const end = reply.indexOf('\r\n\r\n');
    assert.match(reply.subarray(0, end).toString('latin1'), /transfer-encoding: chunked/i);
    // De-chunk the echo.
    const parts: Buffer[] = [];
    let at = end + 4;
    for (;;) {
      const eol = reply.indexOf('\r\n', at);
      const size = Number.parseInt(reply.subarray(at, eol).toString('latin1'), 16);
      if (size === 0) break;
      parts.push(reply.subarray(eol + 2, eol + 2 + size));
      at = eol + 2 + size + 2;
    }
    assert.equal(digest(Buffer.concat(parts)), digest(body), 'the echo is the body');
  },
);

test(
  'native lane: an upload goes whole to the next child when the first refuses the connection',
  TIMEOUT,
  async (t) => {
    const { proxy, port } = await startProxy(t, { nativeLane: true });
    proxy.add({ name: 'dead', host: '127.0.0.1', port: await deadPort() });
    proxy.add({ name: 'live', host: '127.0.0.1', port: await startChild(t, hashing) });
    for (let i = 0; i < 4; i++) {
      // Rotation alternates: at least two of these try the dead child first.
      const c = client(t, port);
      const body = randomBytes(2 << 20);
      c.socket.write(
        `PUT /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n`,
      );
      c.socket.write(body);
      await c.closed;
      assert.ok(
        c.received().toString('latin1').endsWith(digest(body)),
        `upload ${i} arrived whole`,
      );
    }
  },
);

test(
  'native lane: a client that stops in the middle of its body is closed at the idle timeout',
  TIMEOUT,
  async (t) => {
    const { proxy, port } = await startProxy(t, { nativeLane: true, idleTimeoutMs: 300 });
    let aborted = false;
    const appPort = await startChild(t, (req) => {
      req.resume();
      req.on('close', () => (aborted = !req.complete));
    });
    proxy.add({ name: 'a', host: '127.0.0.1', port: appPort });
    const c = client(t, port);
    c.socket.write('PUT /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n');
    c.socket.write(randomBytes(200_000));
    await c.closed;
    await until(() => aborted, 'the child to see its request cut');
    assert.equal(proxy.native?.size, 0);
  },
);
