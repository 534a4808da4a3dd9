/**
 * `npm run bench` runs end to end: a --quick --json run prints one JSON document with every
 * section and a number in every figure. Performance targets are not asserted: machines are
 * noisy, and the benchmark's job is to report them.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { ROOT, nextEvent, startCommand, tempDir } from '../support/helpers.js';
import { buildCRelay } from '../../bench/support/c-relay.js';
import { ensureDebianPackages } from '../../scripts/node-lines.js';

const RUN = path.join(ROOT, 'dist/bench/run.js');

type Json = Record<string, unknown>;

/** Asserts that `value[key]` is a finite number, naming the figure when it is not. */
function number(value: unknown, key: string, where: string): number {
  const figure = (value as Json | undefined)?.[key];
  assert.equal(typeof figure, 'number', `${where}.${key} is a number (got ${String(figure)})`);
  assert.ok(Number.isFinite(figure), `${where}.${key} is finite`);
  return figure as number;
}

function summary(value: unknown, where: string): void {
  for (const key of ['n', 'median', 'p95', 'min', 'max']) number(value, key, where);
}

function checkHandoff(section: Json): void {
  const sizes = section.sizes as Json[];
  assert.deepEqual(
    sizes.map((s) => s.listeners),
    [1, 100, 500],
  );
  for (const size of sizes) {
    const where = `handoff[${String(size.listeners)}]`;
    number(size, 'targetMs', where);
    // Go is measured only with --go-peer; Node 22+ adds a compile-cache row.
    assert.equal(size.go, undefined);
    if (Number(process.versions.node.split('.')[0]) >= 22) {
      summary((size.compileCache as Json).handoff, `${where}.compileCache.handoff`);
    }
    for (const run of [
      'handoff',
      'steps',
      'prewarmed',
      'eagerCompile',
      'lazyBuild',
      'compileHints',
    ] as const) {
      const result = size[run] as Json;
      for (const part of ['handoff', 'create', 'listen', 'ready']) {
        summary(result[part], `${where}.${run}.${part}`);
      }
    }
    const phases = (size.steps as Json).phases as Json;
    assert.ok(Object.keys(phases).length > 0, `${where} has phases`);
    for (const [name, phase] of Object.entries(phases)) summary(phase, `${where}.phases.${name}`);
    summary((size.floor as Json).cold, `${where}.floor.cold`);
    summary((size.floor as Json).warm, `${where}.floor.warm`);
  }
  summary((sizes[2]!.pregrown as Json).handoff, 'handoff[500].pregrown');
  for (const build of ['published', 'plainTsc']) {
    const result = (section.importTime as Json)[build] as Json;
    summary(result.importMs, `importTime.${build}.importMs`);
    summary(result.heapMiB, `importTime.${build}.heapMiB`);
  }
  summary((sizes[2]!.floor as Json).coldPregrown, 'handoff[500].floor.coldPregrown');
}

function checkCold(section: Json): void {
  summary(section.clockUs, 'cold.clockUs');
  const rows = section.rows as Json[];
  assert.deepEqual(
    rows.map((row) => row.calls),
    ['files', 'timer'],
  );
  for (const row of rows) {
    const where = `cold.${String(row.calls)}`;
    summary(row.addon, `${where}.addon`);
    summary(row.node, `${where}.node`);
    number(row.spread, 'addon', `${where}.spread`);
    number(row.spread, 'node', `${where}.spread`);
  }
}

function checkUpgrades(section: Json): void {
  const variants = section.variants as Json[];
  assert.deepEqual(
    variants.map((v) => v.variant),
    ['drain', 'naive'],
  );
  for (const variant of variants) {
    const where = `upgrades.${String(variant.variant)}`;
    number(variant, 'upgrades', where);
    number(variant, 'uncleanExits', where);
    summary(variant.handoffMs, `${where}.handoffMs`);
    for (const clients of ['keepAlive', 'fresh', 'all']) {
      const outcome = variant[clients] as Json;
      const at = `${where}.${clients}`;
      assert.ok(number(outcome, 'served', at) > 0, `${at} served requests`);
      for (const key of ['failed', 'econnreset', 'socketHangUp', 'medianSlot']) {
        number(outcome, key, at);
      }
      number(outcome.dip, 'median', `${at}.dip`);
      number(outcome.dip, 'worst', `${at}.dip`);
    }
  }
}

