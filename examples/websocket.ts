// A WebSocket server (the ws package) with zero-downtime upgrades. After a handoff the old
// process sends every client a close frame with 1001 (going away): the client reconnects, and
// the new process, which serves the same socket, accepts it.
//   node dist/examples/websocket.js --dir /run/user/1000/ws-example --port 8080
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { WebSocketServer } from 'ws';
import { Upgrader, drainHttpServer, drainWebSocketServer, runtimeDirectory } from 'tableroll';

const { values } = parseArgs({
  options: { dir: { type: 'string' }, id: { type: 'string' }, port: { type: 'string' } },
});
const dir = values.dir ?? path.join(runtimeDirectory(), 'ws-example');
const port = Number(values.port ?? 8080);

const upgrader = await Upgrader.create(dir, values.id ?? String(process.pid));
const listener = await upgrader.fds.listen(`port-${port}`, { host: '127.0.0.1', port });

const server = http.createServer((_req, res) => res.end(`hello from ${process.pid}\n`));
const wss = new WebSocketServer({ server });
wss.on('connection', (ws) => {
  // Every message is answered with this process's pid: the client's acknowledgement.
  ws.on('message', (data: Buffer) => ws.send(`${process.pid} ${data.toString()}`));
});
await new Promise<void>((resolve) => server.listen(listener, resolve));
await upgrader.ready();
const { port: bound } = server.address() as { port: number };
console.log(JSON.stringify({ event: 'ready', pid: process.pid, port: bound }));

process.once('SIGTERM', () => upgrader.stop());
const reason = await upgrader.upgradeComplete();
const [sockets, requests] = await Promise.all([
  drainWebSocketServer(wss, { timeoutMs: 30_000 }),
  drainHttpServer(server, { timeoutMs: 30_000 }),
]);
upgrader.stop();
const forced = sockets.forced || requests.forced;
console.log(JSON.stringify({ event: 'exit', pid: process.pid, reason, forced }));
