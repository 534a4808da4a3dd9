// An HTTP server on a unix socket (the usual setup behind nginx: proxy_pass http://unix:PATH)
// with zero-downtime upgrades. The socket is bound by tableroll's addon, not by Node: a server
// Node bound would unlink the path when the old process closes it, under its successor.
//   node dist/examples/unix-socket.js --dir /run/user/1000/unix-example --socket /run/user/1000/app.sock
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Upgrader, drainHttpServer, runtimeDirectory } from 'tableroll';

const { values } = parseArgs({
  options: { dir: { type: 'string' }, id: { type: 'string' }, socket: { type: 'string' } },
});
const dir = values.dir ?? path.join(runtimeDirectory(), 'unix-example');
const socketPath = values.socket ?? path.join(runtimeDirectory(), 'unix-example.sock');

const upgrader = await Upgrader.create(dir, values.id ?? String(process.pid));
// mode 0o660: nginx, in the socket's group, may connect; others may not.
const listener = await upgrader.fds.listen('http', { path: socketPath, mode: 0o660 });

const server = http.createServer((_req, res) => res.end(`hello from ${process.pid}\n`));
await new Promise<void>((resolve) => server.listen(listener, resolve));
await upgrader.ready();
console.log(JSON.stringify({ event: 'ready', pid: process.pid, socketPath }));

process.once('SIGTERM', () => upgrader.stop());
const reason = await upgrader.upgradeComplete();
const { forced } = await drainHttpServer(server, { timeoutMs: 30_000 });
upgrader.stop();
console.log(JSON.stringify({ event: 'exit', pid: process.pid, reason, forced }));
