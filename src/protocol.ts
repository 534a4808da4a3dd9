/**
 * The tableroll wire protocol ("proto v1"), byte-compatible with Go tableroll v1.1 through v4.
 * Pure encoding and decoding; the I/O lives in owner-handoff.ts and newcomer-handoff.ts.
 *
 * A handoff from owner O to newcomer N, over N's connection to `<dir>/<O>.sock`:
 *  1. O sends a metadata blob, version 1: a JSON array of entries (kind, id, network, addr).
 *  2. O sends one message per entry: the entry's name as data, exactly one fd as SCM_RIGHTS.
 *     One fd per message because Go's receiver only has room for one.
 *  3. N serves on the inherited fds, then sends READY_BYTE and a version-0 blob {"version":1}.
 *     (A v0 peer sends V0_READY_BYTE and closes instead.)
 *  4. O answers with a version-0 blob {"msg":"stepping down"} and steps down even if that write
 *     fails: zero owners is better than two.
 *  5. N writes its id to `<dir>/pid` and releases the lock.
 *
 * A blob is a 4-byte big-endian signed length, then that many bytes: a version prefix made of
 * JSON-ignorable whitespace, the JSON text, and a newline (Go's encoder appends one).
 */
import { ErrorCodes, TablerollError } from './errors.js';

/** Version of the metadata blob (step 1). */
export const METADATA_VERSION = 1;
/** Version announced in the ready blob (step 3). */
export const PROTOCOL_VERSION = 1;
/** First byte of a ready message from a proto v1 newcomer. */
export const READY_BYTE = 0x42;
/** The single byte a v0 newcomer sends before closing; accepted as a completed handoff. */
export const V0_READY_BYTE = 0x2a;
/** The owner's answer to a ready message. */
export const STEPPING_DOWN = 'stepping down';
/** Upper bound on a blob's length; Go has none and panics on a negative one. */
export const MAX_BLOB_LENGTH = 1024 * 1024;
/** A descriptor's name must be shorter than this (the receive buffer of Go's peer). */
export const MAX_NAME_LENGTH = 4096;
/** Size of the length prefix of a blob. */
export const LENGTH_PREFIX_BYTES = 4;

/** The kinds of descriptor an fd store holds. */
export type FdKind = 'listener' | 'conn' | 'file';

/** One entry of the metadata blob. `network` and `addr` are informational. */
export interface MetadataEntry {
  kind: FdKind;
  id: string;
  network: string;
  addr: string;
}

// Crumb value -> character: 2 bits per whitespace character.
const CRUMB_CHARS = [' ', '\t', '\r', '\n'] as const;

/** Encodes a uint32 as the whitespace version prefix (version 0 is the empty string). */
export function encodeVersionPrefix(version: number): string {
  if (!Number.isInteger(version) || version < 0 || version > 0xffffffff) {
    throw new TablerollError(ErrorCodes.INVALID_ARGUMENT, `version ${version} is not a uint32`);
  }
  let out = '';
  // Least significant nibble first; within a nibble, its low crumb then its high crumb.
  for (let rest = version; rest > 0; rest = Math.floor(rest / 16)) {
    const nibble = rest % 16;
    out += CRUMB_CHARS[nibble & 3]! + CRUMB_CHARS[nibble >> 2]!;
  }
  return out;
}

function crumbOf(code: number): number {
  switch (code) {
    case 0x20:
      return 0;
    case 0x09:
      return 1;
    case 0x0d:
      return 2;
    case 0x0a:
      return 3;
    default:
      return -1;
  }
}

/** Splits a blob body into its version and the rest of the text. */
export function decodeVersionPrefix(body: Buffer): { version: number; rest: Buffer } {
  let end = 0;
  while (end < body.length && crumbOf(body[end]!) >= 0) end++;
  // 16 crumbs hold 32 bits; a longer run cannot be a uint32.
  if (end > 16) throw protocolError(`version prefix of ${end} characters is too long`);
  let version = 0;
  for (let i = end - 1; i >= 0; i--) version = version * 4 + crumbOf(body[i]!);
  return { version, rest: body.subarray(end) };
}

/** A complete blob (length prefix included) carrying `value` as JSON. */
export function encodeBlob(version: number, value: unknown): Buffer {
  const body = Buffer.from(encodeVersionPrefix(version) + JSON.stringify(value) + '\n', 'utf8');
  const blob = Buffer.allocUnsafe(LENGTH_PREFIX_BYTES + body.length);
  blob.writeInt32BE(body.length, 0);
  body.copy(blob, LENGTH_PREFIX_BYTES);
  return blob;
}

/** Reads and checks a length prefix; throws on a negative or oversized length. */
export function decodeLength(prefix: Buffer): number {
  if (prefix.length < LENGTH_PREFIX_BYTES) {
    throw protocolError(`a length prefix of ${prefix.length} bytes is too short`);
  }
  // By hand rather than readInt32BE, whose first call compiles (cold path: see native.ts). `|` yields a signed 32-bit result, as Go's int32 prefix is.
  const length = (prefix[0]! << 24) | (prefix[1]! << 16) | (prefix[2]! << 8) | prefix[3]!;
  if (length < 0 || length > MAX_BLOB_LENGTH) {
    throw protocolError(`blob length ${length} is outside 0..${MAX_BLOB_LENGTH}`);
  }
  return length;
}

