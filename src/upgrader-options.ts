/**
 * The options of `Upgrader.create`, their exported defaults, and their validation.
 */
import { ErrorCodes, TablerollError } from './errors.js';
import type { Logger } from './logger.js';

/** Options of `Upgrader.create`. */
export interface UpgraderOptions {
  /**
   * Longest a handoff may take, from the newcomer's connection to its ready message, on both
   * sides. An owner whose newcomer is late goes back to being the owner.
   */
  upgradeTimeoutMs?: number;
  /** Longest `create` waits for the coordination lock (another newcomer holds it). */
  lockTimeoutMs?: number;
  /** A pino-compatible logger. Silent by default; NODE_DEBUG=tableroll logs to stderr. */
  logger?: Logger;
  /** Aborts `create` and an unfinished handoff. */
  signal?: AbortSignal;
  /**
   * Tell systemd about readiness and handoffs through $NOTIFY_SOCKET (READY=1, STATUS=,
   * STOPPING=1, WATCHDOG=1). Default true; does nothing when NOTIFY_SOCKET is unset.
   */
  notify?: boolean;
  /**
   * Adopt sockets passed by systemd socket activation (LISTEN_FDS) under their
   * FileDescriptorName=, unless the previous owner handed over the same id. Default true.
   */
  socketActivation?: boolean;
  /**
   * Keep inherited listeners this process never asked for (through `fds.listen` or
   * `fds.listener`) by the time it calls `ready()`, and pass them on. Default false: they are
   * closed in `ready()`, so a port the new version no longer serves refuses connections instead
   * of queueing them where nobody accepts. Set it if you take a listener only after `ready()`.
   */
  keepUnclaimedListeners?: boolean;
}

/** The defaults of UpgraderOptions. */
export const defaultOptions: Readonly<{ upgradeTimeoutMs: number; lockTimeoutMs: number }> =
  Object.freeze({ upgradeTimeoutMs: 60_000, lockTimeoutMs: 60_000 });

/** Options with their defaults applied. */
export type ResolvedOptions = UpgraderOptions & { upgradeTimeoutMs: number; lockTimeoutMs: number };

/** Checks the caller's options and applies the defaults. */
export function resolveOptions(options: UpgraderOptions): ResolvedOptions {
  const given = checkOptions(options);
  // A key present with the value undefined means "not given": spread as it is, it would
  // overwrite the default with undefined and leave the wait with no timer at all.
  return {
    ...given,
    upgradeTimeoutMs: given.upgradeTimeoutMs ?? defaultOptions.upgradeTimeoutMs,
    lockTimeoutMs: given.lockTimeoutMs ?? defaultOptions.lockTimeoutMs,
  };
}

function checkOptions(options: UpgraderOptions): UpgraderOptions {
  if (typeof options !== 'object' || options === null) {
    throw new TablerollError(ErrorCodes.INVALID_ARGUMENT, 'options must be an object');
  }
  for (const key of ['upgradeTimeoutMs', 'lockTimeoutMs'] as const) {
    const value = options[key];
    if (value !== undefined && !(typeof value === 'number' && value > 0)) {
      throw new TablerollError(
        ErrorCodes.INVALID_ARGUMENT,
        `${key} must be a positive number of milliseconds`,
      );
    }
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new TablerollError(ErrorCodes.INVALID_ARGUMENT, 'signal must be an AbortSignal');
  }
  const logger = options.logger as Partial<Logger> | undefined;
  if (
    logger !== undefined &&
    (typeof logger?.info !== 'function' || typeof logger.warn !== 'function')
  ) {
    throw new TablerollError(
      ErrorCodes.INVALID_ARGUMENT,
      'logger must be pino-compatible (info, warn, ...)',
    );
  }
  return options;
}
