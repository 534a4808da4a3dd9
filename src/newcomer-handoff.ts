/**
 * The newcomer's side of a handoff: dial the owner named in `pid`, receive its descriptors,
 * and later confirm with the ready message. Called with the coordination lock held.
 */
import { ErrorCodes, TablerollError } from './errors.js';
import { Deadline, delay } from './deadline.js';
import type { Coordinator } from './coordination/coordinator.js';
import { isTrustedUid } from './coordination/directory.js';
import { processExited } from './coordination/peers.js';
import type { Logger } from './logger.js';
import { native } from './native.js';
import {
  LENGTH_PREFIX_BYTES,
  MAX_NAME_LENGTH,
  READY_MESSAGE,
  checkReply,
  decodeBlobBody,
  decodeLength,
  decodeMetadata,
  protocolError,
  type MetadataEntry,
} from './protocol.js';
import type { StoredFd } from './fd-types.js';
import { UnixChannel, closeAll } from './unix-channel.js';

/** Pause between attempts while a live owner refuses us (it is busy or draining). */
const REFUSED_RETRY_MS = 100;

/** The outcome of dialing the owner. */
export type TakeOver =
  /**
   * `entries`: what a dead owner handed over before it died; ours now, with nobody to ask.
   * `unreachable`: nothing answered at its socket (or, asked once, it refused).
   */
  | { owner: false; reason: string; entries: StoredFd[]; unreachable?: boolean }
  | { owner: true; channel: UnixChannel; ownerPid: number; entries: StoredFd[] };

/** The owner hung up before sending a single byte: it refuses requests in its current state. */
class Refused extends Error {}

/**
 * Dials `ownerId` and receives its descriptors. A socket nobody accepts on, a missing socket,
 * or an owner that died, mean there is no owner. A live owner that refuses is retried until
 * `limit` fires: it is mid-transfer or draining and will go away.
 */
export async function takeOver(
  coordinator: Coordinator,
  ownerId: string,
  limit: Deadline,
  log: Logger,
  once = false,
): Promise<TakeOver> {
  const path = coordinator.peerSocket(ownerId);
  for (;;) {
    let channel: UnixChannel;
    try {
      channel = await UnixChannel.connect(path, limit);
    } catch (err) {
      limit.throwIfFired();
      const { code } = err as { code?: unknown };
      const why = typeof code === 'string' ? code : 'unknown';
      return {
        owner: false,
        reason: `could not connect to the owner's socket (${why})`,
        entries: [],
        unreachable: true,
      };
    }
    const { pid, uid } = native.peerCredentials(channel.fd);
    if (!isTrustedUid(uid)) {
      channel.close();
      throw new TablerollError(
        ErrorCodes.PEER_REJECTED,
        `the owner's socket ${path} belongs to a process of uid ${uid}; refusing its descriptors`,
        { final: true },
      );
    }
    const received: StoredFd[] = [];
    try {
      await receiveDescriptors(channel, limit, log, received);
      return { owner: true, channel, ownerPid: pid, entries: received };
    } catch (err) {
      channel.close();
      // Asked once, a peer that hangs up without a byte owns nothing: no need to see it die.
      if (once && err instanceof Refused) {
        return { owner: false, reason: 'refused', entries: [], unreachable: true };
      }
      const cutShort = err instanceof TablerollError && err.code === ErrorCodes.HANDOFF_FAILED;
      const hungUp = !limit.reason && (err instanceof Refused || cutShort);
      if (hungUp && (await processExited(pid))) {
        // Keeping what arrived keeps those sockets open: connections queued on them survive.
        const reason = `the owner (pid ${pid}) died during the handoff`;
        return { owner: false, reason, entries: received };
      }
      closeAll(received.map((entry) => entry.fd));
      // A live owner hung up: that is the failure, even if the deadline passed while we checked.
      if (hungUp && cutShort) throw err;
      limit.throwIfFired();
      if (!(err instanceof Refused)) throw err;
      log.info({ ownerPid: pid }, 'the owner refused the handoff for now; retrying');
      await delay(REFUSED_RETRY_MS, limit);
    }
  }
}

