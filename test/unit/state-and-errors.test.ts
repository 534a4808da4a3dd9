import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ErrorCodes, TablerollError, Upgrader, defaultOptions } from 'tableroll';
import { StateMachine, canTransition, type UpgraderState } from '../../src/upgrader-state.js';
import { resolveOptions } from '../../src/upgrader-options.js';
import { ROOT, tempDir } from '../support/helpers.js';

const STATES: UpgraderState[] = ['checking-owner', 'owner', 'transferring', 'draining', 'stopped'];

describe('state machine', () => {
  it('allows exactly the moves of the protocol', () => {
    const allowed = new Set([
      'checking-owner>owner',
      'checking-owner>stopped',
      'owner>transferring',
      'owner>stopped',
      'transferring>owner',
      'transferring>draining',
      'transferring>stopped',
      'draining>stopped',
    ]);
    for (const from of STATES) {
      for (const to of STATES) {
        assert.equal(canTransition(from, to), allowed.has(`${from}>${to}`), `${from} -> ${to}`);
      }
    }
  });

  it('refuses an illegal move with a BUG error and reports legal ones', () => {
    const seen: string[] = [];
    const machine = new StateMachine((to, from) => seen.push(`${from}>${to}`));
    machine.transition('owner');
    assert.throws(
      () => machine.transition('draining'),
      (err: TablerollError) => {
        assert.equal(err.code, ErrorCodes.BUG);
        assert.match(err.message, /^BUG: illegal state transition owner -> draining/);
        return true;
      },
    );
    assert.equal(machine.state, 'owner');
    assert.deepEqual(seen, ['checking-owner>owner']);
  });
});

