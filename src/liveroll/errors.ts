/**
 * Errors thrown by liveroll. Each carries a stable `code` (ERR_LIVEROLL_*) so that callers and
 * tests can tell the situations apart without reading messages. The CLI prints the code next to
 * the message.
 */

/** Every error code liveroll throws, with the situation it names. */
export const LiverollErrorCodes = {
  /** A command-line argument is unknown, malformed or missing its value. */
  USAGE: 'ERR_LIVEROLL_USAGE',
  /** A duration is not in Go syntax (`10s`, `1m30s`, `250ms`) or is out of range. */
  INVALID_DURATION: 'ERR_LIVEROLL_INVALID_DURATION',
  /** A port is not an integer in 0..65535, or two ports that must differ are equal. */
  INVALID_PORT: 'ERR_LIVEROLL_INVALID_PORT',
  /** A required command (`--exec`, `--id`) is missing or empty. */
  MISSING_COMMAND: 'ERR_LIVEROLL_MISSING_COMMAND',
  /** Some other option value is out of range or of the wrong kind. */
  INVALID_OPTION: 'ERR_LIVEROLL_INVALID_OPTION',
  /** `--pull` or `--id` exited with a non-zero status or was killed. */
  COMMAND_FAILED: 'ERR_LIVEROLL_COMMAND_FAILED',
  /** `--pull` or `--id` ran longer than `--command-timeout`; its process group was killed. */
  COMMAND_TIMEOUT: 'ERR_LIVEROLL_COMMAND_TIMEOUT',
  /** `--id` printed nothing (after trimming) or more than the output limit. */
  BAD_ID: 'ERR_LIVEROLL_BAD_ID',
  /** A new child did not answer 200 on the health path within `--health-timeout`. */
  HEALTH_TIMEOUT: 'ERR_LIVEROLL_HEALTH_TIMEOUT',
  /** A new child exited before it became healthy. */
  CHILD_EXITED: 'ERR_LIVEROLL_CHILD_EXITED',
  /** Both child ports are held (by our children or by another process). */
  NO_FREE_PORT: 'ERR_LIVEROLL_NO_FREE_PORT',
  /** The operation was cancelled (shutdown or takeover). */
  ABORTED: 'ERR_LIVEROLL_ABORTED',
  /** The public listener could not be obtained (port taken, coordination directory unusable). */
  LISTEN_FAILED: 'ERR_LIVEROLL_LISTEN_FAILED',
  /** This Node's HTTP parser binding is not the one the proxy's client was checked against. */
  HTTP_PARSER: 'ERR_LIVEROLL_HTTP_PARSER',
} as const;

export type LiverollErrorCode = (typeof LiverollErrorCodes)[keyof typeof LiverollErrorCodes];

/** The one error class of liveroll. */
export class LiverollError extends Error {
  readonly code: LiverollErrorCode;

  constructor(code: LiverollErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LiverollError';
    this.code = code;
  }
}

/** The error for a cancelled operation, carrying the abort reason as its cause. */
export function abortedError(signal: AbortSignal, what: string): LiverollError {
  return new LiverollError(LiverollErrorCodes.ABORTED, `${what} was cancelled`, {
    cause: signal.reason,
  });
}

/** A short, single-line description of any thrown value, for logs. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
