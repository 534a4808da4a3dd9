/**
 * The example server (examples/http-server.ts) with a naive shutdown, for the upgrades
 * benchmark to compare against: once upgraded it calls Node's own `server.close()` and exits
 * when that has finished, or after --exit-after-ms (default 1000) at the latest, instead of
 * draining with drainHttpServer. `server.close()` closes idle keep-alive connections at once
 * (a client just sending its next request on one sees a reset or a hang-up) and leaves busy
 * ones open with keep-alive until the process exits under them.
 *
 *   node dist/bench/programs/naive-server.js --dir D --id ID --port 0 [--exit-after-ms 1000]
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Upgrader } from 'tableroll';

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    id: { type: 'string' },
    port: { type: 'string', default: '0' },
    'exit-after-ms': { type: 'string', default: '1000' },
  },
});
const port = Number(values.port);

const started = performance.now();
const upgrader = await Upgrader.create(values.dir!, values.id ?? String(process.pid));
const listener = await upgrader.fds.listen(`port-${port}`, { host: '127.0.0.1', port });
const server = http.createServer((_req, res) => {
  res.end(`hello from ${process.pid}\n`);
});
await new Promise<void>((resolve) => server.listen(listener, resolve));
await upgrader.ready();
const { port: bound } = server.address() as { port: number };
const handoffMs = performance.now() - started;
console.log(JSON.stringify({ event: 'ready', pid: process.pid, port: bound, handoffMs }));

process.once('SIGTERM', () => upgrader.stop());
const reason = await upgrader.upgradeComplete();
const exit = (closed: boolean): void => {
  upgrader.stop();
  console.log(JSON.stringify({ event: 'exit', pid: process.pid, reason, closed }));
  process.exit(0);
};
server.close(() => exit(true));
setTimeout(() => exit(false), Number(values['exit-after-ms'])).unref();
