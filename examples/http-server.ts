// An HTTP server that upgrades with zero downtime: start a second copy with the same --dir and
// it takes over the port; this one then finishes its requests and exits.
//   node dist/examples/http-server.js --dir /tmp/tableroll-example --port 8080
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Upgrader, drainHttpServer, runtimeDirectory } from 'tableroll';

const { values } = parseArgs({
  options: { dir: { type: 'string' }, id: { type: 'string' }, port: { type: 'string' } },
});
// Not a fixed name in /tmp, where another user could plant files: a directory only we can write.
const dir = values.dir ?? path.join(runtimeDirectory(), 'tableroll-example');
const id = values.id ?? String(process.pid);
const port = Number(values.port ?? 8080);

const started = performance.now();
const upgrader = await Upgrader.create(dir, id);
// Inherited from the previous process if it had this id, else bound now.
const listener = await upgrader.fds.listen(`port-${port}`, { host: '127.0.0.1', port });

const server = http.createServer((_req, res) => {
  res.end(`hello from ${process.pid}\n`);
});
await new Promise<void>((resolve) => server.listen(listener, resolve));
await upgrader.ready();
const { port: bound } = server.address() as { port: number };
const handoffMs = performance.now() - started;
console.log(JSON.stringify({ event: 'ready', pid: process.pid, port: bound, handoffMs }));

// SIGTERM or SIGINT stop the upgrader, which also ends the wait below.
process.once('SIGTERM', () => upgrader.stop());
process.once('SIGINT', () => upgrader.stop());
const reason = await upgrader.upgradeComplete();
const { forced } = await drainHttpServer(server, { timeoutMs: 30_000 });
upgrader.stop();
console.log(JSON.stringify({ event: 'exit', pid: process.pid, reason, forced }));