/** Parses a blob body (without its length prefix) into its version and JSON value. */
export function decodeBlobBody(body: Buffer): { version: number; value: unknown } {
  const { version, rest } = decodeVersionPrefix(body);
  try {
    return { version, value: JSON.parse(rest.toString('utf8')) as unknown };
  } catch (cause) {
    throw protocolError('blob is not valid JSON', cause);
  }
}

/** The metadata blob an owner sends for these entries. */
export function encodeMetadata(entries: readonly MetadataEntry[]): Buffer {
  // Field order as Go's struct, so the bytes match a Go owner's.
  const value = entries.map(({ kind, id, network, addr }) => ({ kind, id, network, addr }));
  return encodeBlob(METADATA_VERSION, value);
}

/** Validates the decoded metadata blob; unknown keys are ignored, absent network/addr are ''. */
export function decodeMetadata(version: number, value: unknown): MetadataEntry[] {
  if (version !== METADATA_VERSION) {
    throw protocolError(`metadata version ${version} is not ${METADATA_VERSION}`);
  }
  if (!Array.isArray(value)) throw protocolError('metadata is not a JSON array');
  const seen = new Set<string>();
  return value.map((raw: unknown, index) => {
    const entry = raw as Partial<Record<keyof MetadataEntry, unknown>> | null;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw protocolError(`metadata entry ${index} is not an object`);
    }
    const { kind, id, network, addr, name } = entry as typeof entry & { name?: unknown };
    if (kind !== 'listener' && kind !== 'conn' && kind !== 'file') {
      throw protocolError(`metadata entry ${index} has unknown kind ${JSON.stringify(kind)}`);
    }
    if (typeof id !== 'string') throw protocolError(`metadata entry ${index} has no string id`);
    if (seen.has(id)) throw protocolError(`metadata names id ${JSON.stringify(id)} twice`);
    seen.add(id);
    // Some Go versions describe a file by a `name` key instead of `addr`.
    const fileName = kind === 'file' && typeof name === 'string' ? name : '';
    return {
      kind,
      id,
      network: typeof network === 'string' ? network : '',
      addr: typeof addr === 'string' && addr !== '' ? addr : fileName,
    };
  });
}

/**
 * The name sent with a descriptor, as Go formats it: `listener(web): tcp:127.0.0.1:8080`,
 * `conn(c1): unixgram:`, `file(f1): /var/log/app.log`.
 */
export function descriptorName(entry: MetadataEntry): Buffer {
  const where = entry.kind === 'file' ? entry.addr : `${entry.network}:${entry.addr}`;
  const name = Buffer.from(`${entry.kind}(${entry.id}): ${where}`, 'utf8');
  // The name is informational; cut it rather than break a Go receiver's 4096-byte buffer.
  return name.length < MAX_NAME_LENGTH ? name : name.subarray(0, MAX_NAME_LENGTH - 1);
}

/**
 * The newcomer's ready message: READY_BYTE, then a version-0 blob {"version":1}. Handoffs send
 * READY_MESSAGE, built once from this.
 */
export function encodeReady(): Buffer {
  return Buffer.concat([Buffer.of(READY_BYTE), encodeBlob(0, { version: PROTOCOL_VERSION })]);
}

/** Checks the ready blob's content. */
export function checkReadyBody(value: unknown): void {
  const version = (value as { version?: unknown } | null)?.version;
  if (version !== PROTOCOL_VERSION) {
    throw protocolError(`newcomer speaks protocol version ${JSON.stringify(version)}, not 1`);
  }
}

/** The owner's reply to a ready message. Handoffs send STEPPING_DOWN_MESSAGE, built from this. */
export function encodeSteppingDown(): Buffer {
  return encodeBlob(0, { msg: STEPPING_DOWN });
}

/** Checks the owner's reply. */
export function checkReply(value: unknown): void {
  const msg = (value as { msg?: unknown } | null)?.msg;
  if (msg !== STEPPING_DOWN) {
    throw protocolError(`owner replied ${JSON.stringify(msg)} instead of "${STEPPING_DOWN}"`);
  }
}

/** An ERR_TABLEROLL_PROTOCOL error. */
export function protocolError(message: string, cause?: unknown): TablerollError {
  return new TablerollError(ErrorCodes.PROTOCOL, `protocol violation: ${message}`, { cause });
}

/*
 * The two messages whose bytes never change, encoded when the module loads rather than during
 * a handoff, where each side would run the encoder (and Buffer's concat, from, write and copy)
 * for the first time in its life, compiling each of them while the other side waits. Shared:
 * never modify them.
 */
/** The ready message (step 3). */
export const READY_MESSAGE: Buffer = encodeReady();
/** The "stepping down" reply (step 4). */
export const STEPPING_DOWN_MESSAGE: Buffer = encodeSteppingDown();
