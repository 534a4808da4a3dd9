/**
 * The owner's side of one handoff (steps 1-4 of protocol.ts): send the metadata and one
 * descriptor per message, wait for the newcomer's ready message, answer "stepping down".
 * State changes, timers and events belong to the Upgrader; this module only talks.
 */
import { delay, type Deadline } from './deadline.js';
import { ErrorCodes, TablerollError } from './errors.js';
import type { Logger } from './logger.js';
import {
  LENGTH_PREFIX_BYTES,
  READY_BYTE,
  STEPPING_DOWN_MESSAGE,
  V0_READY_BYTE,
  checkReadyBody,
  decodeBlobBody,
  decodeLength,
  descriptorName,
  encodeMetadata,
  protocolError,
} from './protocol.js';
import type { StoredFd } from './fd-types.js';
import type { UnixChannel } from './unix-channel.js';

/** What an owner sends a newcomer: the store's entries, and their encoded metadata and names. */
export interface Offer {
  entries: readonly StoredFd[];
  metadata: Buffer;
  names: Buffer[];
}

/**
 * Encodes `entries` for a handoff. The Upgrader does this ahead of time, while idle, so that
 * a newcomer does not wait for an owner running the encoders for the first time.
 */
export function encodeOffer(entries: readonly StoredFd[]): Offer {
  return { entries, metadata: encodeMetadata(entries), names: entries.map(descriptorName) };
}

/** Sends `offer` to the newcomer on `channel`. */
export async function sendDescriptors(
  channel: UnixChannel,
  offer: Offer,
  limit: Deadline,
  log: Logger,
): Promise<void> {
  const { entries, names } = offer;
  await channel.write(offer.metadata, limit);
  log.debug({ step: 'metadata-sent', count: entries.length }, 'sent the metadata');
  // Exactly one fd per message: Go's receiver has room for one. Sent in a plain loop while the
  // socket takes them, waiting only when it is full: on the cold path (see native.ts) an await
  // per descriptor costs more than the sendmsg.
  for (let index = 0; index < entries.length; index++) {
    const entry = entries[index]!;
    const name = names[index]!;
    const sent = channel.writeNow(name, entry.fd);
    if (sent < 0) await channel.write(name, limit, entry.fd);
    else if (sent < name.length) await channel.write(name.subarray(sent), limit);
    log.debug({ step: 'fd-sent', index }, 'sent a descriptor');
  }
}

/** Waits for the newcomer's ready message; resolves with its protocol version once valid. */
export async function awaitReady(channel: UnixChannel, limit: Deadline): Promise<0 | 1> {
  const [first] = await channel.readExact(1, limit);
  if (first === V0_READY_BYTE) return 0; // A v0 newcomer sends this byte and closes.
  if (first !== READY_BYTE) {
    throw protocolError(
      `expected the ready byte 0x42, got 0x${first!.toString(16).padStart(2, '0')}`,
    );
  }
  const length = decodeLength(await channel.readExact(LENGTH_PREFIX_BYTES, limit));
  const { value } = decodeBlobBody(await channel.readExact(length, limit));
  checkReadyBody(value);
  return 1;
}

/** Tells the newcomer we step down; false when the reply could not be written. */
export async function replySteppingDown(
  channel: UnixChannel,
  limit: Deadline,
  log: Logger,
): Promise<boolean> {
  try {
    await channel.write(STEPPING_DOWN_MESSAGE, limit);
    log.debug({ step: 'reply-sent' }, 'sent "stepping down"');
    return true;
  } catch (err) {
    log.warn({ err }, 'could not send "stepping down"');
    return false;
  }
}

/** What the owner can tell about the coordination directory without holding its lock. */
export interface OwnerRecord {
  /** `<dir>/pid` still names this process. */
  namesUs(): boolean;
  /** Nobody holds the coordination lock now. */
  lockIsFree(): boolean;
  /** The newcomer's process is gone or exiting. */
  newcomerDying(): boolean;
}

/**
 * After the reply, a newcomer closes the connection, records itself in `pid` and releases the
 * lock, in that order for Go (its readyHandshake closes on return) and py_peer, or with the
 * close after the write for us. So once it has closed and the lock is free, `pid` tells whether
 * it took over or died before recording itself (the owner then keeps its descriptors rather
 * than leave nobody in charge), and whether it is still alive: one killed after it wrote `pid`
 * serves nothing either, and the owner stays and records itself again. A v0 newcomer's single
 * ready byte is held to the same test, so a stray 0x2A cannot make the owner leave. A newcomer
 * that neither finishes nor dies by the deadline may
 * believe it owns the sockets: then we step down anyway, because zero owners is better than two.
 */
export async function newcomerTookOver(
  channel: UnixChannel,
  limit: Deadline,
  record: OwnerRecord,
  log: Logger,
): Promise<boolean> {
  try {
    try {
      await channel.untilPeerSpeaks(limit);
    } catch (err) {
      // A reset is a hang-up too: a v0 newcomer closes right after its byte, so our reply
      // reaches a closed socket.
      if (!(err instanceof TablerollError && err.code === ErrorCodes.HANDOFF_FAILED)) throw err;
    }
    log.debug({ step: 'newcomer-closed' }, 'the newcomer hung up; waiting for it to take over');
    // While the newcomer holds the lock, our id in pid may only mean it has not written it yet.
    for (let pause = 1; record.namesUs(); pause = Math.min(pause * 2, 20)) {
      if (record.lockIsFree()) return !record.namesUs() && !record.newcomerDying();
      await delay(pause, limit);
    }
    // It recorded itself, but killed before it finished ready() (or right after), it serves
    // nothing: stepping down would leave nobody in charge.
    return !record.newcomerDying();
  } catch (err) {
    if (err instanceof TablerollError && err.code === ErrorCodes.TIMEOUT) return true;
    throw err;
  }
}
