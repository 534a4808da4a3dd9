/**
 * drainHttpServer: two HTTP servers share one listening socket (as an old and a new process
 * do after a handoff); draining one under keep-alive load loses nothing.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { drainHttpServer, ErrorCodes } from 'tableroll';
import { native } from '../../src/native.js';
import { startLoad } from '../../scripts/http-load.js';
import { httpGet, until } from '../support/helpers.js';

/** Two servers answering 'old' and 'new' on duplicates of one listening socket. */
async function sharedPair(
  t: TestContext,
  handler?: http.RequestListener,
): Promise<[http.Server, http.Server, number]> {
  const fd = native.inetListen('127.0.0.1', 0, 4, 511, {});
  const port = native.socketInfo(fd)!.port;
  const make = async (name: string): Promise<http.Server> => {
    const server = http.createServer(handler ?? ((_req, res) => res.end(name)));
    await new Promise<void>((resolve) => server.listen({ fd: native.dup(fd) }, resolve));
    t.after(() => server.closeAllConnections());
    t.after(() => server.close());
    return server;
  };
  const pair: [http.Server, http.Server] = [await make('old'), await make('new')];
  native.close(fd);
  return [...pair, port];
}

describe('drainHttpServer', () => {
  it('drains under keep-alive and fresh-connection load with no failed request', async (t) => {
    const [old, , port] = await sharedPair(t);
    const load = startLoad(
      { host: '127.0.0.1', port },
      { keepAliveClients: 8, freshClients: 2, maxMs: 20_000 },
    );
    await until(() => (load.result.bodies.old ?? 0) > 200, 'the old server to serve');
    const result = await drainHttpServer(old, { timeoutMs: 10_000 });
    assert.deepEqual(result, { forced: false });
    assert.equal(old.listening, false);
    const before = load.result.bodies.new ?? 0;
    await until(
      () => (load.result.bodies.new ?? 0) > before + 200,
      'the new server to take the load',
    );
    const final = await load.stop();
    assert.equal(final.failed, 0, JSON.stringify(final.reasons));
  });

  it('finishes a request in flight, then ends its connection with Connection: close', async (t) => {
    let arrived!: () => void;
    const inFlight = new Promise<void>((resolve) => (arrived = resolve));
    let finish!: () => void;
    const held = new Promise<void>((resolve) => (finish = resolve));
    const [old, , port] = await sharedPair(t, (req, res) => {
      if (req.url === '/slow') {
        arrived();
        void held.then(() => res.end('slow'));
      } else res.end('next');
    });
    // One connection, reused: the in-flight request, then the next one on the same socket.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    t.after(() => agent.destroy());
    const slow = httpGet({ port, host: '127.0.0.1' }, '/slow', agent);
    await inFlight;
    const drained = drainHttpServer(old, { timeoutMs: 10_000 });
    finish();
    assert.deepEqual(await slow.then((r) => [r.status, r.body]), [200, 'slow']);
    const next = await httpGet({ port, host: '127.0.0.1' }, '/next', agent);
    assert.deepEqual([next.status, next.body, next.headers.connection], [200, 'next', 'close']);
    assert.deepEqual(await drained, { forced: false });
  });

  it('destroys what is left at the deadline', async (t) => {
    const [old, , port] = await sharedPair(t, () => {
      // Never answers.
    });
    const socket = net.connect(port, '127.0.0.1');
    t.after(() => socket.destroy());
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(
      async () => (await new Promise<number>((r) => old.getConnections((_e, n) => r(n)))) > 0,
      'the request to arrive',
    );
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    assert.deepEqual(await drainHttpServer(old, { timeoutMs: 50 }), { forced: true });
    await closed;
  });

  it('forces at once when its signal fires, and checks its options', async (t) => {
    const [old] = await sharedPair(t);
    assert.throws(() => drainHttpServer(old, { timeoutMs: -1 }), {
      code: ErrorCodes.INVALID_ARGUMENT,
    });
    assert.deepEqual(await drainHttpServer(old, { signal: AbortSignal.abort() }), { forced: true });
  });
});
