/**
 * An idle process holding an Upgrader with N TCP listeners (the store's copies only, as a
 * process that has handed its servers the descriptors and closed nothing else), for the
 * memory benchmark. Prints {"event":"ready"} once it owns them, then does nothing until
 * SIGTERM.
 *
 *   node dist/bench/programs/idle-upgrader.js --dir D --listeners N
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { Upgrader } from 'tableroll';

const { values } = parseArgs({
  options: { dir: { type: 'string' }, listeners: { type: 'string', default: '1' } },
});
const upgrader = await Upgrader.create(values.dir!, String(process.pid));
for (let i = 0; i < Number(values.listeners); i++) {
  const handle = await upgrader.fds.listen(`l${i}`, { host: '127.0.0.1', port: 0 });
  fs.closeSync(handle.fd);
}
await upgrader.ready();
// Alive until SIGTERM, whatever the Upgrader's own handles do about it.
const alive = setInterval(() => {}, 60_000);
process.once('SIGTERM', () => {
  clearInterval(alive);
  upgrader.stop();
});
console.log(JSON.stringify({ event: 'ready', pid: process.pid }));
