/**
 * Docker for the tests that need it: the engine (Debian's `docker.io`, its daemon started here
 * when none answers) and images built with `docker import`, since no image registry can be
 * reached. Two kinds of image:
 *
 * - a bare Node image: this machine's `node` binary and the libraries it links, plus whatever
 *   files a test puts in (an app and its version);
 * - a systemd image: a Debian bookworm root made by `debootstrap` from Debian's archive, with
 *   this machine's `node` in it, booting `/sbin/init`.
 *
 * Images are tagged with a hash of what went into them, so a second run reuses them. Roots are
 * made under `.tmp/docker/` (ignored by git).
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureDebianPackages, hasCommand } from './node-lines.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WORK = path.join(ROOT, '.tmp', 'docker');

/** How long the daemon may take to answer after it was started. */
const DAEMON_START_MS = 60_000;

/** Runs `docker` and returns its trimmed stdout; throws with its stderr on failure. */
export function docker(args: string[], input?: string | Buffer): string {
  return execFileSync('docker', args, {
    input,
    encoding: 'utf8',
    stdio: ['pipe', 'pipe', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
  }).trim();
}

/**
 * `docker` without blocking the event loop, for calls made while the caller serves or sends
 * traffic: a blocked loop holds its keep-alive connections idle past the server's timeout.
 */
export function dockerAsync(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('docker', args, { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`docker ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout.trim());
    });
  });
}

function daemonAnswers(): boolean {
  try {
    docker(['info', '--format', '{{.ServerVersion}}']);
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes sure a Docker engine answers: installs `docker.io` when `dockerd` is missing, starts
 * the daemon in the background when none answers, and waits for it. Returns why not, or null.
 */
export async function ensureDocker(): Promise<string | null> {
  if (hasCommand('docker') && daemonAnswers()) return null;
  if (!hasCommand('dockerd')) {
    const why = ensureDebianPackages(['docker.io']);
    if (why !== null) return `no Docker engine, and ${why}`;
  }
  if (process.getuid?.() !== 0) return 'no Docker daemon answers, and starting one needs root';
  fs.mkdirSync(WORK, { recursive: true });
  const log = fs.openSync(path.join(WORK, 'dockerd.log'), 'a');
  const daemon = spawn('dockerd', [], { detached: true, stdio: ['ignore', log, log] });
  daemon.unref();
  fs.closeSync(log);
  const deadline = Date.now() + DAEMON_START_MS;
  while (Date.now() < deadline) {
    if (daemonAnswers()) return null;
    if (daemon.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const tail = fs.readFileSync(path.join(WORK, 'dockerd.log'), 'utf8').split('\n').slice(-5);
  return `dockerd did not answer within ${DAEMON_START_MS} ms: ${tail.join(' | ')}`;
}

function imageExists(tag: string): boolean {
  try {
    docker(['image', 'inspect', '--format', '{{.Id}}', tag]);
    return true;
  } catch {
    return false;
  }
}

/** The shared libraries `binary` loads, with the loader, as absolute paths (from ldd). */
function linkedLibraries(binary: string): string[] {
  const out = execFileSync('ldd', [binary], { encoding: 'utf8' });
  const found = new Set<string>();
  for (const line of out.split('\n')) {
    const match = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (match?.[1] !== undefined) found.add(match[1]);
  }
  return [...found];
}

/** Copies `file` into `root` at the same path, following symlinks to their content. */
function copyInto(root: string, file: string, at = file): void {
  const target = path.join(root, at);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.copyFileSync(fs.realpathSync(file), target);
  fs.chmodSync(target, fs.statSync(fs.realpathSync(file)).mode & 0o777);
}

/**
 * Tars `root`, plus files from the directory `extra` laid over it when given, into `docker import` as
 * `tag`, with `changes` (Dockerfile lines such as CMD). `root` itself is only read, so that
 * runs on other Node lines can share it at the same time.
 */
function importRoot(
  root: string,
  tag: string,
  changes: string[],
  extra?: { dir: string; files: string[] },
): void {
  const args = ['--numeric-owner', '-c', '-C', root, '.'];
  // Only the files: their directories are in the root already (a path twice is refused).
  if (extra !== undefined) args.push('-C', extra.dir, ...extra.files.map((f) => `./${f}`));
  const tar = execFileSync('tar', args, { maxBuffer: 2 * 1024 * 1024 * 1024 });
  docker(['import', ...changes.flatMap((c) => ['--change', c]), '-', tag], tar);
}

function hashOf(parts: (string | Buffer)[]): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part).update('\0');
  return hash.digest('hex').slice(0, 12);
}

/**
 * An image holding this machine's `node` as `/usr/local/bin/node`, its libraries, and `files`
 * (path in the image -> content), running `cmd`. Tagged `repository:<hash of all that>` unless
 * `tag` names the tag, in which case an existing image of that name is replaced.
 */
export function buildNodeImage(
  repository: string,
  files: Record<string, string>,
  cmd: string[],
  tag?: string,
): string {
  const node = process.execPath;
  const key = hashOf([
    fs.readFileSync(node),
    JSON.stringify(files),
    JSON.stringify(cmd),
    'node-image-1',
  ]);
  const name = `${repository}:${tag ?? key}`;
  if (tag === undefined && imageExists(name)) return name;
  fs.mkdirSync(WORK, { recursive: true });
  const root = fs.mkdtempSync(path.join(WORK, 'root-'));
  try {
    copyInto(root, node, '/usr/local/bin/node');
    for (const lib of linkedLibraries(node)) copyInto(root, lib);
    for (const [at, content] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(root, at)), { recursive: true });
      fs.writeFileSync(path.join(root, at), content);
    }
    fs.mkdirSync(path.join(root, 'tmp'), { mode: 0o1777 });
    importRoot(root, name, [`CMD ${JSON.stringify(cmd)}`, 'ENV PATH=/usr/local/bin:/usr/bin:/bin']);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  return name;
}

/** The id of an image (`sha256:...`). */
export function imageId(name: string): string {
  return docker(['image', 'inspect', '--format', '{{.Id}}', name]);
}

/**
 * A Debian bookworm image booting systemd, with this machine's `node` as `/usr/bin/node` and
 * curl. The root comes from `debootstrap` (installed from Debian's packages when missing) and
 * is kept under `.tmp/docker/bookworm` for the next run. Returns the image name, or throws.
 */
export function buildSystemdImage(): string {
  const node = process.execPath;
  const name = `tableroll-test-systemd:${hashOf([fs.readFileSync(node), 'systemd-image-3'])}`;
  if (imageExists(name)) return name;
  const why = ensureDebianPackages(['debootstrap']);
  if (why !== null) throw new Error(`cannot make a Debian root: ${why}`);
  const root = path.join(WORK, 'bookworm');
  if (!fs.existsSync(path.join(root, 'sbin', 'init'))) {
    // Made aside and renamed into place: a run on another Node line may be making it too.
    fs.mkdirSync(WORK, { recursive: true });
    const making = fs.mkdtempSync(path.join(WORK, 'bookworm-making-'));
    execFileSync(
      'debootstrap',
      [
        '--variant=minbase',
        '--include=systemd,systemd-sysv,dbus,procps,curl',
        'bookworm',
        making,
        'http://deb.debian.org/debian',
      ],
      { stdio: 'ignore' },
    );
    try {
      fs.renameSync(making, root);
    } catch {
      fs.rmSync(making, { recursive: true, force: true });
    }
  }
  // Left there by an older version of this script, it would be in the tar twice.
  fs.rmSync(path.join(root, 'usr', 'bin', 'node'), { force: true });
  const extra = fs.mkdtempSync(path.join(WORK, 'node-'));
  try {
    copyInto(extra, node, '/usr/bin/node');
    // Libraries this node links that Debian's minimal root lacks (Node 26 needs libatomic).
    const missing = linkedLibraries(node).filter((lib) => !fs.existsSync(path.join(root, lib)));
    for (const lib of missing) copyInto(extra, lib);
    const files = ['usr/bin/node', ...missing.map((lib) => lib.replace(/^\//, ''))];
    importRoot(root, name, ['CMD ["/sbin/init"]'], { dir: extra, files });
  } finally {
    fs.rmSync(extra, { recursive: true, force: true });
  }
  return name;
}

/** The flags under which systemd runs as PID 1 in a container on these machines. */
export const systemdRunFlags = [
  '--cap-add',
  'SYS_ADMIN',
  '--cgroupns=host',
  '-v',
  '/sys/fs/cgroup:/sys/fs/cgroup',
  '--tmpfs',
  '/run',
  '--tmpfs',
  '/run/lock',
  '-e',
  'container=docker',
];
