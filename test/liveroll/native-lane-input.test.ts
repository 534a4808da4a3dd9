/**
 * The native lane (native/lane/) against input nobody should send: mangled requests from
 * clients, mangled responses from a child. Each case runs on a real connection; the lane must
 * answer it, hand it to http.Server, or close it, and after all of them still serve, hold no
 * connection and leak no descriptor. Mutations come from a fixed seed, so a failure repeats.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { startChild, startProxy } from '../support/proxy-kit.js';
import { openFdCount, until } from '../support/helpers.js';

const TIMEOUT = { timeout: 120_000 };

/** A small deterministic generator (mulberry32). */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = ['\r', '\n', ' ', ':', '\0', '\t', '0', 'f', ';', 'A', '\x7f', '\xff', '/', ','];

/** `text` with a few bytes changed, dropped, repeated or inserted, or cut short. */
function mangle(text: string, next: () => number): string {
  let out = text;
  const edits = 1 + Math.floor(next() * 3);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(next() * out.length);
    const pick = ALPHABET[Math.floor(next() * ALPHABET.length)] ?? ' ';
    switch (Math.floor(next() * 5)) {
      case 0:
        out = out.slice(0, at) + pick + out.slice(at + 1);
        break;
      case 1:
        out = out.slice(0, at) + out.slice(at + 1);
        break;
      case 2:
        out = out.slice(0, at) + pick.repeat(1 + Math.floor(next() * 40)) + out.slice(at);
        break;
      case 3:
        out = out.slice(0, at) + out.slice(at, at + 20).repeat(3) + out.slice(at + 20);
        break;
      default:
        out = out.slice(0, Math.max(1, at));
    }
  }
  return out;
}

/** Whether `reply` holds a whole response: its head, and its body by its framing. */
function whole(reply: string): boolean {
  const end = reply.indexOf('\r\n\r\n');
  if (end < 0) return false;
  const head = reply.slice(0, end);
  const body = reply.length - end - 4;
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
  if (status === 204 || status === 304) return true;
  const length = /\r\ncontent-length: *(\d+)/i.exec(head)?.[1];
  if (length !== undefined) return body >= Number(length);
  if (/\r\ntransfer-encoding: *chunked/i.test(head)) return reply.endsWith('\r\n\r\n') && body > 4;
  return false; // delimited by the close
}

/**
 * Sends `bytes` and `end`, a blank line by default (which completes most cut heads), then waits until a whole
 * response came or the proxy closed the connection. A head that is still incomplete waits for
 * the headers timeout (408); the client never ends its side, which would end the exchange.
 */
async function exchange(port: number, bytes: string, end = '\r\n\r\n'): Promise<string> {
  const client = connect(port, '127.0.0.1');
  client.on('error', () => {});
  let received = '';
  const done = new Promise<void>((resolve) => {
    client.on('close', () => resolve());
    client.setEncoding('latin1').on('data', (chunk: string) => {
      received += chunk;
      if (whole(received)) resolve();
    });
  });
  client.write(bytes + end, 'latin1');
  const timer = setTimeout(
    () => client.destroy(new Error('the proxy kept the connection')),
    10_000,
  );
  await done;
  clearTimeout(timer);
  client.destroy();
  return received;
}

function okApp(t: TestContext): Promise<number> {
  return startChild(t, (req, res) => {
    req.resume();
    req.on('end', () => res.end('fine'));
  });
}

async function assertHealthy(port: number, native: { size: number } | undefined): Promise<void> {
  const reply = await exchange(port, 'GET /after HTTP/1.1\r\nHost: x\r\nConnection: close');
  assert.match(reply, /^HTTP\/1\.1 200 [\s\S]*\r\n\r\nfine$/, 'the proxy still serves');
  await until(() => native?.size === 0, 'the lane to hold no connection');
}

