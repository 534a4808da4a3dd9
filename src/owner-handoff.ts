/**
 * The owner's side of one handoff (steps 1-4 of protocol.ts): send the metadata and one
 * descriptor per message, wait for the newcomer's ready message, answer "stepping down".
 * State changes, timers and events belong to the Upgrader; this module only talks.
 */
import type { Logger } from './logger.js';
import {
  LENGTH_PREFIX_BYTES,
  READY_BYTE,
  V0_READY_BYTE,
  checkReadyBody,
  decodeBlobBody,
  decodeLength,
  descriptorName,
  encodeMetadata,
  encodeSteppingDown,
  protocolError,
} from './protocol.js';
import type { StoredFd } from './fd-store.js';
import type { UnixChannel } from './unix-channel.js';

/** Sends `entries` to the newcomer on `channel`. */
export async function sendDescriptors(
  channel: UnixChannel,
  entries: readonly StoredFd[],
  signal: AbortSignal,
): Promise<void> {
  await channel.write(encodeMetadata(entries), signal);
  for (const entry of entries) {
    // Exactly one fd per message: Go's receiver has room for one.
    await channel.write(descriptorName(entry), signal, entry.fd);
  }
}

/** Waits for the newcomer's ready message; resolves once it is valid. */
export async function awaitReady(channel: UnixChannel, signal: AbortSignal): Promise<void> {
  const [first] = await channel.readExact(1, signal);
  if (first === V0_READY_BYTE) return; // A v0 newcomer sends this byte and closes.
  if (first !== READY_BYTE) {
    throw protocolError(
      `expected the ready byte 0x42, got 0x${first!.toString(16).padStart(2, '0')}`,
    );
  }
  const length = decodeLength(await channel.readExact(LENGTH_PREFIX_BYTES, signal));
  const { value } = decodeBlobBody(await channel.readExact(length, signal));
  checkReadyBody(value);
}

/**
 * Tells the newcomer we step down. A failed write is logged and ignored: the newcomer has said
 * it is ready, and zero owners is better than two.
 */
export async function replySteppingDown(
  channel: UnixChannel,
  signal: AbortSignal,
  log: Logger,
): Promise<void> {
  try {
    await channel.write(encodeSteppingDown(), signal);
  } catch (err) {
    log.warn({ err }, 'could not send "stepping down"; stepping down anyway');
  }
}