function checkLiveroll(section: Json): void {
  const proxy = section.proxy as Json[];
  assert.ok(
    proxy.some((p) => p.path === '/'),
    'a hello-world workload',
  );
  assert.ok(
    proxy.some((p) => String(p.path).startsWith('/work')),
    'a workload doing work',
  );
  for (const row of proxy) {
    const where = `liveroll.proxy[${String(row.path)}]`;
    for (const key of [
      'directRps',
      'proxiedRps',
      'ratio',
      'directP99Ms',
      'proxiedP99Ms',
      'errors',
    ]) {
      number(row, key, where);
    }
  }
  const hello = proxy.find((p) => p.path === '/')!;
  assert.ok(number(hello, 'relayedRps', 'liveroll.proxy[/]') > 0, 'the relay served requests');
  number(hello, 'relayRatio', 'liveroll.proxy[/]');
  number(section, 'updates', 'liveroll');
  number(section, 'takeoverMs', 'liveroll');
  summary(section.updateMs, 'liveroll.updateMs');
  for (const phase of ['rolling', 'takeover']) {
    assert.ok(number(section[phase], 'served', `liveroll.${phase}`) > 0);
    number(section[phase], 'failed', `liveroll.${phase}`);
  }
}

function checkMemory(section: Json): void {
  for (const key of [
    'bareNodeMiB',
    'upgrader1MiB',
    'upgrader500MiB',
    'liverollMiB',
    'liverollTreeMiB',
    'liverollTwoChildrenTreeMiB',
  ]) {
    assert.ok(number(section, key, 'memory') > 0, `memory.${key} is positive`);
  }
}

function checkSoak(section: Json): void {
  for (const [name, samples] of [
    ['liveroll', (section.liveroll as Json).samples],
    ['owner', (section.owner as Json).samples],
  ] as const) {
    const rows = samples as Json[];
    assert.ok(rows.length >= 2, `${name} was sampled at least twice`);
    for (const [i, row] of rows.entries()) {
      for (const key of ['after', 'rssMiB', 'heapUsedMiB', 'heapTotalMiB', 'fds', 'handles']) {
        assert.ok(number(row, key, `soak.${name}[${i}]`) > 0);
      }
    }
  }
  assert.ok(number(section.liveroll, 'served', 'soak.liveroll') > 0);
  number(section.liveroll, 'failed', 'soak.liveroll');
}

/** The fronts section: wrk, nginx and liveroll in both modes, and the bulk transfers. */
function checkFronts(section: Json): void {
  assert.equal(section.skipped, undefined, `the fronts section ran: ${String(section.skipped)}`);
  // The machine builds addons with g++, so it has cc for the C relay too.
  assert.equal(
    section.cRelaySkipped,
    undefined,
    `the C relay ran: ${String(section.cRelaySkipped)}`,
  );
  // 2 cores and taskset (util-linux, in every Debian): each front measured on a CPU of its own.
  assert.match(String(section.placement), /^the app on CPU \d+, the front measured on CPU \d+/);
  const fronts = section.fronts as Json[];
  assert.deepEqual(
    fronts.map((f) => f.front),
    [
      'direct',
      'nginx',
      'liveroll proxy',
      'liveroll proxy, JavaScript lane',
      'liveroll proxy, http.Server only',
      'plain Node pipe',
      'plain C relay',
      'liveroll direct',
    ],
  );
  for (const front of fronts) {
    assert.ok(number(front, 'rps', `fronts.${String(front.front)}`) > 0);
    assert.equal(front.errors, 0, `${String(front.front)}: no failed request`);
  }
  const bulk = section.bulk as Json[];
  assert.deepEqual(
    bulk.map((b) => b.route),
    [
      'direct',
      'nginx',
      'plain Node pipe',
      'plain C relay',
      'liveroll proxy',
      'liveroll proxy, JavaScript lane',
      "liveroll proxy, glibc's default trimming",
    ],
  );
  for (const route of bulk) {
    const where = `bulk.${String(route.route)}`;
    assert.ok(number(route, 'downloadMBps', where) > 0);
    assert.ok(number(route, 'uploadMBps', where) > 0);
    // Faults are counted for the relays we start (both pipes and both liverolls), not for the
    // app or nginx's worker: NaN, which JSON writes as null.
    const ours = route.route !== 'direct' && route.route !== 'nginx';
    for (const key of ['downloadFaultsPerMiB', 'uploadFaultsPerMiB']) {
      if (ours) assert.ok(number(route, key, where) >= 0);
      else assert.equal(route[key], null, `${where}.${key}`);
    }
  }
}

