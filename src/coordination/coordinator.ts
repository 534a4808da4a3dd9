/**
 * One coordination directory, as this process sees it: the directory and our id in it. The
 * Upgrader makes one, and everything that touches the directory (its checks, the `pid` file and
 * its lock, the upgrade sockets) goes through it.
 */
import fs from 'node:fs';
import type { Logger } from '../logger.js';
import { prepareDirectory, socketPath, validateId } from './directory.js';
import { PidFile, readPidFile } from './pid-file.js';
import {
  bindUpgradeSocket,
  checkSocketFile,
  sweepStaleSockets,
  type UpgradeSocket,
} from './upgrade-socket.js';

export class Coordinator {
  /** The id's bytes as `pid` holds them, to compare without decoding the file. */
  private readonly idBytes: Buffer;

  /** Checks that `id` can name a socket in `dir`; touches nothing yet. */
  constructor(
    readonly dir: string,
    readonly id: string,
  ) {
    validateId(dir, id);
    this.idBytes = Buffer.from(id, 'utf8');
  }

  /** Makes the directory (0700) if it is missing, and refuses one that is not safe to use. */
  prepare(): void {
    prepareDirectory(this.dir);
  }

  /** Binds our own upgrade socket, `<dir>/<id>.sock`. */
  bindOurSocket(log: Logger): UpgradeSocket {
    return bindUpgradeSocket(this.dir, this.id, log);
  }

  /** Opens the `pid` file, to lock it and then read or write the owner's id. */
  openPidFile(): PidFile {
    return PidFile.open(this.dir);
  }

  /** True when `pid` names us now, read without the lock. */
  recordsUs(): boolean {
    return readPidFile(this.dir).equals(this.idBytes);
  }

  /** True when `owner` (the bytes of `pid`) is our own id. */
  isOurs(owner: Buffer): boolean {
    return owner.equals(this.idBytes);
  }

  /** True when nobody holds the coordination lock: taken without waiting and released at once. */
  lockIsFree(): boolean {
    const file = PidFile.open(this.dir);
    try {
      return file.tryLock();
    } finally {
      file.close();
    }
  }

  /**
   * The upgrade socket of process `peerId`, checked before anyone connects to it: a socket of a
   * user we trust, not a symlink. Throws when the id or the file is not acceptable.
   */
  peerSocket(peerId: string): string {
    validateId(this.dir, peerId);
    const path = socketPath(this.dir, peerId);
    checkSocketFile(path, "the owner's upgrade socket");
    return path;
  }

  /** The ids of every upgrade socket in the directory, except `exclude`. */
  peerIds(exclude: readonly string[]): string[] {
    return fs
      .readdirSync(this.dir)
      .filter((name) => name.endsWith('.sock'))
      .map((name) => name.slice(0, -'.sock'.length))
      .filter((id) => !exclude.includes(id));
  }

  /** Removes the upgrade sockets of processes that are gone; returns their names. */
  sweep(): string[] {
    return sweepStaleSockets(this.dir, this.id);
  }
}
