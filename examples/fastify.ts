// Fastify 5 with zero-downtime upgrades. Fastify's own listen() binds a port itself, so the app
// is made ready first and its underlying http.Server listens on the Upgrader's socket; on the
// way out the server is drained before app.close(), which would reset idle keep-alive clients.
//   node dist/examples/fastify.js --dir /run/user/1000/fastify-example --port 8080
import path from 'node:path';
import { parseArgs } from 'node:util';
import Fastify from 'fastify';
import { Upgrader, drainHttpServer, runtimeDirectory } from 'tableroll';

const { values } = parseArgs({
  options: { dir: { type: 'string' }, id: { type: 'string' }, port: { type: 'string' } },
});
const dir = values.dir ?? path.join(runtimeDirectory(), 'fastify-example');
const port = Number(values.port ?? 8080);

const upgrader = await Upgrader.create(dir, values.id ?? String(process.pid));
const listener = await upgrader.fds.listen(`port-${port}`, { host: '127.0.0.1', port });

const app = Fastify();
app.get('/', () => `hello from ${process.pid}\n`);
await app.ready();
await new Promise<void>((resolve) => app.server.listen(listener, resolve));
await upgrader.ready();
const { port: bound } = app.server.address() as { port: number };
console.log(JSON.stringify({ event: 'ready', pid: process.pid, port: bound }));

process.once('SIGTERM', () => upgrader.stop());
const reason = await upgrader.upgradeComplete();
const { forced } = await drainHttpServer(app.server, { timeoutMs: 30_000 });
await app.close();
upgrader.stop();
console.log(JSON.stringify({ event: 'exit', pid: process.pid, reason, forced }));