/** Receives into `received`, which the caller owns (and closes on failure) even when this throws. */
async function receiveDescriptors(
  channel: UnixChannel,
  limit: Deadline,
  log: Logger,
  received: StoredFd[],
): Promise<void> {
  const entries = await receiveMetadata(channel, limit);
  log.debug({ step: 'metadata-received', count: entries.length }, 'received the metadata');
  // Room for every descriptor and the copies the application takes of them.
  growFdTable(channel.fd, channel.fd + 2 * entries.length);
  // One buffer for every name (their bytes only need counting), and a native loop that takes
  // every message already there: one call per burst rather than an await and a recvmsg call per
  // descriptor, which at 500 descriptors costs milliseconds (cold path: see native.ts).
  const names = Buffer.allocUnsafe(MAX_NAME_LENGTH);
  while (received.length < entries.length) {
    const batch = channel.readEachNow(names, entries.length - received.length);
    if (batch === null) {
      await channel.readable(limit);
      continue;
    }
    for (let at = 0; at < batch.length;) {
      const entry = entries[received.length]!;
      const bytes = batch[at++]!;
      const count = batch[at++]!;
      if (count < 0) throw protocolError('descriptors were truncated (MSG_CTRUNC)');
      const fds = batch.slice(at, (at += count));
      if (count === 0 && bytes === 0) {
        throw new TablerollError(
          ErrorCodes.HANDOFF_FAILED,
          `the owner closed the connection after ${received.length} of ${entries.length} descriptors`,
        );
      }
      for (const fd of fds) received.push({ ...entry, fd, inherited: true });
      if (count !== 1) {
        throw protocolError(`${describe(entry)} came with ${count} descriptors, not 1`);
      }
      if (bytes >= MAX_NAME_LENGTH)
        throw protocolError(`the name of ${describe(entry)} is too long`);
      log.debug({ step: 'fd-received', index: received.length - 1 }, 'received a descriptor');
    }
  }
  // The owner must now wait for us; anything more it sent is a violation.
  const extra = channel.readNow(1);
  if (extra && (extra.fds.length > 0 || extra.data.length > 0)) {
    closeAll(extra.fds);
    throw protocolError(`the owner sent more than the ${entries.length} descriptors it announced`);
  }
}

async function receiveMetadata(channel: UnixChannel, limit: Deadline): Promise<MetadataEntry[]> {
  let head: Buffer;
  try {
    const first = await channel.readWithFds(LENGTH_PREFIX_BYTES, limit);
    if (first.fds.length > 0) {
      closeAll(first.fds);
      throw protocolError('descriptors arrived with the metadata length');
    }
    if (first.data.length === 0) throw new Refused();
    head = first.data;
  } catch (err) {
    if (err instanceof TablerollError && err.code === ErrorCodes.HANDOFF_FAILED)
      throw new Refused();
    throw err;
  }
  if (head.length < LENGTH_PREFIX_BYTES) {
    head = Buffer.concat([head, await channel.readExact(LENGTH_PREFIX_BYTES - head.length, limit)]);
  }
  const length = decodeLength(head);
  const { version, value } = decodeBlobBody(await channel.readExact(length, limit));
  return decodeMetadata(version, value);
}

/**
 * The fd table a newcomer grows to in the background as create() starts: 1024 slots hold a
 * handoff of about 500 listeners and the application's copies of them. The table of a new Node
 * process has 256, and in a multi-threaded process each growth waits for an RCU grace period
 * (8 to 17 ms on the benchmark machine) before any descriptor past the old size can be
 * received. Started early, that wait overlaps with locking and dialing. It costs a short-lived
 * thread and a few KiB of kernel memory, once per process.
 */
const EARLY_FD_TABLE_SLOTS = 1024;
let grewEarly = false;

/**
 * Starts growing the fd table on another thread (once per process), with a copy of `fd`, which
 * must stay open; returns at once.
 */
export function growFdTableEarly(fd: number): void {
  if (grewEarly) return;
  grewEarly = true;
  native.growFdTable(fd, EARLY_FD_TABLE_SLOTS - 1);
}

