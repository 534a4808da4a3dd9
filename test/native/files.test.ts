/**
 * The native addon against the real kernel, with real sockets, descriptors and processes:
 * files as the coordination directory uses them: open, stat, chmod, mkdir, pread, pwrite.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { native, type FileStatus } from '../../src/native.js';
import {
  TIMEOUT,
  Resources,
  fdFlags,
  hasCloexec,
  openFdCount,
  throwsWithoutLeak,
  fdTarget,
  errnoOf,
} from '../support/native-kit.js';
import { currentUmask, permissions } from '../support/native-kit.js';

/** The permission bits of `target`, setuid, setgid and sticky included. */

/** The fields of fs.Stats that native.stat and native.fstat return. */
function statusOf({ mode, uid, size, ino, dev, nlink, mtimeMs }: fs.Stats): FileStatus {
  return { mode, uid, size, ino, dev, nlink, mtimeMs };
}

describe('files', () => {
  test(
    'mkdir: true when created, false when the name exists, errors with the path',
    TIMEOUT,
    (t) => {
      const res = new Resources(t);
      const before = openFdCount();
      const dir = res.path('dir');
      assert.equal(native.mkdir(dir, 0o777), true);
      assert.ok(fs.statSync(dir).isDirectory());
      assert.equal(permissions(dir), 0o777 & ~currentUmask());
      const owned = res.path('owned');
      assert.equal(native.mkdir(owned, 0o700), true);
      assert.equal(permissions(owned), 0o700);

      // Something by that name already, a directory or a file: left as it is.
      fs.chmodSync(dir, 0o711);
      assert.equal(native.mkdir(dir, 0o700), false);
      assert.equal(permissions(dir), 0o711);
      const file = res.path('file');
      fs.writeFileSync(file, 'contents');
      assert.equal(native.mkdir(file, 0o700), false);
      assert.equal(fs.readFileSync(file, 'utf8'), 'contents');

      const orphan = res.path('missing/child');
      assert.throws(() => native.mkdir(orphan, 0o700), {
        name: 'Error',
        message: `mkdir ENOENT ${orphan}`,
        code: 'ENOENT',
        errno: errnoOf('ENOENT'),
        syscall: 'mkdir',
        path: orphan,
      });
      assert.equal(fs.existsSync(res.path('missing')), false);
      const underFile = path.join(file, 'child');
      assert.throws(() => native.mkdir(underFile, 0o700), {
        message: `mkdir ENOTDIR ${underFile}`,
        code: 'ENOTDIR',
        errno: errnoOf('ENOTDIR'),
        syscall: 'mkdir',
        path: underFile,
      });
      assert.equal(openFdCount(), before);
    },
  );

  test('stat and fstat give the fields of fs.statSync and fs.fstatSync', TIMEOUT, (t) => {
    const res = new Resources(t);
    const file = res.path('file');
    fs.writeFileSync(file, 'twelve bytes');
    fs.chmodSync(file, 0o640);
    const link = res.path('link');
    fs.symlinkSync(file, link);
    const fd = res.fd(fs.openSync(file, 'r'));
    const before = openFdCount();

    const expected = statusOf(fs.statSync(file));
    assert.equal(expected.size, 12);
    assert.deepEqual(native.stat(file), expected);
    assert.deepEqual(native.stat(link), expected, 'stat follows a symbolic link');
    assert.deepEqual(native.lstat(link), statusOf(fs.lstatSync(link)), 'lstat does not');
    assert.equal(native.lstat(link).mode & 0o170000, 0o120000); // S_IFLNK
    assert.deepEqual(native.lstat(file), expected);
    assert.deepEqual(native.fstat(fd), statusOf(fs.fstatSync(fd)));
    assert.deepEqual(native.fstat(fd), expected);
    assert.equal(native.stat(file).mode, 0o100640); // S_IFREG | 0640
    assert.deepEqual(native.stat(res.dir), statusOf(fs.statSync(res.dir)));
    assert.equal(native.stat(res.dir).mode & 0o170000, 0o040000); // S_IFDIR
    const { client } = res.pair();
    assert.deepEqual(native.fstat(client), statusOf(fs.fstatSync(client)));

    // Sizes follow the file.
    fs.appendFileSync(file, '!');
    assert.equal(native.fstat(fd).size, 13);
    assert.equal(native.stat(file).size, 13);
    fs.linkSync(file, res.path('hardlink'));
    assert.equal(native.stat(file).nlink, 2);

    const missing = res.path('missing');
    assert.throws(() => native.stat(missing), {
      name: 'Error',
      message: `stat ENOENT ${missing}`,
      code: 'ENOENT',
      errno: errnoOf('ENOENT'),
      syscall: 'stat',
      path: missing,
    });
    assert.throws(() => native.stat(path.join(file, 'child')), {
      code: 'ENOTDIR',
      syscall: 'stat',
      path: path.join(file, 'child'),
    });
    assert.equal(openFdCount(), before + 3); // the pair
  });

  test('open adds close-on-exec and creates with the mode; errors carry the path', TIMEOUT, (t) => {
    const res = new Resources(t);
    const { O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_TRUNC } = fs.constants;
    const before = openFdCount();
    const file = res.path('created');
    const fd = res.fd(native.open(file, O_RDWR | O_CREAT, 0o640));
    assert.equal(openFdCount(), before + 1);
    assert.equal(hasCloexec(fd), true);
    assert.equal(fdTarget(fd), file);
    assert.ok(fs.statSync(file).isFile());
    assert.equal(permissions(file), 0o640 & ~currentUmask());
    assert.equal(fs.writeSync(fd, 'written'), 7);
    assert.equal(fs.readFileSync(file, 'utf8'), 'written');

    // An existing file: O_CREAT without O_EXCL opens it, and its mode stays.
    const again = res.fd(native.open(file, O_RDWR | O_CREAT, 0o600));
    assert.equal(hasCloexec(again), true);
    assert.equal(permissions(file), 0o640 & ~currentUmask());
    // The access mode is the one asked for.
    const reader = res.fd(native.open(file, O_RDONLY, 0));
    assert.equal(hasCloexec(reader), true);
    assert.equal(fdFlags(reader) & 3, O_RDONLY);
    assert.throws(() => fs.writeSync(reader, 'x'), { code: 'EBADF' });
    const writer = res.fd(native.open(file, O_WRONLY | O_TRUNC, 0));
    assert.equal(fdFlags(writer) & 3, O_WRONLY);
    assert.equal(fs.statSync(file).size, 0, 'O_TRUNC emptied the file');
    for (const opened of [fd, again, reader, writer]) res.close(opened);
    assert.equal(openFdCount(), before);

    throwsWithoutLeak(() => native.open(file, O_RDWR | O_CREAT | O_EXCL, 0o600), {
      name: 'Error',
      message: `open EEXIST ${file}`,
      code: 'EEXIST',
      errno: errnoOf('EEXIST'),
      syscall: 'open',
      path: file,
    });
    const missing = res.path('missing');
    throwsWithoutLeak(() => native.open(missing, O_RDONLY, 0), {
      name: 'Error',
      message: `open ENOENT ${missing}`,
      code: 'ENOENT',
      errno: errnoOf('ENOENT'),
      syscall: 'open',
      path: missing,
    });
    assert.equal(fs.existsSync(missing), false);
    throwsWithoutLeak(() => native.open(res.dir, O_RDWR, 0), {
      code: 'EISDIR',
      syscall: 'open',
      path: res.dir,
    });
    // O_CREAT | O_EXCL makes a new file with exactly the mode (less the umask).
    const exclusive = res.path('exclusive');
    res.close(res.fd(native.open(exclusive, O_WRONLY | O_CREAT | O_EXCL, 0o600)));
    assert.equal(permissions(exclusive), 0o600 & ~currentUmask());
    assert.equal(openFdCount(), before);
  });

  test('chmod and fchmod set the mode, with no umask applied', TIMEOUT, (t) => {
    const res = new Resources(t);
    const file = res.path('file');
    fs.writeFileSync(file, '', { mode: 0o600 });
    const fd = res.fd(fs.openSync(file, 'r'));
    const before = openFdCount();
    for (const mode of [0o777, 0o4750, 0o640, 0]) {
      native.chmod(file, mode);
      assert.equal(permissions(file), mode, `chmod ${mode.toString(8)}`);
    }
    for (const mode of [0o666, 0o2710, 0o600]) {
      native.fchmod(fd, mode);
      assert.equal(permissions(file), mode, `fchmod ${mode.toString(8)}`);
      assert.equal(native.fstat(fd).mode, 0o100000 | mode);
    }
    const dir = res.path('dir');
    fs.mkdirSync(dir, { mode: 0o700 });
    native.chmod(dir, 0o1777);
    assert.equal(permissions(dir), 0o1777);
    assert.ok(fs.statSync(dir).isDirectory());

    const missing = res.path('missing');
    assert.throws(() => native.chmod(missing, 0o600), {
      name: 'Error',
      message: `chmod ENOENT ${missing}`,
      code: 'ENOENT',
      errno: errnoOf('ENOENT'),
      syscall: 'chmod',
      path: missing,
    });
    assert.equal(openFdCount(), before);
  });

  test('pread and pwrite at a position leave the file offset alone; ftruncate', TIMEOUT, (t) => {
    const res = new Resources(t);
    const file = res.path('data');
    fs.writeFileSync(file, 'hello world');
    const before = openFdCount();
    const fd = res.fd(native.open(file, fs.constants.O_RDWR, 0));

    const word = Buffer.alloc(5);
    assert.equal(native.pread(fd, word, 6), 5);
    assert.equal(word.toString(), 'world');
    // Short at the end of the file, then 0 at it and beyond it.
    const wide = Buffer.alloc(8, '.');
    assert.equal(native.pread(fd, wide, 8), 3);
    assert.equal(wide.toString(), 'rld.....');
    assert.equal(native.pread(fd, wide, 11), 0);
    assert.equal(native.pread(fd, wide, 1000), 0);
    assert.equal(wide.toString(), 'rld.....');
    // Into the end of a buffer through a subarray, as the coordination directory reads.
    const whole = Buffer.alloc(11, '-');
    assert.equal(native.pread(fd, whole.subarray(6), 6), 5);
    assert.equal(whole.toString(), '------world');
    const plain = new Uint8Array(2);
    assert.equal(native.pread(fd, plain, 0), 2);
    assert.deepEqual([...plain], [...Buffer.from('he')]);
    assert.equal(native.pread(fd, Buffer.alloc(0), 0), 0);

    assert.equal(native.pwrite(fd, Buffer.from('J'), 0), 1);
    assert.equal(native.pwrite(fd, Buffer.from('WORLD!'), 6), 6);
    assert.equal(fs.readFileSync(file, 'utf8'), 'Jello WORLD!');
    // Past the end: a hole of zeros before the data.
    assert.equal(native.pwrite(fd, new Uint8Array([0x7a]), 14), 1);
    assert.deepEqual(fs.readFileSync(file), Buffer.from('Jello WORLD!\0\0z'));
    assert.equal(native.pwrite(fd, Buffer.alloc(0), 0), 0);
    // Neither call moved the file offset: a plain read still starts at 0.
    const head = Buffer.alloc(5);
    assert.equal(fs.readSync(fd, head, 0, 5, null), 5);
    assert.equal(head.toString(), 'Jello');

    native.ftruncate(fd, 5);
    assert.equal(native.fstat(fd).size, 5);
    assert.equal(fs.readFileSync(file, 'utf8'), 'Jello');
    native.ftruncate(fd, 8);
    assert.deepEqual(fs.readFileSync(file), Buffer.from('Jello\0\0\0'));
    native.ftruncate(fd, 0);
    assert.equal(native.fstat(fd).size, 0);
    assert.equal(native.pread(fd, word, 0), 0);

    // The kernel's refusals, as Node reports them for fs.readSync and fs.writeSync.
    const reader = res.fd(native.open(file, fs.constants.O_RDONLY, 0));
    assert.throws(() => native.pwrite(reader, Buffer.from('x'), 0), {
      name: 'Error',
      message: 'write EBADF',
      code: 'EBADF',
      errno: errnoOf('EBADF'),
      syscall: 'write',
    });
    assert.throws(() => native.ftruncate(reader, 0), {
      message: 'ftruncate EINVAL',
      code: 'EINVAL',
      errno: errnoOf('EINVAL'),
      syscall: 'ftruncate',
    });
    const writer = res.fd(native.open(file, fs.constants.O_WRONLY, 0));
    assert.throws(() => native.pread(writer, word, 0), {
      message: 'read EBADF',
      code: 'EBADF',
      errno: errnoOf('EBADF'),
      syscall: 'read',
    });
    const directory = res.fd(native.open(res.dir, fs.constants.O_RDONLY, 0));
    assert.throws(() => native.pread(directory, word, 0), { code: 'EISDIR', syscall: 'read' });
    const { client } = res.pair();
    assert.throws(() => native.pread(client, word, 0), { code: 'ESPIPE', syscall: 'read' });
    assert.throws(() => native.pwrite(client, word, 0), { code: 'ESPIPE', syscall: 'write' });
    for (const opened of [fd, reader, writer, directory]) res.close(opened);
    assert.equal(openFdCount(), before + 3); // the pair
  });
});
