/**
 * drainWebSocketServer with the real `ws` package on loopback: every client gets a 1001 close
 * frame and the drain ends when they have all closed; a client that never answers the close is
 * terminated at the deadline.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { ErrorCodes, drainWebSocketServer } from 'tableroll';

async function wsServer(t: TestContext): Promise<{ wss: WebSocketServer; port: number }> {
  const server = http.createServer();
  const wss = new WebSocketServer({ server });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    for (const client of wss.clients) client.terminate();
    wss.close();
    server.close();
  });
  return { wss, port: (server.address() as net.AddressInfo).port };
}

describe('drainWebSocketServer', () => {
  it('sends every client a 1001 close and resolves once they closed', async (t) => {
    const { wss, port } = await wsServer(t);
    const clients = await Promise.all(
      Array.from({ length: 3 }, async () => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
        t.after(() => ws.terminate());
        const closed = once(ws, 'close') as Promise<[number, Buffer]>;
        await once(ws, 'open');
        // Wrapped: an async function returning the promise itself would wait for the close.
        return { closed };
      }),
    );
    while (wss.clients.size < 3) await once(wss, 'connection');
    const result = await drainWebSocketServer(wss, { timeoutMs: 10_000 });
    assert.deepEqual(result, { forced: false });
    for (const { closed } of clients) {
      const [code, reason] = await closed;
      assert.equal(code, 1001);
      assert.equal(reason.toString(), 'server going away');
    }
    assert.deepEqual(await drainWebSocketServer(wss), { forced: false }, 'nothing left to drain');
  });

  it('terminates a client that never answers the close, at the deadline', async (t) => {
    const { wss, port } = await wsServer(t);
    // A raw client: it completes the handshake, then ignores every frame.
    const raw = net.connect(port, '127.0.0.1');
    t.after(() => raw.destroy());
    raw.on('error', () => {});
    await once(raw, 'connect');
    let received = Buffer.alloc(0);
    raw.on('data', (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
    raw.write(
      'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    await once(wss, 'connection');
    const ended = once(raw, 'close');
    const result = await drainWebSocketServer(wss, {
      timeoutMs: 300,
      code: 1012,
      reason: 'restart',
    });
    assert.deepEqual(result, { forced: true });
    await ended;
    const frame = received.subarray(received.indexOf('\r\n\r\n') + 4);
    assert.equal(frame[0], 0x88, 'a close frame arrived first');
    assert.equal(frame.readUInt16BE(2), 1012);
    assert.equal(frame.subarray(4).toString(), 'restart');
  });

  it('refuses a bad timeout with a coded error', () => {
    assert.throws(() => drainWebSocketServer({ clients: [] }, { timeoutMs: -1 }), {
      code: ErrorCodes.INVALID_ARGUMENT,
    });
  });
});
