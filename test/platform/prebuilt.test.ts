/**
 * The npm package with its prebuilt addons, installed as a user would with no compiler step
 * (`npm install --ignore-scripts tableroll-<version>.tgz`): two processes hand a listening
 * socket over, on x64, and on arm64 under qemu-user with npm's arm64 Node.
 *
 * The prebuilt binaries come from scripts/prebuild.js (what `npm pack` runs); the arm64 one is
 * cross-compiled with Debian's g++-aarch64-linux-gnu, and run with qemu-user-static. This test
 * installs both packages with apt-get when they are missing (it needs root for that).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { ensureDebianPackages, nodeLine } from '../../scripts/node-lines.js';
import { Child, ROOT, httpGet, tempDir } from '../support/helpers.js';

const QEMU = '/usr/bin/qemu-aarch64-static';
const ARM64_LIBS = '/usr/aarch64-linux-gnu';
const TIMEOUT = 10 * 60_000;

/** Two processes of this script hand the listener `web` over; each prints what it did. */
const HANDOFF_SCRIPT = `
import http from 'node:http';
import { Upgrader } from 'tableroll';
const [dir, id] = process.argv.slice(2);
const upgrader = await Upgrader.create(dir, id, { upgradeTimeoutMs: 120000 });
const handle = await upgrader.fds.listen('web', { host: '127.0.0.1', port: 0 });
const server = http.createServer((_req, res) => res.end(id));
await new Promise((resolve) => server.listen(handle, resolve));
await upgrader.ready();
const { port } = server.address();
console.log(JSON.stringify({ event: 'ready', id, port, arch: process.arch }));
const reason = await upgrader.upgradeComplete();
await new Promise((resolve) => server.close(resolve));
upgrader.stop();
console.log(JSON.stringify({ event: 'exit', reason }));
`;

let project = '';
let packDir = '';
let setupProblem: string | null = null;

/** Starts the handoff script with `command` (a node, or qemu running one). */
function startHandoff(t: TestContext, command: string[], dir: string, id: string): Child {
  const [file, ...args] = command;
  const child = new Child(file!, [...args, path.join(project, 'handoff.mjs'), dir, id], {
    cwd: project,
  });
  t.after(() => child.kill());
  return child;
}

async function handOver(t: TestContext, command: string[], arch: string): Promise<void> {
  const dir = tempDir(t);
  const first = startHandoff(t, command, dir, 'first');
  const ready = await first.line('ready', 120_000);
  assert.equal(ready.arch, arch);
  const port = ready.port as number;
  assert.equal((await httpGet({ port, host: '127.0.0.1' })).body, 'first');
  const second = startHandoff(t, command, dir, 'second');
  assert.equal((await second.line('ready', 120_000)).port, port, 'the same socket');
  assert.equal((await first.line('exit', 60_000)).reason, 'upgraded');
  assert.equal((await first.exited).code, 0);
  assert.equal((await httpGet({ port, host: '127.0.0.1' })).body, 'second');
}

describe('the packed package with prebuilt addons, installed without scripts', () => {
  before(() => {
    setupProblem = ensureDebianPackages(['g++-aarch64-linux-gnu', 'qemu-user-static']);
    if (setupProblem !== null) return;
    execFileSync(process.execPath, [path.join(ROOT, 'scripts/prebuild.js'), '--require-all'], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    fs.mkdirSync(path.join(ROOT, '.tmp'), { recursive: true });
    const out = fs.mkdtempSync(path.join(ROOT, '.tmp', 'prebuilt-'));
    packDir = out;
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', out], {
        cwd: ROOT,
        encoding: 'utf8',
      }),
    ) as { filename: string; files: { path: string }[] }[];
    const files = packed[0]!.files.map((f) => f.path);
    for (const arch of ['x64', 'arm64']) {
      assert.ok(files.includes(`prebuilds/linux-${arch}/tableroll.napi.glibc.node`), arch);
    }
    project = path.join(out, 'app');
    fs.mkdirSync(project);
    fs.writeFileSync(path.join(project, 'package.json'), '{"name":"app","type":"module"}');
    fs.writeFileSync(path.join(project, 'handoff.mjs'), HANDOFF_SCRIPT);
    execFileSync(
      'npm',
      [
        'install',
        '--ignore-scripts',
        '--no-audit',
        '--no-fund',
        path.join(out, packed[0]!.filename),
      ],
      { cwd: project, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const installed = path.join(project, 'node_modules', 'tableroll');
    assert.equal(fs.existsSync(path.join(installed, 'build')), false, 'nothing was compiled');
  });

  after(() => {
    if (packDir !== '') fs.rmSync(packDir, { recursive: true, force: true });
  });

  it('hands over on x64 with the prebuilt addon', { timeout: TIMEOUT }, async (t) => {
    if (setupProblem !== null) return t.skip(setupProblem);
    await handOver(t, [process.execPath], 'x64');
  });

  it('hands over on arm64 under qemu with the prebuilt addon', { timeout: TIMEOUT }, async (t) => {
    if (setupProblem !== null) return t.skip(setupProblem);
    const major = Number(process.versions.node.split('.')[0]);
    const arm64 = nodeLine(major, 'arm64');
    t.diagnostic(`arm64 Node ${arm64.version} under ${QEMU}`);
    await handOver(t, [QEMU, '-L', ARM64_LIBS, arm64.node], 'arm64');
  });
});
