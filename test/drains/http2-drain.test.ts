/**
 * trackHttp2Server(...).drain() with real HTTP/2 sessions on loopback: a client multiplexing
 * streams over one session sees its streams in flight finish, a GOAWAY, and no stream reset; a
 * stream that never finishes is cut at the deadline.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { ErrorCodes, trackHttp2Server } from 'tableroll';
import { certificate, tempDir, until } from '../support/helpers.js';

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

  it('drain with allowHTTP1: an HTTP/1.1 request in flight finishes with Connection: close, an idle connection is ended, an HTTP/2 session gets its GOAWAY', async (t) => {
    const dir = tempDir(t);
    const { cert, key } = certificate(dir);
    const ca = fs.readFileSync(cert);
    const server = http2.createSecureServer(
      { cert: ca, key: fs.readFileSync(key), allowHTTP1: true },
      (req, res) => {
        const ms = Number(new URL(req.url, 'https://x').searchParams.get('ms') ?? 0);
        setTimeout(() => res.end(`done over ${req.httpVersion}`), ms);
      },
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    const port = (server.address() as net.AddressInfo).port;
    const tracker = trackHttp2Server(server, { http1IdleMs: 200 });
    const h1 = (agent: https.Agent, p: string) =>
      new Promise<{ body: string; connection: string | undefined; socket: net.Socket }>(
        (resolve, reject) => {
          https
            .get({ host: '127.0.0.1', port, path: p, agent, ca }, (res) => {
              // Taken now: a keep-alive agent detaches it from the response at the end.
              const socket = res.socket;
              let body = '';
              res.setEncoding('utf8').on('data', (c: string) => (body += c));
              res.on('end', () => resolve({ body, connection: res.headers.connection, socket }));
            })
            .on('error', reject);
        },
      );
    // An idle keep-alive connection, and one with a request in flight when the drain starts.
    const idleAgent = new https.Agent({ keepAlive: true, ca });
    const busyAgent = new https.Agent({ keepAlive: true, ca });
    t.after(() => [idleAgent, busyAgent].forEach((a) => a.destroy()));
    const idle = await h1(idleAgent, '/');
    assert.equal(idle.body, 'done over 1.1');
    const idleClosed = once(idle.socket, 'close');
    const session = http2.connect(`https://127.0.0.1:${port}`, { ca });
    t.after(() => session.destroy());
    const goaway = once(session, 'goaway');
    const h2stream = session.request({ ':path': '/?ms=300' });
    let h2body = '';
    h2stream.setEncoding('utf8').on('data', (c: string) => (h2body += c));
    const h2done = once(h2stream, 'end');
    const busy = h1(busyAgent, '/?ms=300');
    await until(() => tracker.sessions.size === 1, 'the HTTP/2 session');
    const drained = tracker.drain({ timeoutMs: 10_000 });
    const answer = await busy;
    assert.equal(answer.body, 'done over 1.1', 'the HTTP/1.1 request in flight finished');
    assert.equal(answer.connection, 'close');
    await goaway;
    await h2done;
    assert.equal(h2body, 'done over 2.0', 'the HTTP/2 stream in flight finished');
    await idleClosed;
    assert.deepEqual(await drained, { forced: false });
  });

  it('refuses a bad timeout with a coded error', async (t) => {
    const { server } = await h2Server(t);
    assert.throws(() => trackHttp2Server(server).drain({ timeoutMs: Number.NaN }), {
      code: ErrorCodes.INVALID_ARGUMENT,
    });
  });
});
