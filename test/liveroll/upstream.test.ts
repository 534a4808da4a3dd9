/**
 * liveroll's own client to its children (src/liveroll/proxy/upstream.ts), through the proxy,
 * against children in this process on ephemeral loopback ports: Node HTTP servers, and raw TCP
 * servers where a child must send what Node's server never would. Connection reuse, the child's
 * keep-alive timeout, bodiless responses, responses delimited by the connection's end, broken
 * children, chunked uploads, and a response that comes before its upload ends.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import {
  Agent,
  createServer as createHttpServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { startProxy } from '../support/proxy-kit.js';
import {
  UpstreamPool,
  type UpstreamError,
  type UpstreamHandler,
} from '../../src/liveroll/proxy/upstream.js';

const TIMEOUT = { timeout: 30_000 };

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** One request through `agent` (or a connection of its own); `chunks` are sent unannounced. */
function send(
  port: number,
  path: string,
  options: { method?: string; agent?: Agent; chunks?: Buffer[]; body?: Buffer } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (options.body !== undefined) headers['content-length'] = String(options.body.length);
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      path,
      method: options.method ?? 'GET',
      agent: options.agent ?? false,
      headers,
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }),
      );
      res.on('error', reject);
    });
    for (const chunk of options.chunks ?? []) req.write(chunk);
    req.end(options.body);
  });
}

/** A Node HTTP child that counts the connections it accepted. */
async function httpChild(
  t: TestContext,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ server: Server; port: number; sockets: Socket[] }> {
  const server = createHttpServer(handler);
  server.keepAliveTimeout = 60_000;
  const sockets: Socket[] = [];
  server.on('connection', (s: Socket) => sockets.push(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { server, port: (server.address() as AddressInfo).port, sockets };
}

/** A raw TCP child: `answer` gets each connection's first bytes and writes what it likes. */
async function rawChild(
  t: TestContext,
  answer: (socket: Socket, request: string) => void,
): Promise<number> {
  const open = new Set<Socket>();
  const server = createTcpServer((socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    socket.on('error', () => {});
    socket.once('data', (data: Buffer) => answer(socket, data.toString('latin1')));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    for (const s of open) s.destroy();
    server.close();
  });
  return (server.address() as AddressInfo).port;
}

test('50 requests on one client connection use one connection to the child', TIMEOUT, async (t) => {
  const child = await httpChild(t, (_req, res) => res.end('ok'));
  const { proxy, port } = await startProxy(t);
  proxy.add({ name: 'a', host: '127.0.0.1', port: child.port });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  for (let i = 0; i < 50; i++) {
    const reply = await send(port, `/n/${i}`, { agent });
    assert.equal(reply.status, 200);
    assert.equal(reply.body.toString(), 'ok');
  }
  assert.equal(child.sockets.length, 1);
});

test(
  "an idle connection is closed before the child's announced keep-alive timeout",
  TIMEOUT,
  async (t) => {
    // The child announces 2 s but would keep the connection for 60: only the proxy closes it.
    const child = await httpChild(t, (_req, res) => {
      res.setHeader('keep-alive', 'timeout=2');
      res.end('ok');
    });
    const { proxy, port } = await startProxy(t);
    proxy.add({ name: 'a', host: '127.0.0.1', port: child.port });
    assert.equal((await send(port, '/')).status, 200);
    const first = child.sockets[0];
    assert.ok(first !== undefined);
    if (!first.destroyed) await once(first, 'close');
    const post = await send(port, '/after', { method: 'POST', body: Buffer.from('x') });
    assert.equal(post.status, 200, 'a POST after the idle close goes out on a new connection');
    assert.equal(child.sockets.length, 2);
  },
);

test('HEAD, 204 and 304 carry no body, and the connection goes on', TIMEOUT, async (t) => {
  const child = await httpChild(t, (req, res) => {
    if (req.url === '/empty') res.writeHead(204).end();
    else if (req.url === '/same') res.writeHead(304, { etag: '"v1"' }).end();
    else res.writeHead(200, { 'content-length': '5' }).end(req.method === 'HEAD' ? '' : 'hello');
  });
  const { proxy, port } = await startProxy(t);
  proxy.add({ name: 'a', host: '127.0.0.1', port: child.port });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const head = await send(port, '/', { method: 'HEAD', agent });
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], '5');
  assert.equal(head.body.length, 0);
  assert.equal((await send(port, '/empty', { agent })).status, 204);
  const same = await send(port, '/same', { agent });
  assert.equal(same.status, 304);
  assert.equal(same.headers.etag, '"v1"');
  const get = await send(port, '/', { agent });
  assert.equal(get.body.toString(), 'hello');
  assert.equal(child.sockets.length, 1, 'one connection carried all four');
});

