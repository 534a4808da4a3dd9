// A line-echo server over raw TCP (node:net) with zero-downtime upgrades. After a handoff the
// old process stops accepting and ends each connection (a FIN, never a reset): every line it
// received has been answered, and the client reconnects, to the new process, to send the next.
//   node dist/examples/tcp-echo.js --dir /run/user/1000/tcp-example --port 7000
import net from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Upgrader, runtimeDirectory } from 'tableroll';

const { values } = parseArgs({
  options: { dir: { type: 'string' }, id: { type: 'string' }, port: { type: 'string' } },
});
const dir = values.dir ?? path.join(runtimeDirectory(), 'tcp-example');
const port = Number(values.port ?? 7000);

const upgrader = await Upgrader.create(dir, values.id ?? String(process.pid));
const listener = await upgrader.fds.listen(`port-${port}`, { host: '127.0.0.1', port });

const connections = new Set<net.Socket>();
const server = net.createServer((socket) => {
  connections.add(socket);
  socket.on('close', () => connections.delete(socket));
  socket.on('error', () => {});
  let pending = '';
  socket.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk;
    for (let nl = pending.indexOf('\n'); nl !== -1; nl = pending.indexOf('\n')) {
      socket.write(`${process.pid} ${pending.slice(0, nl)}\n`);
      pending = pending.slice(nl + 1);
    }
  });
});
await new Promise<void>((resolve) => server.listen(listener, resolve));
await upgrader.ready();
const { port: bound } = server.address() as net.AddressInfo;
console.log(JSON.stringify({ event: 'ready', pid: process.pid, port: bound }));

process.once('SIGTERM', () => upgrader.stop());
const reason = await upgrader.upgradeComplete();
// Lines are answered as they arrive, so ending now leaves none received and unanswered.
const closed = new Promise<void>((resolve) => server.close(() => resolve()));
for (const socket of connections) socket.end();
const deadline = setTimeout(() => connections.forEach((socket) => socket.destroy()), 30_000);
await closed;
clearTimeout(deadline);
upgrader.stop();
console.log(JSON.stringify({ event: 'exit', pid: process.pid, reason }));
