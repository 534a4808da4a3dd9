/**
 * The coordination directory as the trust boundary, attacked through the file system: planted
 * symlinks and hard links, a pid file too large to read, a socket path that is not a socket of
 * ours, a shared (sticky, world-writable) directory, and a path through another user's symlink
 * or directory. Each is refused with ERR_TABLEROLL_UNSAFE_DIRECTORY, and the file an attacker
 * aimed at is never written, truncated or chmodded.
 *
 * The cases planted by another user need root (to run `ln` and `mkdir` as nobody); the kernel's
 * fs.protected_symlinks, which would hide some of them, is 0 on many container hosts, and the
 * checks here must hold either way.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { ErrorCodes, Upgrader } from 'tableroll';
import { tempDir } from '../support/helpers.js';

const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;
const protectedSymlinks = (() => {
  try {
    return fs.readFileSync('/proc/sys/fs/protected_symlinks', 'utf8').trim();
  } catch {
    return 'unknown';
  }
})();

/** A file an attacker would like us to overwrite: its content and mode must not change. */
function victim(t: TestContext): { file: string; unchanged: () => void } {
  const file = path.join(tempDir(t), 'precious');
  fs.writeFileSync(file, 'precious data\n');
  fs.chmodSync(file, 0o644);
  const before = fs.statSync(file);
  return {
    file,
    unchanged: () => {
      const after = fs.statSync(file);
      assert.equal(fs.readFileSync(file, 'utf8'), 'precious data\n', 'the target was written');
      assert.equal(after.mode, before.mode, 'the target was chmodded');
      assert.equal(after.size, before.size);
    },
  };
}

/** A private coordination directory inside a fresh temp directory. */
function privateDir(t: TestContext, name = 'coord'): string {
  const dir = path.join(tempDir(t), name);
  fs.mkdirSync(dir, { mode: 0o700 });
  return dir;
}

async function refused(dir: string, id: string, why: RegExp): Promise<void> {
  await assert.rejects(Upgrader.create(dir, id), {
    code: ErrorCodes.UNSAFE_DIRECTORY,
    message: why,
  });
}

/** Runs a command as nobody (root only). */
function asNobody(command: string, args: string[]): void {
  execFileSync(command, args, { uid: NOBODY, gid: NOBODY, stdio: 'ignore' });
}