test('a body delimited by the end of the connection arrives whole', TIMEOUT, async (t) => {
  const body = Buffer.alloc(300_000, 'z');
  let connections = 0;
  const childPort = await rawChild(t, (socket) => {
    connections++;
    socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n');
    socket.end(body);
  });
  const { proxy, port } = await startProxy(t);
  proxy.add({ name: 'a', host: '127.0.0.1', port: childPort });
  for (let i = 0; i < 2; i++) {
    const reply = await send(port, '/');
    assert.equal(reply.status, 200);
    assert.equal(reply.body.length, body.length);
  }
  assert.equal(connections, 2, 'a connection that ended is never reused');
});

test('a child that answers with bytes that are not HTTP: 502, not a retry', TIMEOUT, async (t) => {
  let answered = 0;
  const childPort = await rawChild(t, (socket) => {
    answered++;
    socket.end('this is not http\r\n\r\n');
  });
  const { proxy, port } = await startProxy(t);
  proxy.add({ name: 'a', host: '127.0.0.1', port: childPort });
  assert.equal((await send(port, '/')).status, 502);
  assert.equal(answered, 1);
  // A 101 nobody asked for is just as broken.
  const upgrader = await rawChild(t, (socket) =>
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n'),
  );
  await proxy.forget('a');
  proxy.add({ name: 'b', host: '127.0.0.1', port: upgrader });
  assert.equal((await send(port, '/')).status, 502);
});

test('a chunked upload of unannounced length reaches the child whole', TIMEOUT, async (t) => {
  const child = await httpChild(t, (req, res) => {
    let bytes = 0;
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => res.end(JSON.stringify({ bytes, te: req.headers['transfer-encoding'] })));
  });
  const { proxy, port } = await startProxy(t);
  proxy.add({ name: 'a', host: '127.0.0.1', port: child.port });
  const chunks = [1, 100, 70_000, 3].map((n) => Buffer.alloc(n, 'c'));
  const reply = await send(port, '/up', { method: 'POST', chunks });
  assert.deepEqual(JSON.parse(reply.body.toString()), { bytes: 70_104, te: 'chunked' });
});

test(
  'a response that comes before its upload ends reaches the client, and the next request is served',
  TIMEOUT,
  async (t) => {
    const child = await httpChild(t, (req, res) => {
      if (req.url === '/refuse') res.writeHead(413, { connection: 'keep-alive' }).end('too big');
      else res.end('fine');
    });
    const { proxy, port } = await startProxy(t);
    proxy.add({ name: 'a', host: '127.0.0.1', port: child.port });
    const refused = await send(port, '/refuse', {
      method: 'POST',
      body: Buffer.alloc(8 * 1024 * 1024, 'b'),
    });
    assert.equal(refused.status, 413);
    assert.equal(refused.body.toString(), 'too big');
    assert.equal((await send(port, '/next')).body.toString(), 'fine');
  },
);