test(
  'native lane: 400 mangled requests are answered, handed over or closed',
  TIMEOUT,
  async (t) => {
    const { proxy, port } = await startProxy(t, {
      nativeLane: true,
      clientHeadersTimeoutMs: 500,
    });
    proxy.add({ name: 'a', host: '127.0.0.1', port: await okApp(t) });
    const bases = [
      'GET /a?b=c HTTP/1.1\r\nHost: x\r\nAccept: */*',
      'POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello',
      'GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, x-drop\r\nX-Drop: 1\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n',
      'PUT /q HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX-Forwarded-For: 6.6.6.6\r\n\r\nabc',
    ];
    await exchange(port, bases[0] ?? ''); // the descriptors a first connection sets up
    const before = openFdCount();
    const next = random(20261205);
    const statuses = new Map<string, number>();
    for (let i = 0; i < 400; i++) {
      const base = bases[i % bases.length] ?? '';
      const reply = await exchange(port, mangle(base, next));
      const status = /^HTTP\/1\.1 (\d{3}) /.exec(reply)?.[1] ?? 'closed';
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
    t.diagnostic(`answers: ${JSON.stringify(Object.fromEntries(statuses))}`);
    assert.ok((statuses.get('200') ?? 0) > 0 && (statuses.get('400') ?? 0) > 0, 'both kinds came');
    await assertHealthy(port, proxy.native);
    await until(() => openFdCount() <= before, `descriptors back to ${before}`);
  },
);

test(
  'native lane: 300 mangled responses from a child get 502 or a cut, never a crash',
  TIMEOUT,
  async (t) => {
    const bases = [
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n',
      'HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n',
      'HTTP/1.1 200 OK\r\nConnection: close, x-hop\r\nX-Hop: 1\r\n\r\nuntil the end',
    ];
    const next = random(42);
    let answered = 0;
    const open = new Set<Socket>();
    const child = createTcpServer((socket) => {
      open.add(socket);
      socket.on('close', () => open.delete(socket));
      socket.on('error', () => {});
      socket.once('data', () => {
        const base = bases[answered % bases.length] ?? '';
        answered++;
        socket.end(mangle(base, next), 'latin1');
      });
    });
    child.listen(0, '127.0.0.1');
    await once(child, 'listening');
    t.after(() => {
      for (const s of open) s.destroy();
      child.close();
    });
    const { proxy, port } = await startProxy(t, { nativeLane: true, headersTimeoutMs: 1_000 });
    proxy.add({ name: 'raw', host: '127.0.0.1', port: (child.address() as AddressInfo).port });
    await exchange(port, 'GET / HTTP/1.1\r\nHost: x');
    const before = openFdCount();
    const statuses = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const reply = await exchange(port, 'GET / HTTP/1.1\r\nHost: x');
      const status = /^HTTP\/1\.1 (\d{3}) /.exec(reply)?.[1] ?? 'closed';
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
    t.diagnostic(`answers: ${JSON.stringify(Object.fromEntries(statuses))}`);
    assert.ok((statuses.get('502') ?? 0) > 0, 'broken answers got 502');
    await proxy.forget('raw');
    proxy.add({ name: 'ok', host: '127.0.0.1', port: await okApp(t) });
    await assertHealthy(port, proxy.native);
    await until(() => openFdCount() <= before + 2, 'descriptors back (the new child adds its own)');
  },
);

test(
  'native lane: plain keep-alive requests stay in C++; http.Server never holds them',
  TIMEOUT,
  async (t) => {
    const { proxy, port } = await startProxy(t, { nativeLane: true });
    const seen: string[] = [];
    const app = createHttpServer((req, res) => {
      seen.push(String(req.headers['x-forwarded-for']));
      res.end('fine');
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    t.after(() => {
      app.closeAllConnections();
      app.close();
    });
    proxy.add({ name: 'a', host: '127.0.0.1', port: (app.address() as AddressInfo).port });
    const client = connect(port, '127.0.0.1');
    t.after(() => client.destroy());
    let received = '';
    client.setEncoding('latin1').on('data', (chunk: string) => (received += chunk));
    for (let i = 0; i < 200; i++) {
      client.write(`GET /${i} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n`);
      await until(() => received.split('fine').length - 1 === i + 1, `answer ${i}`);
    }
    assert.equal(proxy.native?.size, 1, 'the lane holds the connection');
    const held = await new Promise<number>((resolve, reject) =>
      proxy.server.getConnections((err, count) => (err ? reject(err) : resolve(count))),
    );
    assert.equal(held, 0, "http.Server's count holds none");
    assert.deepEqual(
      [...new Set(seen)],
      ['127.0.0.1'],
      'the forged address never reached the child',
    );
  },
);

test(
  'native lane: a head with bare LF line ends goes to http.Server at once',
  TIMEOUT,
  async (t) => {
    // No headers timeout: a head the lane kept waiting for its CRLFs would never be answered.
    const { proxy, port } = await startProxy(t, { nativeLane: true, clientHeadersTimeoutMs: 0 });
    proxy.add({ name: 'a', host: '127.0.0.1', port: await okApp(t) });
    // What http.Server answers: llhttp reads bare LF leniently.
    const reply = await exchange(port, 'GET /lf HTTP/1.1\nHost: x\n\n', '');
    assert.match(reply, /^HTTP\/1\.1 (200|400) /);
  },
);
