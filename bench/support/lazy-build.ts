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

/**
 * Builds the copy; returns its root (removed with removeTempDir). With `hints`, each core module
 * (dist/src, any folder but liveroll/) starts with V8's compile-hints magic comment
 * `//# allFunctionsCalledOnLoad`, which asks V8 (from 13.x, so Node 24) to compile the whole
 * file eagerly: the one-line alternative to the build's eager-compile pass.
 */
export function buildLazyCopy(hints = false): string {
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
  if (hints) addCompileHints(path.join(root, 'dist', 'src'));
  return root;
}

function addCompileHints(dir: string): void {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory() && entry.name !== 'liveroll') addCompileHints(file);
    else if (entry.isFile() && entry.name.endsWith('.js')) {
      fs.writeFileSync(file, `//# allFunctionsCalledOnLoad\n${fs.readFileSync(file, 'utf8')}`);
    }
  }
}