test(
  'bytes past the announced Content-Length are dropped with their connection',
  TIMEOUT,
  async (t) => {
    let connections = 0;
    const childPort = await rawChild(t, (socket) => {
      connections++;
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\nforged');
    });
    const { proxy, port } = await startProxy(t);
    proxy.add({ name: 'a', host: '127.0.0.1', port: childPort });
    for (let i = 0; i < 2; i++) assert.equal((await send(port, '/')).body.toString(), 'ok');
    assert.equal(connections, 2, 'the connection that carried extra bytes was not reused');
  },
);

test(
  'a child that closes inside a Content-Length body cuts the response short',
  TIMEOUT,
  async (t) => {
    const childPort = await rawChild(t, (socket) => {
      socket.end('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly ten b');
    });
    const { proxy, port } = await startProxy(t);
    proxy.add({ name: 'a', host: '127.0.0.1', port: childPort });
    const outcome = await new Promise<string>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/', agent: false });
      req.on('error', (err) => resolve(`request error ${err.message}`));
      req.on('response', (res) => {
        let got = 0;
        res.on('data', (c: Buffer) => (got += c.length));
        res.on('error', () => resolve(`cut after ${got} bytes`));
        res.on('aborted', () => resolve(`cut after ${got} bytes`));
        res.on('end', () => resolve(`ended after ${got} bytes`));
      });
      req.end();
    });
    assert.equal(outcome, 'cut after 10 bytes');
    assert.equal(await proxy.rotation.all()[0]?.idle(5_000), true, 'nothing left in flight');
  },
);

test(
  "a client's backpressure on the last chunk does not stall the next exchange on that connection",
  TIMEOUT,
  async (t) => {
    const child = await httpChild(t, (req, res) => res.end(`answer to ${req.url}`));
    const pool = new UpstreamPool('127.0.0.1', child.port, {
      connectTimeoutMs: 5_000,
      headersTimeoutMs: 5_000,
      bodyTimeoutMs: 5_000,
    });
    t.after(() => pool.destroy());
    /** One exchange whose handler reports backpressure on every chunk and never resumes. */
    const exchange = (path: string): Promise<string> =>
      new Promise((resolve, reject) => {
        let body = '';
        const handler: UpstreamHandler = {
          onRequestStart: () => {},
          onResponseStart: () => {},
          onResponseData: (chunk) => {
            body += chunk.toString();
            return false;
          },
          onResponseEnd: () => resolve(body),
          onResponseError: (err: UpstreamError) => reject(new Error(`${err.code} ${err.message}`)),
        };
        pool.dispatch({ method: 'GET', path, headers: ['host', 'child'] }, handler);
      });
    assert.equal(await exchange('/one'), 'answer to /one');
    assert.equal(await exchange('/two'), 'answer to /two');
    assert.equal(child.sockets.length, 1, 'the second exchange reused the connection');
  },
);

