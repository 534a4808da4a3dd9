/**
 * A second copy of the project built by plain tsc (scripts/build.js --no-eager), so the handoff
 * benchmark can set the published build against one whose functions V8 compiles on first call.
 * The copy is a package of its own in a temp dir, named tableroll, sharing this checkout's
 * node_modules and addon through symlinks.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, tempDir } from './processes.js';

/** Builds the copy; returns its root (removed with removeTempDir). */
export function buildLazyCopy(): string {
  const root = tempDir('tr-lazy-build-');
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(root, 'package.json'));
  for (const dir of ['node_modules', 'build']) {
    fs.symlinkSync(path.join(ROOT, dir), path.join(root, dir));
  }
  execFileSync(
    process.execPath,
    [path.join(ROOT, 'scripts/build.js'), '--no-eager', '--out-dir', path.join(root, 'dist')],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  return root;
}
