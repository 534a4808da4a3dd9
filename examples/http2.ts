// HTTP/2 over TLS, with HTTP/1.1 for clients that do not speak it, and zero-downtime upgrades.
// The server is tracked from the start; after a handoff each HTTP/2 session gets a GOAWAY (its
// streams in flight finish, and the client opens the next ones on a new session, with the new
// process), and HTTP/1.1 connections close after their requests.
//   node dist/examples/http2.js --dir /run/user/1000/h2-example --port 8443 --cert cert.pem --key key.pem
import fs from 'node:fs';
import http2 from 'node:http2';
import type net from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Upgrader, runtimeDirectory, trackHttp2Server } from 'tableroll';

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    id: { type: 'string' },
    port: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
  },
});
const dir = values.dir ?? path.join(runtimeDirectory(), 'h2-example');
const port = Number(values.port ?? 8443);

const upgrader = await Upgrader.create(dir, values.id ?? String(process.pid));
const listener = await upgrader.fds.listen(`port-${port}`, { host: '127.0.0.1', port });

const server = http2.createSecureServer(
  { cert: fs.readFileSync(values.cert!), key: fs.readFileSync(values.key!), allowHTTP1: true },
  (req, res) => {
    const ms = Number(new URL(req.url, 'https://x').searchParams.get('ms') ?? 0);
    setTimeout(() => res.end(`hello from ${process.pid} over ${req.httpVersion}\n`), ms);
  },
);
const sessions = trackHttp2Server(server);
await new Promise<void>((resolve) => server.listen(listener, resolve));
await upgrader.ready();
const { port: bound } = server.address() as net.AddressInfo;
console.log(JSON.stringify({ event: 'ready', pid: process.pid, port: bound }));

process.once('SIGTERM', () => upgrader.stop());
const reason = await upgrader.upgradeComplete();
const { forced } = await sessions.drain({ timeoutMs: 30_000 });
upgrader.stop();
console.log(JSON.stringify({ event: 'exit', pid: process.pid, reason, forced }));
