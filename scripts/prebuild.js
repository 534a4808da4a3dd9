// @ts-check (type-checked by `npm run check:scripts`)
// Builds the N-API addon for the architectures the npm package ships prebuilt, into
// prebuilds/<platform>-<arch>/tableroll.napi.glibc.node, where node-gyp-build finds it at install
// and at run time. One N-API binary serves every Node line. Run by `npm pack` (prepack).
//
//   linux-x64    with the machine's g++
//   linux-arm64  cross-compiled with Debian's g++-aarch64-linux-gnu, when it is installed
//
// The headers are the machine's Node headers ($npm_config_nodedir, else the running Node's
// prefix): N-API's are the same for every line and architecture. Each build runs in a
// directory of its own, so the checkout's build/ is left alone.
//
// Usage: node scripts/prebuild.js [--require-all]   (--require-all fails when a target cannot
// be built instead of skipping it)
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const requireAll = process.argv.includes('--require-all');

function nodedir() {
  const candidates = [process.env.npm_config_nodedir, path.resolve(process.execPath, '../..')];
  const found = candidates.find(
    (dir) => dir && fs.existsSync(path.join(dir, 'include/node/node_api.h')),
  );
  if (!found) throw new Error('no Node headers found: set npm_config_nodedir');
  return found;
}

function nodeGyp() {
  // From npm's own files, not `npm root -g`: that answers for whichever node runs npm, and
  // with another Node line first on PATH it names a directory without npm.
  const npm = execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim();
  const cli = fs.realpathSync(npm);
  return path.resolve(path.dirname(cli), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
}

/** @param {string} name */
function hasCommand(name) {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const targets = [
  { arch: 'x64', compiler: null },
  { arch: 'arm64', compiler: 'aarch64-linux-gnu' },
];

const headers = nodedir();
const gyp = nodeGyp();
let missing = 0;
for (const { arch, compiler } of targets) {
  if (compiler && !hasCommand(`${compiler}-g++`)) {
    console.error(`prebuild: skipping linux-${arch}: ${compiler}-g++ is not installed`);
    missing++;
    continue;
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `tableroll-prebuild-${arch}-`));
  try {
    for (const entry of ['binding.gyp', 'native']) {
      fs.cpSync(path.join(root, entry), path.join(work, entry), { recursive: true });
    }
    fs.mkdirSync(path.join(work, 'node_modules'));
    fs.symlinkSync(
      path.join(root, 'node_modules', 'node-addon-api'),
      path.join(work, 'node_modules', 'node-addon-api'),
    );
    const env = { ...process.env };
    if (compiler) {
      Object.assign(env, {
        CC: `${compiler}-gcc`,
        CXX: `${compiler}-g++`,
        LINK: `${compiler}-g++`,
        AR: `${compiler}-ar`,
      });
    }
    execFileSync(
      process.execPath,
      [gyp, 'rebuild', '--silent', `--arch=${arch}`, `--nodedir=${headers}`],
      {
        cwd: work,
        env,
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    );
    const dest = path.join(root, 'prebuilds', `linux-${arch}`);
    fs.mkdirSync(dest, { recursive: true });
    fs.copyFileSync(
      path.join(work, 'build', 'Release', 'tableroll.node'),
      path.join(dest, 'tableroll.napi.glibc.node'),
    );
    console.error(`prebuild: linux-${arch} done`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
if (missing > 0 && requireAll) process.exit(1);
