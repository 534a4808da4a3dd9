// HTTPS with zero-downtime upgrades: an https.Server is an http.Server over TLS, so it listens on
// the Upgrader's socket and drains with drainHttpServer like the plain example.
//   node dist/examples/https-server.js --dir /run/user/1000/https-example --port 8443 --cert cert.pem --key key.pem
import fs from 'node:fs';
import https from 'node:https';
import type net from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Upgrader, drainHttpServer, runtimeDirectory } from 'tableroll';

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    id: { type: 'string' },
    port: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
  },
});
const dir = values.dir ?? path.join(runtimeDirectory(), 'https-example');
const port = Number(values.port ?? 8443);

const upgrader = await Upgrader.create(dir, values.id ?? String(process.pid));
const listener = await upgrader.fds.listen(`port-${port}`, { host: '127.0.0.1', port });

const tls = { cert: fs.readFileSync(values.cert!), key: fs.readFileSync(values.key!) };
const server = https.createServer(tls, (_req, res) => res.end(`hello from ${process.pid}\n`));
await new Promise<void>((resolve) => server.listen(listener, resolve));
await upgrader.ready();
const { port: bound } = server.address() as net.AddressInfo;
console.log(JSON.stringify({ event: 'ready', pid: process.pid, port: bound }));

process.once('SIGTERM', () => upgrader.stop());
const reason = await upgrader.upgradeComplete();
const { forced } = await drainHttpServer(server, { timeoutMs: 30_000 });
upgrader.stop();
console.log(JSON.stringify({ event: 'exit', pid: process.pid, reason, forced }));
