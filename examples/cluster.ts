// Every core, the tableroll way: a primary holds the Upgrader and gives the listening socket to
// N worker processes, which all accept on it. The next group's primary inherits the socket,
// starts its own workers, and only calls ready() once they all serve; the old primary then
// tells its workers to drain, and exits when they have. (node:cluster is not used: it routes
// a worker's listen() through the primary, which a socket passed as a descriptor cannot take.)
//   node dist/examples/cluster.js --dir /run/user/1000/cluster-example --port 8080 --workers 4
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Upgrader, drainHttpServer, runtimeDirectory } from 'tableroll';

/** The listening socket's number in each worker: after stdin, stdout, stderr and the IPC channel. */
const WORKER_FD = 4;

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    id: { type: 'string' },
    port: { type: 'string' },
    workers: { type: 'string' },
    worker: { type: 'boolean', default: false },
  },
});

if (values.worker) {
  const server = http.createServer((_req, res) => res.end(`hello from ${process.pid}\n`));
  server.listen({ fd: WORKER_FD }, () => process.send!(server.address()));
  process.on('message', (message) => {
    if (message !== 'drain') return;
    void drainHttpServer(server, { timeoutMs: 30_000 }).then(() => process.exit(0));
  });
} else {
  const dir = values.dir ?? path.join(runtimeDirectory(), 'cluster-example');
  const port = Number(values.port ?? 8080);
  const upgrader = await Upgrader.create(dir, values.id ?? String(process.pid));
  const listener = await upgrader.fds.listen(`port-${port}`, { host: '127.0.0.1', port });

  // Each worker inherits the socket as a descriptor: the primary itself never accepts.
  const workers: ChildProcess[] = Array.from({ length: Number(values.workers ?? 4) }, () =>
    fork(process.argv[1]!, ['--worker'], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc', listener.fd],
    }),
  );
  // Each worker reports its address once it serves.
  const reports = await Promise.all(workers.map((worker) => once(worker, 'message')));
  await upgrader.ready();
  const pids = workers.map((worker) => worker.pid);
  const { port: bound } = reports[0]![0] as { port: number };
  console.log(JSON.stringify({ event: 'ready', pid: process.pid, port: bound, workers: pids }));

  process.once('SIGTERM', () => upgrader.stop());
  const reason = await upgrader.upgradeComplete();
  const exited = workers.map((worker) => once(worker, 'exit'));
  for (const worker of workers) worker.send('drain');
  await Promise.all(exited);
  upgrader.stop();
  console.log(JSON.stringify({ event: 'exit', pid: process.pid, reason }));
}
