/**
 * Errors thrown by tableroll. Every error carries a stable `code`; tests list them all, so adding
 * one is a deliberate change. `final` says whether the Upgrader that threw can still be used:
 * a final error means the only thing left to do with it is `stop()`.
 */

/** Every error code tableroll throws, with the situation it names. */
export const ErrorCodes = {
  /** The native addon is missing or failed to load: build it with `npm rebuild tableroll`. */
  ADDON_MISSING: 'ERR_TABLEROLL_ADDON_MISSING',
  /** An id is empty, contains `/` or a NUL byte, or makes the socket path too long. */
  INVALID_ID: 'ERR_TABLEROLL_INVALID_ID',
  /** An option or argument has the wrong type or an out-of-range value. */
  INVALID_ARGUMENT: 'ERR_TABLEROLL_INVALID_ARGUMENT',
  /** The coordination directory is not a directory, belongs to someone else, or others can write it. */
  UNSAFE_DIRECTORY: 'ERR_TABLEROLL_UNSAFE_DIRECTORY',
  /**
   * A system call on the coordination directory failed (a missing parent, a read-only file
   * system, no permission, a name too long): `cause` is the syscall error, with its `code`.
   */
  DIRECTORY_FAILED: 'ERR_TABLEROLL_DIRECTORY_FAILED',
  /**
   * `fds.listen` or `fds.listenUdp` could not resolve or bind the address (EADDRINUSE, EACCES,
   * EADDRNOTAVAIL, ENOTFOUND ...): `cause` is the syscall or DNS error, with its `code`.
   */
  LISTEN_FAILED: 'ERR_TABLEROLL_LISTEN_FAILED',
  /** Another live process is listening on the upgrade socket of this id. */
  ID_IN_USE: 'ERR_TABLEROLL_ID_IN_USE',
  /** The caller's AbortSignal fired. */
  ABORTED: 'ERR_TABLEROLL_ABORTED',
  /** A handoff did not finish within `upgradeTimeoutMs`. */
  TIMEOUT: 'ERR_TABLEROLL_TIMEOUT',
  /** The peer sent something the protocol does not allow (length, version, JSON, descriptors). */
  PROTOCOL: 'ERR_TABLEROLL_PROTOCOL',
  /** The peer went away or refused the handoff. */
  HANDOFF_FAILED: 'ERR_TABLEROLL_HANDOFF_FAILED',
  /** The peer runs as another user; it may not take or give our descriptors. */
  PEER_REJECTED: 'ERR_TABLEROLL_PEER_REJECTED',
  /** `ready()` was called twice. */
  ALREADY_READY: 'ERR_TABLEROLL_ALREADY_READY',
  /** The Upgrader was stopped, or has handed its descriptors over. */
  STOPPED: 'ERR_TABLEROLL_STOPPED',
  /** The fd store is being sent to a newcomer; try again when the transfer has ended. */
  STORE_LOCKED: 'ERR_TABLEROLL_STORE_LOCKED',
  /** The fd store no longer accepts changes: the upgrade completed or the Upgrader stopped. */
  STORE_CLOSED: 'ERR_TABLEROLL_STORE_CLOSED',
  /** An id is already used in the fd store. */
  DUPLICATE_ID: 'ERR_TABLEROLL_DUPLICATE_ID',
  /** An id exists in the fd store with another kind (a conn asked for as a listener, say). */
  KIND_MISMATCH: 'ERR_TABLEROLL_KIND_MISMATCH',
  /** An internal rule was broken; the message starts with `BUG:`. */
  BUG: 'ERR_TABLEROLL_BUG',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** Options of a TablerollError besides its code and message. */
export interface TablerollErrorOptions {
  cause?: unknown;
  /** True when the object that threw cannot be used any more. */
  final?: boolean;
}

/** The one error class of tableroll. */
export class TablerollError extends Error {
  readonly code: ErrorCode;
  readonly final: boolean;

  constructor(code: ErrorCode, message: string, options: TablerollErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TablerollError';
    this.code = code;
    this.final = options.final ?? false;
  }
}

/** An error for a broken internal rule. */
export function bug(message: string): TablerollError {
  return new TablerollError(ErrorCodes.BUG, `BUG: ${message}`, { final: true });
}

/** The shape of a syscall error from the addon, as Node's own (`code`, `errno`, `syscall`). */
export interface SyscallError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

/** True when `err` is a syscall error with one of the given codes. */
export function hasCode(err: unknown, ...codes: string[]): err is SyscallError {
  return (
    typeof err === 'object' &&
    err !== null &&
    typeof (err as { code?: unknown }).code === 'string' &&
    codes.includes((err as { code: string }).code)
  );
}

/**
 * `err` as a TablerollError: one already is passes through; anything else (a syscall error of
 * the addon or of node:fs, a DNS error) becomes `code` with `err` as its cause.
 */
export function asTablerollError(err: unknown, code: ErrorCode, what: string): TablerollError {
  if (err instanceof TablerollError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new TablerollError(code, `${what}: ${detail}`, { cause: err });
}