describe('errors and options', () => {
  it('lists every error code (adding one is deliberate)', () => {
    assert.deepEqual(Object.values(ErrorCodes).sort(), [
      'ERR_TABLEROLL_ABORTED',
      'ERR_TABLEROLL_ADDON_MISSING',
      'ERR_TABLEROLL_ALREADY_READY',
      'ERR_TABLEROLL_BUG',
      'ERR_TABLEROLL_DIRECTORY_FAILED',
      'ERR_TABLEROLL_DUPLICATE_ID',
      'ERR_TABLEROLL_HANDOFF_FAILED',
      'ERR_TABLEROLL_ID_IN_USE',
      'ERR_TABLEROLL_INVALID_ARGUMENT',
      'ERR_TABLEROLL_INVALID_ID',
      'ERR_TABLEROLL_KIND_MISMATCH',
      'ERR_TABLEROLL_LISTEN_FAILED',
      'ERR_TABLEROLL_PEER_REJECTED',
      'ERR_TABLEROLL_PROTOCOL',
      'ERR_TABLEROLL_STOPPED',
      'ERR_TABLEROLL_STORE_CLOSED',
      'ERR_TABLEROLL_STORE_LOCKED',
      'ERR_TABLEROLL_TIMEOUT',
      'ERR_TABLEROLL_UNSAFE_DIRECTORY',
    ]);
  });

  it('exports its defaults', () => {
    assert.equal(defaultOptions.upgradeTimeoutMs, 60_000);
    assert.equal(defaultOptions.lockTimeoutMs, 60_000);
    assert.throws(() => {
      (defaultOptions as { upgradeTimeoutMs: number }).upgradeTimeoutMs = 1;
    });
  });

  it('regression: an option given as undefined keeps its default timeout instead of switching it off', () => {
    const resolved = resolveOptions({ upgradeTimeoutMs: undefined, lockTimeoutMs: undefined });
    assert.equal(resolved.upgradeTimeoutMs, defaultOptions.upgradeTimeoutMs);
    assert.equal(resolved.lockTimeoutMs, defaultOptions.lockTimeoutMs);
    assert.equal(resolveOptions({ upgradeTimeoutMs: 5 }).upgradeTimeoutMs, 5);
  });

  it('rejects bad ids before touching the directory', async (t) => {
    const dir = tempDir(t);
    const bad = ['', 'a/b', 'x\0y', '..', 'z'.repeat(120)];
    for (const id of bad) {
      await assert.rejects(
        Upgrader.create(dir, id),
        { code: ErrorCodes.INVALID_ID },
        JSON.stringify(id),
      );
    }
    await assert.rejects(Upgrader.create(dir, 42 as unknown as string), {
      code: ErrorCodes.INVALID_ID,
    });
    assert.deepEqual(fs.readdirSync(dir), []);
  });

  it('rejects bad options with ERR_TABLEROLL_INVALID_ARGUMENT', async (t) => {
    const dir = tempDir(t);
    const bad = [
      { upgradeTimeoutMs: 0 },
      { upgradeTimeoutMs: -5 },
      { lockTimeoutMs: 'soon' },
      { signal: {} },
      { logger: { info: 1 } },
    ];
    for (const options of bad) {
      await assert.rejects(Upgrader.create(dir, 'a', options as never), {
        code: ErrorCodes.INVALID_ARGUMENT,
      });
    }
    await assert.rejects(Upgrader.create('', 'a'), { code: ErrorCodes.INVALID_ARGUMENT });
  });

  it('regression: failed syscalls of create() and listen() are TablerollErrors with the syscall error as cause', async (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'file');
    fs.writeFileSync(file, '');
    const cases: [string, string][] = [
      [path.join(file, 'coord'), 'ENOTDIR'],
      // Under /proc a parent exists but mkdir says ENOENT: node:fs's recursive mkdir loops.
      ['/proc/tableroll-test/coord', 'ENOENT'],
    ];
    for (const [where, code] of cases) {
      const err = await Upgrader.create(where, 'a').then(
        () => assert.fail(`create(${where}) succeeded`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof TablerollError, `${code}: ${String(err)}`);
      assert.equal(err.code, ErrorCodes.DIRECTORY_FAILED);
      assert.equal((err.cause as { code?: string }).code, code);
    }
    const upgrader = await Upgrader.create(path.join(dir, 'coord'), 'a');
    t.after(() => upgrader.stop());
    const held = net.createServer();
    await new Promise<void>((resolve) => held.listen(0, '127.0.0.1', resolve));
    t.after(() => held.close());
    const { port } = held.address() as net.AddressInfo;
    const listenCases: [() => Promise<unknown>, string][] = [
      [() => upgrader.fds.listen('busy', { host: '127.0.0.1', port }), 'EADDRINUSE'],
      [() => upgrader.fds.listen('dns', { host: 'no-such-host.invalid', port: 0 }), 'ENOTFOUND'],
      [() => upgrader.fds.listenUdp('udp', { host: '192.0.2.1', port: 0 }), 'EADDRNOTAVAIL'],
    ];
    for (const [attempt, code] of listenCases) {
      const err = await attempt().then(
        () => assert.fail(`${code}: listen succeeded`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof TablerollError, `${code}: ${String(err)}`);
      assert.equal(err.code, ErrorCodes.LISTEN_FAILED);
      assert.equal((err.cause as { code?: string }).code, code);
    }
    await assert.rejects(upgrader.fds.listen('x', null as never), {
      code: ErrorCodes.INVALID_ARGUMENT,
    });
    assert.throws(() => upgrader.fds.addFile('f', 987_654), { code: ErrorCodes.INVALID_ARGUMENT });
    assert.deepEqual(upgrader.fds.list(), [], 'nothing half-made was stored');
  });

  it('rejects an aborted signal with ERR_TABLEROLL_ABORTED and leaves nothing behind', async (t) => {
    const dir = tempDir(t);
    await assert.rejects(Upgrader.create(dir, 'a', { signal: AbortSignal.abort() }), {
      code: ErrorCodes.ABORTED,
    });
    assert.deepEqual(fs.readdirSync(dir), []);
  });

  it('throws one coded error on import when the addon is missing', (t) => {
    // A copy of the compiled library with no build/ next to it.
    const copy = tempDir(t);
    fs.cpSync(path.join(ROOT, 'dist/src'), path.join(copy, 'dist/src'), { recursive: true });
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(copy, 'node_modules'));
    fs.writeFileSync(path.join(copy, 'package.json'), '{"type":"module"}');
    const script = `import('./dist/src/index.js').then(() => console.log('loaded'), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })))`;
    const out = JSON.parse(
      execFileSync(process.execPath, ['-e', script], { cwd: copy, encoding: 'utf8' }),
    ) as {
      code: string;
      message: string;
    };
    assert.equal(out.code, ErrorCodes.ADDON_MISSING);
    assert.match(out.message, /npm rebuild tableroll/);
  });
});
