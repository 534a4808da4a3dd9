// A UDP echo service (node:dgram) with zero-downtime upgrades. Both processes read the same
// socket during the handoff; each datagram goes to one of them. The old one closes its copy
// once the new one owns the socket: datagrams still queued are read by the new process.
//   node dist/examples/udp-echo.js --dir /run/user/1000/udp-example --port 7001
import dgram from 'node:dgram';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Upgrader, runtimeDirectory } from 'tableroll';

const { values } = parseArgs({
  options: { dir: { type: 'string' }, id: { type: 'string' }, port: { type: 'string' } },
});
const dir = values.dir ?? path.join(runtimeDirectory(), 'udp-example');
const port = Number(values.port ?? 7001);

const upgrader = await Upgrader.create(dir, values.id ?? String(process.pid));
const handle = await upgrader.fds.listenUdp(`udp-${port}`, { host: '127.0.0.1', port });

const socket = dgram.createSocket('udp4');
socket.on('message', (message, from) => {
  socket.send(`${process.pid} ${message.toString()}`, from.port, from.address);
});
await new Promise<void>((resolve) => socket.bind(handle, resolve));
await upgrader.ready();
console.log(JSON.stringify({ event: 'ready', pid: process.pid, port: socket.address().port }));

process.once('SIGTERM', () => upgrader.stop());
const reason = await upgrader.upgradeComplete();
await new Promise<void>((resolve) => socket.close(resolve));
upgrader.stop();
console.log(JSON.stringify({ event: 'exit', pid: process.pid, reason }));
