// Hono on Node with zero-downtime upgrades: @hono/node-server's getRequestListener turns the
// app into a request listener for an http.Server of our own on the Upgrader's socket.
//   node dist/examples/hono.js --dir /run/user/1000/hono-example --port 8080
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import { Upgrader, drainHttpServer, runtimeDirectory } from 'tableroll';

const { values } = parseArgs({
  options: { dir: { type: 'string' }, id: { type: 'string' }, port: { type: 'string' } },
});
const dir = values.dir ?? path.join(runtimeDirectory(), 'hono-example');
const port = Number(values.port ?? 8080);

const upgrader = await Upgrader.create(dir, values.id ?? String(process.pid));
const listener = await upgrader.fds.listen(`port-${port}`, { host: '127.0.0.1', port });

const app = new Hono();
app.get('/', (c) => c.text(`hello from ${process.pid}\n`));
const handle = getRequestListener(app.fetch);
const server = http.createServer((req, res) => void handle(req, res));
await new Promise<void>((resolve) => server.listen(listener, resolve));
await upgrader.ready();
const { port: bound } = server.address() as { port: number };
console.log(JSON.stringify({ event: 'ready', pid: process.pid, port: bound }));

process.once('SIGTERM', () => upgrader.stop());
const reason = await upgrader.upgradeComplete();
const { forced } = await drainHttpServer(server, { timeoutMs: 30_000 });
upgrader.stop();
console.log(JSON.stringify({ event: 'exit', pid: process.pid, reason, forced }));