test(
  'npm run bench -- --quick --json reports every section with numbers',
  { timeout: 300_000 },
  async () => {
    // The fronts section's tools, from Debian, as a user following docs/benchmarks.md has them.
    const why = ensureDebianPackages(['wrk', 'nginx', 'curl']);
    assert.equal(why, null, `wrk, nginx and curl are needed: ${String(why)}`);
    const { stdout } = await promisify(execFile)(process.execPath, [RUN, '--quick', '--json'], {
      cwd: ROOT,
      timeout: 280_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    const report = JSON.parse(stdout) as Json;
    assert.equal(report.quick, true);
    assert.match(String(report.note), /this run/);
    const machine = report.machine as Json;
    assert.equal(typeof machine.cpu, 'string');
    number(machine, 'cores', 'machine');
    number(report, 'durationS', 'report');
    checkHandoff(report.handoff as Json);
    checkCold(report.cold as Json);
    checkUpgrades(report.upgrades as Json);
    checkLiveroll(report.liveroll as Json);
    checkFronts(report.fronts as Json);
    checkMemory(report.memory as Json);
    checkSoak(report.soak as Json);
  },
);

test('the C relay of the fronts section carries every byte and the end of the stream to a reader that stalls', async (t) => {
  const built = buildCRelay(tempDir(t));
  assert.ok('binary' in built, `the C relay was built: ${JSON.stringify(built)}`);
  const upload = 300_000;
  let sent = 0;
  /** Resolves once the relay stopped taking bytes from the app: its buffer waits for the client. */
  let stalled!: () => void;
  const blocked = new Promise<void>((resolve) => (stalled = resolve));
  const app = net.createServer((socket) => {
    let received = 0;
    socket.on('data', (data) => {
      received += data.length;
      if (received !== upload) return;
      // The client is paused: write until the kernel's buffers and the relay's are full.
      const chunk = Buffer.alloc(4096, 7);
      while (sent < 256 * 2 ** 20 && socket.write(chunk)) sent += chunk.length;
      sent += chunk.length;
      // What comes now reaches the relay while it waits: a short tail, then the end.
      socket.end(Buffer.alloc(1_234, 7));
      sent += 1_234;
      stalled();
    });
  });
  app.listen(0, '127.0.0.1');
  await nextEvent(app, 'listening');
  t.after(() => app.close());
  const relay = startCommand(t, built.binary, [String((app.address() as net.AddressInfo).port)]);
  const { port } = (await relay.line('listening')) as { port: number };
  const client = net.connect(port, '127.0.0.1');
  t.after(() => client.destroy());
  client.pause();
  let got = 0;
  client.on('data', (data: Buffer) => (got += data.length));
  client.write(Buffer.alloc(upload, 1));
  await blocked;
  assert.ok(sent < 256 * 2 ** 20, 'the app stopped being able to write');
  client.resume();
  await nextEvent(client, 'end');
  assert.equal(got, sent);
});

test('the C relay passes on an answer and the end that came right behind it', async (t) => {
  const built = buildCRelay(tempDir(t));
  assert.ok('binary' in built, `the C relay was built: ${JSON.stringify(built)}`);
  // The answer and the end usually reach the relay before it wakes: one edge for both.
  const answer = Buffer.alloc(1_234, 7);
  const app = net.createServer((socket) => socket.end(answer));
  app.listen(0, '127.0.0.1');
  await nextEvent(app, 'listening');
  t.after(() => app.close());
  const relay = startCommand(t, built.binary, [String((app.address() as net.AddressInfo).port)]);
  const { port } = (await relay.line('listening')) as { port: number };
  for (let i = 0; i < 200; i++) {
    const client = net.connect(port, '127.0.0.1');
    t.after(() => client.destroy());
    let got = 0;
    client.on('data', (data: Buffer) => (got += data.length));
    await nextEvent(client, 'end', 5_000);
    assert.equal(got, answer.length, `connection ${i}`);
  }
});

test('the bench answers --help, and a bad flag with its usage and exit status 2', async () => {
  const run = promisify(execFile);
  const help = await run(process.execPath, [RUN, '--help'], { cwd: ROOT });
  assert.match(help.stdout, /^usage: node dist\/bench\/run\.js/);
  assert.match(help.stdout, /--only .*soak/);
  await assert.rejects(run(process.execPath, [RUN, '--bogus'], { cwd: ROOT }), (err: unknown) => {
    const failed = err as { code?: number; stderr?: string };
    assert.equal(failed.code, 2);
    assert.match(failed.stderr ?? '', /Unknown option '--bogus'[\s\S]*usage:/);
    return true;
  });
  // The fronts bench and the instruction count alone, as docs/benchmarks.md runs them.
  const badFlags: Record<string, string[][]> = {
    'http-front': [['--bogus']],
    'proxy-instructions': [['--bogus'], ['--runs', 'x']],
  };
  for (const [name, flags] of Object.entries(badFlags)) {
    const script = path.join(ROOT, `dist/bench/measure/${name}.js`);
    const usage = await run(process.execPath, [script, '--help'], { cwd: ROOT });
    assert.match(usage.stdout, new RegExp(`^usage: node dist/bench/measure/${name}\\.js`));
    for (const bad of flags) {
      await assert.rejects(
        run(process.execPath, [script, ...bad], { cwd: ROOT }),
        (err: unknown) => {
          const failed = err as { code?: number; stderr?: string };
          assert.equal(failed.code, 2, `${name} ${bad.join(' ')}`);
          assert.match(failed.stderr ?? '', /usage:/);
          return true;
        },
      );
    }
  }
});