/**
 * Makes room for descriptor numbers up to `highest` when even the early growth is too small:
 * grown on another thread, so receiving the descriptors that fit already overlaps with the wait.
 */
function growFdTable(fd: number, highest: number): void {
  if (highest >= EARLY_FD_TABLE_SLOTS) native.growFdTable(fd, highest);
}

function describe(entry: MetadataEntry): string {
  return `${entry.kind} ${JSON.stringify(entry.id)}`;
}

/**
 * When the process `pid` names is gone, asks every other process of the directory once: one
 * may still own the sockets without being recorded. That happens when a newcomer is killed
 * after it wrote `pid` and another newcomer reads `pid` before the owner, which stays the
 * owner, has written itself back. Processes that do not own anything refuse by hanging up.
 */
async function findUnrecordedOwner(
  coordinator: Coordinator,
  exclude: string[],
  limit: Deadline,
  log: Logger,
): Promise<TakeOver | null> {
  for (const candidate of coordinator.peerIds(exclude)) {
    try {
      const result = await takeOver(coordinator, candidate, limit, log, true);
      // An owner, or one that died handing over: what it sent is ours either way.
      if (result.owner || result.entries.length > 0) {
        log.warn({ ownerId: candidate }, 'found the owner, which pid did not name');
        return result;
      }
    } catch (err) {
      limit.throwIfFired();
      log.debug({ err, candidate }, 'not an owner');
    }
  }
  return null;
}

/** Sends the ready message and checks the owner's "stepping down" reply. */
export async function confirmReady(
  channel: UnixChannel,
  limit: Deadline,
  log: Logger,
): Promise<void> {
  await channel.write(READY_MESSAGE, limit);
  log.debug({ step: 'ready-sent' }, 'sent the ready message');
  const length = decodeLength(await channel.readExact(LENGTH_PREFIX_BYTES, limit));
  const { value } = decodeBlobBody(await channel.readExact(length, limit));
  checkReply(value);
  log.debug({ step: 'reply-received' }, 'the owner steps down');
}

/** A newcomer's handoff in progress: from create() to ready(). */
export interface Session {
  channel: UnixChannel;
  ownerPid: number;
  /** Bounds the whole handoff, receiving and ready included. */
  limit: Deadline;
  /** Cancels the watch for the owner hanging up before ready(). */
  watch: Deadline;
}

/**
 * Takes over from the owner named in `pid` (raw bytes), if there is one: the session to finish in
 * ready(), and what was inherited. Called with the coordination lock held. `handoffLimit` makes
 * the deadline of the whole handoff, only when there is an owner to dial.
 */
export async function inheritFromOwner(
  coordinator: Coordinator,
  owner: Buffer,
  handoffLimit: () => Deadline,
  log: Logger,
): Promise<{ session: Session | null; inherited: StoredFd[] }> {
  const none = { session: null, inherited: [] };
  if (owner.length === 0) {
    log.info('no owner: starting with an empty fd store');
    return none;
  }
  const ownerId = owner.toString('utf8');
  // Go dials itself here and then fails forever.
  if (ownerId === coordinator.id) {
    log.warn('the pid file names our own id, left by an earlier process: no owner');
    return none;
  }
  const limit = handoffLimit();
  try {
    let result = await takeOver(coordinator, ownerId, limit, log);
    if (!result.owner && result.unreachable === true) {
      const exclude = [coordinator.id, ownerId];
      result = (await findUnrecordedOwner(coordinator, exclude, limit, log)) ?? result;
    }
    if (!result.owner) {
      const kept = result.entries.length;
      log.warn(
        { ownerId, reason: result.reason, kept },
        'no owner: starting with what it handed over',
      );
      limit.dispose();
      return { session: null, inherited: result.entries };
    }
    log.info(
      { ownerId, ownerPid: result.ownerPid, count: result.entries.length },
      'inherited descriptors',
    );
    const session = {
      channel: result.channel,
      ownerPid: result.ownerPid,
      limit,
      watch: new Deadline(Infinity, 'watching the owner'),
    };
    return { session, inherited: result.entries };
  } catch (err) {
    limit.dispose();
    throw err;
  }
}
