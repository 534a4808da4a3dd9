/**
 * The proxy's fast lane (src/liveroll/proxy/fast-lane.ts) against real fixture apps, with raw
 * client sockets: it answers as http.Server's path does, hands a connection over mid-stream
 * without losing or reordering a byte, keeps pipelined answers in order, and times out and
 * drains like http.Server.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { test, type TestContext } from 'node:test';
import type { ProxyOptions, ReverseProxy } from '../../src/liveroll/proxy/proxy.js';
import { drainHttpServer } from '../../src/index.js';
import { rawExchange, startProxy } from '../support/proxy-kit.js';
import { startApp, until, type JsonProcess } from '../support/liveroll-harness.js';

const TIMEOUT = { timeout: 30_000 };

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  trailers: NodeJS.Dict<string>;
  body: string;
  reused: boolean;
}

/** One request through `agent` (keep-alive, one socket: every request on one connection). */
function send(
  agent: Agent,
  port: number,
  path: string,
  options: { method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      path,
      agent,
      method: options.method ?? 'GET',
      headers: options.headers,
      signal: AbortSignal.timeout(10_000),
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('latin1').on('data', (chunk: string) => (body += chunk));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          trailers: res.trailers,
          body,
          reused: req.reusedSocket,
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** A fixture app (`appArgs`) behind a proxy (`options`), both ended with the test. */
async function proxiedApp(
  t: TestContext,
  appArgs: string[] = [],
  options: Partial<ProxyOptions> = {},
): Promise<{ app: JsonProcess; proxy: ReverseProxy; port: number }> {
  const { app, port: appPort } = await startApp(t, appArgs);
  const { proxy, port } = await startProxy(t, options);
  proxy.add({ name: 'a', host: '127.0.0.1', port: appPort });
  return { app, proxy, port };
}

/** The requests both lanes are asked, with what makes each worth comparing. */
const cases: { path: string; method?: string; body?: string; headers?: Record<string, string> }[] =
  [
    { path: '/' }, // a JSON body with Content-Length
    { path: '/status/404' },
    { path: '/status/204' }, // no body
    { path: '/', method: 'HEAD' }, // no body, whatever the headers say
    {
      path: '/headers',
      headers: { 'x-forwarded-for': '6.6.6.6', connection: 'keep-alive, x-gone', 'x-gone': '1' },
    },
    { path: '/trailers' }, // chunked, with a trailer
    { path: '/big?bytes=300000' }, // chunked by the child, many reads
    { path: '/echo', method: 'POST', body: 'small body' }, // a body read whole with its head
    { path: '/echo', method: 'PUT', body: 'x'.repeat(100_000) }, // too big: http.Server's
  ];

/** What must be equal between the lanes: status, body, trailers, and headers but Date. */
function comparable(answer: Answer, port: number): unknown {
  const headers = { ...answer.headers };
  delete headers.date;
  // The child echoes the Host the client sent, which names the proxy's own port.
  const body = answer.body.replaceAll(`127.0.0.1:${port}`, 'PROXY');
  return { status: answer.status, body, trailers: answer.trailers, headers };
}

test('the fast lane answers every case as the http.Server path does', TIMEOUT, async (t) => {
  const a = await startApp(t);
  const fast = await startProxy(t);
  const plain = await startProxy(t, { fastLane: false });
  assert.ok(fast.proxy.lane !== undefined && plain.proxy.lane === undefined);
  for (const { proxy } of [fast, plain]) proxy.add({ name: 'a', host: '127.0.0.1', port: a.port });
  const agents = [fast, plain].map(() => new Agent({ keepAlive: true, maxSockets: 1 }));
  t.after(() => agents.forEach((agent) => agent.destroy()));
  for (const item of cases) {
    const [viaFast, viaPlain] = await Promise.all(
      [fast, plain].map(({ port }, i) => send(agents[i]!, port, item.path, item)),
    );
    const label = `${item.method ?? 'GET'} ${item.path}`;
    assert.deepEqual(comparable(viaFast!, fast.port), comparable(viaPlain!, plain.port), label);
    assert.equal(viaFast!.reused, item !== cases[0], `${label}: on the one kept-alive connection`);
  }
  const echoed = await send(agents[0]!, fast.port, '/headers', cases[4]);
  const sent = (JSON.parse(echoed.body) as { requestHeaders: string[] }).requestHeaders;
  assert.ok(!sent.includes('x-gone'), 'a header named by Connection stays on its hop');
  assert.equal(sent[sent.indexOf('x-forwarded-for') + 1], '127.0.0.1', 'X-Forwarded-For is ours');
});

test(
  'a connection handed to http.Server mid-stream loses and reorders nothing, and its forwarded headers stay ours',
  TIMEOUT,
  async (t) => {
    const { app, proxy, port } = await proxiedApp(t, ['--log-requests']);
    const forged = 'X-Forwarded-For: 6.6.6.6\r\n';
    const big = 'b'.repeat(70_123);
    // All in one write: two fast-lane requests, one with a body too big for the lane (the
    // hand-over point), then two that http.Server reads, the last closing the connection.
    const received = await rawExchange(
      port,
      `GET /status/201 HTTP/1.1\r\nHost: x\r\n${forged}\r\n` +
        `POST /echo HTTP/1.1\r\nHost: x\r\n${forged}Content-Length: 5\r\n\r\nfirst` +
        `POST /count/upload HTTP/1.1\r\nHost: x\r\n${forged}Content-Length: ${big.length}\r\n\r\n${big}` +
        `GET /status/202 HTTP/1.1\r\nHost: x\r\n${forged}\r\n` +
        `GET /status/203 HTTP/1.1\r\nHost: x\r\n${forged}Connection: close\r\n\r\n`,
    );
    const statuses = [...received.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
    assert.deepEqual(statuses, ['201', '200', '200', '202', '203']);
    assert.ok(received.includes('first'), 'the small body echoed');
    assert.ok(
      received.indexOf('first') < received.indexOf('70123'),
      'the big body counted whole, after',
    );
    const seen = app.matching((l) => l.event === 'request');
    assert.deepEqual(
      seen.map((l) => [l.url, l.forwardedFor]),
      ['/status/201', '/echo', '/count/upload', '/status/202', '/status/203'].map((u) => [
        u,
        '127.0.0.1',
      ]),
    );
    assert.equal(proxy.lane?.size, 0, 'the lane holds nothing once the connection closed');
  },
);

test('a head split across two reads goes to http.Server and is answered', TIMEOUT, async (t) => {
  const { proxy, port } = await proxiedApp(t);
  const client = connect(port, '127.0.0.1');
  t.after(() => client.destroy());
  await once(client, 'connect');
  client.setNoDelay(true);
  let received = '';
  client.setEncoding('latin1').on('data', (chunk: string) => (received += chunk));
  client.write('GET /status/207 HTTP/1.1\r\nHo');
  // The lane hands the connection over on the first, partial read; that it did is seen in
  // its count, which is also what lets the second half go out as a read of its own.
  await until(() => proxy.lane?.size === 0, 'the lane to hand the connection over');
  // No FIN: http.Server takes a client's FIN as the end of its exchange.
  client.write('st: x\r\nConnection: close\r\n\r\n');
  await once(client, 'close');
  assert.match(received, /^HTTP\/1\.1 207 /);
});

test(
  'a body that arrives after the hand-over follows the bytes put back, not ahead of them',
  TIMEOUT,
  async (t) => {
    const { proxy, port } = await proxiedApp(t);
    const client = connect(port, '127.0.0.1');
    t.after(() => client.destroy());
    await once(client, 'connect');
    let received = '';
    client.setEncoding('latin1').on('data', (chunk: string) => (received += chunk));
    const length = 200_000;
    client.write(
      `POST /count/upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n` +
        `Content-Length: ${length}\r\n\r\n${'a'.repeat(1_000)}`,
    );
    await until(() => proxy.lane?.size === 0, 'the lane to hand the connection over');
    // The rest comes once http.Server reads the connection: it must land after the 1,000
    // bytes the lane read and put back.
    client.write('b'.repeat(length - 1_000));
    await once(client, 'close');
    assert.match(received, /^HTTP\/1\.1 200 /);
    assert.match(received, new RegExp(`"bytes":${length}`));
  },
);

test(
  'pipelined requests answered at once (503: no child) come back in order',
  TIMEOUT,
  async (t) => {
    const { port } = await startProxy(t, { retryAfterSeconds: 3 });
    let pipelined = '';
    for (let i = 0; i < 200; i++) pipelined += `GET /${i} HTTP/1.1\r\nHost: x\r\n\r\n`;
    pipelined += 'GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
    const received = await rawExchange(port, pipelined);
    assert.equal(received.match(/HTTP\/1\.1 503 Service Unavailable\r\n/g)?.length, 201);
    assert.equal(received.match(/retry-after: 3\r\n/gi)?.length, 201);
    assert.match(received, /connection: close\r\n\r\nliveroll: no healthy child\n$/i);
  },
);

test(
  'pipelined requests past what the lane buffers (64 KiB) are all answered, in order',
  TIMEOUT,
  async (t) => {
    const { port } = await proxiedApp(t);
    const count = 2_500;
    const statuses = Array.from({ length: count }, (_, i) => 200 + (i % 100));
    let pipelined = statuses.map((s) => `GET /status/${s} HTTP/1.1\r\nHost: x\r\n\r\n`).join('');
    assert.ok(pipelined.length > 64 * 1024);
    pipelined += 'GET /status/299 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
    const received = await rawExchange(port, pipelined);
    const seen = [...received.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    assert.deepEqual(seen, [...statuses, 299]);
  },
);

test(
  'a silent new connection gets 408 after the headers timeout; an idle kept-alive one is closed',
  TIMEOUT,
  async (t) => {
    const { port } = await proxiedApp(t, [], { clientHeadersTimeoutMs: 300 });
    assert.match(await rawExchange(port, ''), /^HTTP\/1\.1 408 Request Timeout\r\n/);
    // One request, then nothing: closed by the keep-alive timeout (5 s), without a second answer.
    const started = Date.now();
    const received = await rawExchange(port, 'GET /status/200 HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(received.match(/HTTP\/1\.1 /g)?.length, 1);
    assert.match(received, /keep-alive: timeout=5\r\n/i);
    assert.ok(Date.now() - started >= 4_000, 'kept open between requests for the keep-alive time');
  },
);

test(
  "draining: a fast-lane request in flight is answered with Connection: close, and the server's drain waits for it",
  TIMEOUT,
  async (t) => {
    const { app, proxy, port } = await proxiedApp(t, ['--log-requests']);
    const answer = rawExchange(port, 'GET /slow?ms=700 HTTP/1.1\r\nHost: x\r\n\r\n');
    await app.waitFor((l) => l.event === 'request', 'the slow request to reach the child');
    proxy.startDrain();
    const drained = drainHttpServer(proxy.server, { timeoutMs: 10_000 });
    const received = await answer;
    assert.match(received, /^HTTP\/1\.1 200 /);
    assert.match(received, /\r\nconnection: close\r\n/i);
    assert.deepEqual(await drained, { forced: false });
  },
);

test('the drain deadline destroys what the fast lane still holds', TIMEOUT, async (t) => {
  const { app, proxy, port } = await proxiedApp(t, ['--log-requests']);
  const answer = rawExchange(port, 'GET /slow?ms=20000 HTTP/1.1\r\nHost: x\r\n\r\n');
  await app.waitFor((l) => l.event === 'request', 'the slow request to reach the child');
  proxy.startDrain();
  const drained = await drainHttpServer(proxy.server, { timeoutMs: 200 });
  // With the native lane the connection is not the server's: its own wait times out instead.
  const settled = await proxy.settled(200);
  assert.equal(drained.forced || !settled, true);
  proxy.destroyConnections();
  assert.equal(await answer, '', 'cut, unanswered');
  await until(
    () => (proxy.lane?.size ?? 0) + (proxy.native?.size ?? 0) === 0,
    'the lanes to let go of the connection',
  );
});
