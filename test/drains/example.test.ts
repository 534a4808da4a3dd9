/**
 * The example is code that runs: two copies hand over a port, and the README shows it verbatim.
 * The demo runs end to end with fewer upgrades.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ROOT, httpGet, portsToBindLater, startCommand, tempDir } from '../support/helpers.js';

const EXAMPLE = path.join(ROOT, 'dist/examples/http-server.js');

describe('examples/http-server', () => {
  it('is the README usage snippet, verbatim', () => {
    const source = fs.readFileSync(path.join(ROOT, 'examples/http-server.ts'), 'utf8');
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    assert.ok(
      readme.includes('```ts\n' + source + '```'),
      'README.md must embed examples/http-server.ts',
    );
  });

  it('hands its port to a second copy, drains and exits; SIGTERM stops the last', async (t) => {
    const dir = tempDir(t);
    const args = ['--dir', dir, '--port', '0'];
    const first = startCommand(t, process.execPath, [EXAMPLE, ...args]);
    const { port } = (await first.line('ready')) as { port: number };
    assert.equal((await httpGet({ port, host: '127.0.0.1' })).body, `hello from ${first.pid}\n`);
    const second = startCommand(t, process.execPath, [EXAMPLE, ...args]);
    assert.equal((await second.line('ready')).port, port);
    assert.deepEqual(await first.line('exit'), {
      event: 'exit',
      pid: first.pid,
      reason: 'upgraded',
      forced: false,
    });
    assert.equal((await first.exited).code, 0);
    assert.equal((await httpGet({ port, host: '127.0.0.1' })).body, `hello from ${second.pid}\n`);
    second.proc.kill('SIGTERM');
    assert.equal((await second.line('exit')).reason, 'stopped');
    assert.equal((await second.exited).code, 0);
  });

  it('regression: a next version on another --port leaves the old port refusing, not hanging', async (t) => {
    const dir = tempDir(t);
    const [portA = 0, portB = 0] = await portsToBindLater(2);
    const first = startCommand(t, process.execPath, [EXAMPLE, '--dir', dir, '--port', `${portA}`]);
    await first.line('ready');
    const second = startCommand(t, process.execPath, [EXAMPLE, '--dir', dir, '--port', `${portB}`]);
    assert.equal((await second.line('ready')).port, portB);
    assert.equal((await first.exited).code, 0);
    assert.equal(
      (await httpGet({ port: portB, host: '127.0.0.1' })).body,
      `hello from ${second.pid}\n`,
    );
    await assert.rejects(httpGet({ port: portA, host: '127.0.0.1' }), { code: 'ECONNREFUSED' });
    second.proc.kill('SIGTERM');
    assert.equal((await second.exited).code, 0);
  });
});

describe('npm run demo', () => {
  it('upgrades under load with no failed request', async (t) => {
    const demo = startCommand(t, process.execPath, [
      path.join(ROOT, 'dist/scripts/demo.js'),
      '--upgrades',
      '2',
    ]);
    const summary = await demo.line(
      (l) => l.event === 'text' && String(l.text).startsWith('demo:'),
      60_000,
    );
    assert.match(String(summary.text), /^demo: [1-9]\d* ok, 0 failed, 2 upgrades$/);
    assert.equal((await demo.exited).code, 0);
  });

  it('runs against a framework example with --example', async (t) => {
    const demo = startCommand(t, process.execPath, [
      path.join(ROOT, 'dist/scripts/demo.js'),
      '--upgrades',
      '2',
      '--example',
      'fastify',
    ]);
    const summary = await demo.line(
      (l) => l.event === 'text' && String(l.text).startsWith('demo:'),
      60_000,
    );
    assert.match(String(summary.text), /^demo: [1-9]\d* ok, 0 failed, 2 upgrades$/);
    assert.equal((await demo.exited).code, 0);
  });
});
