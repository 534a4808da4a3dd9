/**
 * A ceiling for a proxy written in Node, in the liveroll benchmark: a plain TCP relay that copies
 * bytes between each client connection and a new connection to the target port, parsing
 * nothing. Prints `{"event":"listening","port":N}` once it accepts on 127.0.0.1.
 *
 *   node dist/bench/programs/tcp-relay.js TARGET_PORT
 */
import net from 'node:net';

const target = Number(process.argv[2]);
const server = net.createServer({ noDelay: true }, (client) => {
  const upstream = net.connect({ port: target, host: '127.0.0.1', noDelay: true });
  const close = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.pipe(upstream).pipe(client);
  for (const socket of [client, upstream]) {
    socket.on('error', close);
    socket.on('close', close);
  }
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as net.AddressInfo;
  process.stdout.write(JSON.stringify({ event: 'listening', port }) + '\n');
});
process.once('SIGTERM', () => process.exit(0));