test(
  'the headers timeout counts from the end of an upload, and a body has its own silence timeout',
  TIMEOUT,
  async (t) => {
    const pace = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    const child = await httpChild(t, (req, res) => {
      if (req.url === '/upload') {
        let size = 0;
        req.on('data', (c: Buffer) => (size += c.length));
        req.on('end', () => res.end(`got ${size}`));
      } else if (req.url === '/slow-head') {
        setTimeout(() => res.end('late'), 2_000);
      } else if (req.url === '/trickle') {
        // Gaps shorter than the body's silence timeout, a whole longer than the headers timeout.
        res.writeHead(200, { 'content-type': 'text/plain' });
        let left = 6;
        const tick = (): void => {
          if (--left === 0) return void res.end('end');
          res.write('part ');
          setTimeout(tick, 100);
        };
        tick();
      } else {
        res.writeHead(200, { 'content-length': '10' });
        res.write('12345'); // and nothing more
      }
    });
    const { proxy, port } = await startProxy(t, { headersTimeoutMs: 300, idleTimeoutMs: 400 });
    proxy.add({ name: 'a', host: '127.0.0.1', port: child.port });

    // An upload with two silences longer than either timeout, straight through a pool (the
    // proxy's own client side would cut such an upload): the child answers after its end.
    const pool = new UpstreamPool('127.0.0.1', child.port, {
      connectTimeoutMs: 5_000,
      headersTimeoutMs: 300,
      bodyTimeoutMs: 400,
    });
    t.after(() => pool.destroy());
    const body = Object.assign(new PassThrough(), { headers: {} });
    const uploaded = new Promise<string>((resolve, reject) => {
      let answer = '';
      const handler: UpstreamHandler = {
        onRequestStart: () => {},
        onResponseStart: (status) => (answer += `${status} `),
        onResponseData: (chunk) => {
          answer += chunk.toString();
          return true;
        },
        onResponseEnd: () => resolve(answer),
        onResponseError: (err: UpstreamError) => reject(new Error(`${err.code} ${err.message}`)),
      };
      const request = { method: 'POST', path: '/upload', headers: ['host', 'child'] };
      pool.dispatch({ ...request, body: body as unknown as IncomingMessage }, handler);
    });
    for (let i = 0; i < 2; i++) {
      body.write(Buffer.alloc(3000, 'u'));
      await pace(500);
    }
    body.end();
    assert.equal(await uploaded, '200 got 6000');

    // The child answers 200 after 2 s: a 504 can only come from the headers timeout.
    const late = await send(port, '/slow-head');
    assert.equal(late.status, 504, 'no headers within 300 ms');

    const trickle = await send(port, '/trickle');
    assert.equal(trickle.status, 200);
    assert.equal(trickle.body.toString(), 'part part part part part end');

    // Headers, then silence inside a Content-Length body: the client's response is cut short.
    const cut = await new Promise<string>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/stall', agent: false });
      req.on('error', () => resolve('error before a response'));
      req.on('response', (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('error', () => {});
        res.on('close', () => resolve(`${res.complete ? 'complete' : 'cut'} after ${body}`));
      });
      req.end();
    });
    assert.equal(cut, 'cut after 12345');
  },
);

test(
  'a body the child writes in small pieces arrives intact at a client that reads it late, on both paths',
  TIMEOUT,
  async (t) => {
    // 24 MiB (more than loopback's socket buffers hold) in 4 KiB writes, each piece different:
    // the proxy reads them in small reads into one buffer of its own, while the client's socket
    // is full and the proxy's writes queue.
    const PIECES = 6 * 1024;
    const piece = (i: number): Buffer => Buffer.alloc(4096, `${i % 251};`);
    const expected = Buffer.concat(Array.from({ length: PIECES }, (_, i) => piece(i)));
    let sent: () => void = () => {};
    const child = await httpChild(t, (_req, res) => {
      res.writeHead(200, { 'content-length': String(expected.length) });
      let i = 0;
      const next = (): void => {
        if (i === PIECES) return void res.end(() => sent());
        if (res.write(piece(i++))) return void setImmediate(next);
        // Every buffer on the way is full: the client may start reading.
        sent();
        res.once('drain', next);
      };
      next();
    });
    for (const fastLane of [true, false]) {
      const { proxy, port } = await startProxy(t, { fastLane });
      proxy.add({ name: 'a', host: '127.0.0.1', port: child.port });
      const childDone = new Promise<void>((resolve) => (sent = resolve));
      const body = await new Promise<Buffer>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port, path: '/', agent: false });
        req.on('error', reject);
        req.on('response', (res) => {
          // Nothing is read until the child has written everything, or can write no more.
          res.pause();
          const parts: Buffer[] = [];
          void childDone.then(() => {
            res.on('data', (c: Buffer) => parts.push(c));
            res.resume();
          });
          res.on('end', () => resolve(Buffer.concat(parts)));
        });
        req.end();
      });
      assert.equal(body.length, expected.length, `fastLane ${fastLane}`);
      assert.ok(body.equals(expected), `the body came through unchanged (fastLane ${fastLane})`);
    }
  },
);