describe('files planted in the coordination directory', () => {
  it('regression: a pid symlink is refused and its target is never written or chmodded', async (t) => {
    const dir = privateDir(t);
    const target = victim(t);
    fs.symlinkSync(target.file, path.join(dir, 'pid'));
    await refused(dir, 'a', /pid is a symlink/);
    target.unchanged();
    assert.deepEqual(fs.readdirSync(dir), ['pid'], 'no socket of ours is left behind');
  });

  it('a pid that is a hard link to another file is refused before it is changed', async (t) => {
    const dir = privateDir(t);
    const target = victim(t);
    fs.linkSync(target.file, path.join(dir, 'pid'));
    await refused(dir, 'a', /not a regular file of ours .*2 links/);
    target.unchanged();
  });

  it('regression: a pid file of megabytes is refused without being read whole', async (t) => {
    const dir = privateDir(t);
    fs.writeFileSync(path.join(dir, 'pid'), Buffer.alloc(8 * 1024 * 1024, 'a'));
    await refused(dir, 'b', /holds more than 4096 bytes/);
  });

  it('our own socket path taken by a file or a symlink is refused, and it is left alone', async (t) => {
    const dir = privateDir(t);
    const target = victim(t);
    fs.writeFileSync(path.join(dir, 'a.sock'), 'not a socket');
    await refused(dir, 'a', /a\.sock \(our upgrade socket\) is not a socket/);
    fs.symlinkSync(target.file, path.join(dir, 'b.sock'));
    await refused(dir, 'b', /b\.sock \(our upgrade socket\) is a symlink/);
    target.unchanged();
    assert.equal(fs.readFileSync(path.join(dir, 'a.sock'), 'utf8'), 'not a socket');
  });

  it("regression: an owner socket planted as a symlink to another service's socket is never dialed", async (t) => {
    // Service B owns a listener in its own directory.
    const other = privateDir(t, 'service-b');
    const b = await Upgrader.create(other, 'b');
    t.after(() => b.stop());
    await b.fds.listen('web', { host: '127.0.0.1', port: 0 });
    await b.ready();
    let approached = false;
    b.on('upgrade-started', () => (approached = true));
    // Service A's directory names an owner whose socket is a symlink to B's.
    const dir = privateDir(t, 'service-a');
    fs.writeFileSync(path.join(dir, 'pid'), 'x', { mode: 0o600 });
    fs.symlinkSync(path.join(other, 'b.sock'), path.join(dir, 'x.sock'));
    await refused(dir, 'a', /x\.sock \(the owner's upgrade socket\) is a symlink/);
    assert.equal(approached, false, "B's socket was connected to");
    assert.equal(b.state, 'owner');
    assert.deepEqual(
      b.fds.list().map((entry) => entry.id),
      ['web'],
    );
  });
});

describe('the path to the coordination directory', () => {
  it('refuses a directory others may write to, sticky or not', async (t) => {
    for (const mode of [0o777, 0o1777, 0o1770, 0o720]) {
      const dir = privateDir(t);
      fs.chmodSync(dir, mode);
      await refused(dir, 'a', /is writable by other users/);
      assert.deepEqual(fs.readdirSync(dir), [], `mode ${mode.toString(8)}: nothing was made`);
    }
  });

  it(
    `regression: another user's pid symlink in a sticky shared directory changes nothing (fs.protected_symlinks = ${protectedSymlinks})`,
    { skip: isRoot ? false : 'needs root, to plant the symlink as another user' },
    async (t) => {
      const shared = privateDir(t, 'shared');
      fs.chmodSync(shared, 0o1777);
      fs.chmodSync(path.dirname(shared), 0o755); // nobody may reach it
      const target = victim(t);
      asNobody('ln', ['-s', target.file, path.join(shared, 'pid')]);
      await refused(shared, 'a', /is writable by other users/);
      target.unchanged();
    },
  );

  it(
    "refuses a path through another user's symlink or directory, so nobody can swap it",
    { skip: isRoot ? false : 'needs root, to make files as another user' },
    async (t) => {
      const shared = privateDir(t, 'shared');
      fs.chmodSync(shared, 0o1777);
      fs.chmodSync(path.dirname(shared), 0o755); // nobody may reach it
      // Another user points a name in the shared directory at a private directory of ours
      // (another service's coordination directory, say).
      const ours = privateDir(t, 'service-b');
      asNobody('ln', ['-s', ours, path.join(shared, 'link')]);
      await refused(path.join(shared, 'link'), 'a', /goes through .*link, a symlink of uid 65534/);
      await refused(path.join(shared, 'link', 'sub'), 'a', /a symlink of uid 65534/);
      assert.deepEqual(fs.readdirSync(ours), [], 'nothing was made in the directory it points at');
      // A directory another user made on the way.
      asNobody('mkdir', ['-m', '0755', path.join(shared, 'theirs')]);
      await refused(
        path.join(shared, 'theirs', 'coord'),
        'a',
        /inside .*theirs, which belongs to uid 65534/,
      );
      // A symlink of our own on the way is followed.
      const mine = path.join(path.dirname(ours), 'mine');
      fs.symlinkSync(ours, mine);
      const upgrader = await Upgrader.create(mine, 'a');
      upgrader.stop();
    },
  );

  it('refuses a path inside a directory others may write to that is not sticky', async (t) => {
    const open = privateDir(t, 'open');
    fs.chmodSync(open, 0o777);
    await refused(
      path.join(open, 'coord'),
      'a',
      /which other users may write to and is not sticky/,
    );
  });
});
