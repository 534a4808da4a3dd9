/**
 * The bounded HTTP load of http-load.ts as a command, for load that must run somewhere the test
 * process is not (inside a container, on its loopback). It prints JSON lines: `started`, then
 * `progress` (successes and failures so far) every 250 ms, then `result` (every count) once
 * stdin ends or SIGTERM arrives, or the bounds are reached.
 *
 *   node dist/scripts/load-cli.js --port 8080 [--host 127.0.0.1] [--max-ms 180000]
 */
import { parseArgs } from 'node:util';
import { startLoad } from './http-load.js';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    'max-ms': { type: 'string', default: '180000' },
    'max-requests': { type: 'string', default: '2000000' },
  },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write('load-cli: --port must be a port number\n');
  process.exit(2);
}

const print = (line: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(line)}\n`);
};
const load = startLoad(
  { host: values.host, port },
  {
    keepAliveClients: 2,
    freshClients: 2,
    maxMs: Number(values['max-ms']),
    maxRequests: Number(values['max-requests']),
  },
);
print({ event: 'started' });
const ticker = setInterval(
  () => print({ event: 'progress', ok: load.result.ok, failed: load.result.failed }),
  250,
);
let ending = false;
const end = async (): Promise<void> => {
  if (ending) return;
  ending = true;
  const result = await load.stop();
  clearInterval(ticker);
  print({ event: 'result', ...result, timeline: undefined });
  process.exit(0);
};
process.stdin.resume();
process.stdin.on('end', () => void end());
process.on('SIGTERM', () => void end());
void load.finished().then(end);
