/**
 * The package as npm packs it: what the tarball holds, that its scripts work without the
 * repository's build files, and that `require('tableroll')` works where Node can require ES
 * modules.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ROOT, tempDir } from '../support/helpers.js';

const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
/** require() of an ES module without top-level await: Node 20.19+ and 22.12+. */
const canRequireEsm = (major === 20 && minor >= 19) || (major === 22 && minor >= 12) || major > 22;

function npm(args: string[], cwd: string): string {
  return execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('the npm package', () => {
  it(
    'can be required (CommonJS) as well as imported',
    { skip: canRequireEsm ? false : `Node ${process.version} cannot require ES modules` },
    () => {
      const require = createRequire(import.meta.url);
      const core = require('tableroll') as Record<string, unknown>;
      assert.equal(typeof core.Upgrader, 'function');
      assert.equal(typeof core.runtimeDirectory, 'function');
      const liveroll = require('tableroll/liveroll') as Record<string, unknown>;
      assert.equal(typeof liveroll.LiverollInstance, 'function');
    },
  );

  it('packs what a user needs, no source maps, and a prepare script that works without scripts/', (t) => {
    const out = tempDir(t);
    const listing = JSON.parse(
      npm(['pack', '--json', '--ignore-scripts', '--pack-destination', out], ROOT),
    ) as { filename: string; files: { path: string }[] }[];
    const files = listing[0]!.files.map((f) => f.path);
    for (const needed of [
      'LICENSE',
      'CHANGELOG.md',
      'README.md',
      'docs/api.md',
      'docs/liveroll.md',
      'binding.gyp',
      'native/addon.cc',
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/src/liveroll/cli.js',
    ]) {
      assert.ok(files.includes(needed), `${needed} is in the tarball`);
    }
    assert.deepEqual(
      files.filter((f) => f.endsWith('.map')),
      [],
      'source maps would point at sources the tarball does not ship',
    );
    assert.deepEqual(
      files.filter((f) => /^(test|bench|scripts|src)\//.test(f)),
      [],
    );
    // What `npm rebuild tableroll` runs in an installed copy (after pnpm, say): prepare must
    // not need the repository's build script.
    execFileSync('tar', ['-xzf', path.join(out, listing[0]!.filename), '-C', out]);
    const unpacked = path.join(out, 'package');
    assert.equal(fs.existsSync(path.join(unpacked, 'scripts/build.js')), false);
    npm(['run', 'prepare'], unpacked);
  });
});
