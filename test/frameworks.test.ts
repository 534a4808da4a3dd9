/**
 * The framework examples in examples/, run as a user would: a second copy takes the port over
 * from the first under load (keep-alive and one-request-per-connection clients), with no failed
 * request, and the first drains and exits. The README's snippets are these files.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { startLoad } from '../scripts/http-load.js';
import { ROOT, startCommand, tempDir, until } from './helpers.js';

const EXAMPLES = ['express', 'fastify', 'koa', 'hono'];

describe('framework examples', () => {
  for (const name of EXAMPLES) {
    const script = path.join(ROOT, 'dist/examples', `${name}.js`);
    it(`${name}: hands its port to a second copy under load with no failed request`, async (t) => {
      const dir = tempDir(t);
      const args = ['--dir', dir, '--port', '0'];
      const first = startCommand(t, process.execPath, [script, ...args]);
      const { port } = (await first.line('ready')) as { port: number };
      const load = startLoad(
        { host: '127.0.0.1', port },
        { keepAliveClients: 2, freshClients: 2, maxMs: 60_000 },
      );
      const second = startCommand(t, process.execPath, [script, ...args]);
      assert.equal((await second.line('ready')).port, port);
      const exit = await first.line('exit');
      assert.deepEqual([exit.reason, exit.forced], ['upgraded', false]);
      assert.equal((await first.exited).code, 0);
      const served = load.result.ok;
      await until(() => load.result.ok > served + 20, 'requests served by the second copy');
      const result = await load.stop();
      assert.equal(result.failed, 0, JSON.stringify(result.reasons));
      assert.ok((result.bodies[`hello from ${first.pid}`] ?? 0) > 0);
      assert.ok((result.bodies[`hello from ${second.pid}`] ?? 0) > 0);
      second.proc.kill('SIGTERM');
      assert.equal((await second.exited).code, 0);
    });

    it(`${name}: the README shows the example verbatim`, () => {
      const source = fs.readFileSync(path.join(ROOT, 'examples', `${name}.ts`), 'utf8');
      const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
      assert.ok(
        readme.includes('```ts\n' + source + '```'),
        `README.md must embed examples/${name}.ts`,
      );
    });
  }
});
