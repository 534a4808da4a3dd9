// Express 5 with zero-downtime upgrades: the app listens on the socket the Upgrader hands it
// (inherited from the previous process, or bound now), and drains like any HTTP server.
//   node dist/examples/express.js --dir /run/user/1000/express-example --port 8080
import { once } from 'node:events';
import path from 'node:path';
import { parseArgs } from 'node:util';
import express from 'express';
import { Upgrader, drainHttpServer, runtimeDirectory } from 'tableroll';

const { values } = parseArgs({
  options: { dir: { type: 'string' }, id: { type: 'string' }, port: { type: 'string' } },
});
const dir = values.dir ?? path.join(runtimeDirectory(), 'express-example');
const port = Number(values.port ?? 8080);

const upgrader = await Upgrader.create(dir, values.id ?? String(process.pid));
const listener = await upgrader.fds.listen(`port-${port}`, { host: '127.0.0.1', port });

const app = express();
app.get('/', (_req, res) => {
  res.send(`hello from ${process.pid}\n`);
});
// app.listen passes its arguments to http.Server#listen, which takes { fd }.
const server = app.listen(listener);
await once(server, 'listening');
await upgrader.ready();
const { port: bound } = server.address() as { port: number };
console.log(JSON.stringify({ event: 'ready', pid: process.pid, port: bound }));

process.once('SIGTERM', () => upgrader.stop());
const reason = await upgrader.upgradeComplete();
const { forced } = await drainHttpServer(server, { timeoutMs: 30_000 });
upgrader.stop();
console.log(JSON.stringify({ event: 'exit', pid: process.pid, reason, forced }));
