/**
 * trackHttp2Server(...).drain() with real HTTP/2 sessions on loopback: a client multiplexing
 * streams over one session sees its streams in flight finish, a GOAWAY, and no stream reset; a
 * stream that never finishes is cut at the deadline.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2 from 'node:http2';
import type net from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { ErrorCodes, trackHttp2Server } from 'tableroll';
import { until } from './helpers.js';

/** An h2c server whose /slow?ms=N answers after N ms, and /hang never. */
async function h2Server(t: TestContext): Promise<{ server: http2.Http2Server; port: number }> {
  const server = http2.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/hang') return;
    const ms = Number(url.searchParams.get('ms') ?? 0);
    setTimeout(() => res.end(`done ${req.url}`), ms);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  return { server, port: (server.address() as net.AddressInfo).port };
}

function get(
  session: http2.ClientHttp2Session,
  path: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path });
    let status = 0;
    let body = '';
    stream.on('response', (headers) => (status = Number(headers[':status'])));
    stream.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
    stream.on('end', () => resolve({ status, body }));
    stream.on('error', reject);
    stream.end();
  });
}

describe('trackHttp2Server', () => {
  it('drain: streams in flight finish, the client gets a GOAWAY, nothing is reset', async (t) => {
    const { server, port } = await h2Server(t);
    const tracker = trackHttp2Server(server);
    const client = http2.connect(`http://127.0.0.1:${port}`);
    t.after(() => client.destroy());
    const goaway = once(client, 'goaway');
    const inFlight = [
      get(client, '/slow?ms=300'),
      get(client, '/slow?ms=400'),
      get(client, '/slow?ms=0'),
    ];
    await inFlight[2];
    assert.equal(tracker.sessions.size, 1, 'one session carries the streams');
    const drained = tracker.drain({ timeoutMs: 10_000 });
    await goaway;
    const answers = await Promise.all(inFlight);
    assert.deepEqual(
      answers.map((a) => a.status),
      [200, 200, 200],
    );
    assert.equal(answers[1]!.body, 'done /slow?ms=400');
    assert.deepEqual(await drained, { forced: false });
    assert.equal(tracker.sessions.size, 0);
  });

  it('drain: a stream still open at the deadline is cut (forced)', async (t) => {
    const { server, port } = await h2Server(t);
    const tracker = trackHttp2Server(server);
    const client = http2.connect(`http://127.0.0.1:${port}`);
    t.after(() => client.destroy());
    client.on('error', () => {});
    const hung = get(client, '/hang').catch((err: unknown) => err);
    await get(client, '/slow?ms=0');
    assert.deepEqual(await tracker.drain({ timeoutMs: 200 }), { forced: true });
    const outcome = await hung;
    assert.ok(
      outcome instanceof Error || (outcome as { status: number }).status === 0,
      `the hanging stream was cut, not answered: ${JSON.stringify(outcome)}`,
    );
    await until(() => tracker.sessions.size === 0, 'the destroyed session to close');
  });

  it('refuses a bad timeout with a coded error', async (t) => {
    const { server } = await h2Server(t);
    assert.throws(() => trackHttp2Server(server).drain({ timeoutMs: Number.NaN }), {
      code: ErrorCodes.INVALID_ARGUMENT,
    });
  });
});
