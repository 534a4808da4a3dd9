/**
 * liveroll as a library (`tableroll/liveroll`): the supervisor the `liveroll` command runs,
 * with its options, duration syntax, reverse proxy and error codes.
 */
export { LiverollInstance, ExitCodes } from './instance.js';
export { defaultOptions, expandExec, logLevels } from './options.js';
export type { LiverollOptions, LogFormat, LogLevel } from './options.js';
export { parseCommandLine, helpText } from './argv.js';
export type { ParsedCommandLine, ParseContext } from './argv.js';
export { parseDuration, formatDuration, MAX_DURATION_MS } from './duration.js';
export { ReverseProxy } from './proxy/proxy.js';
export type { ProxyOptions } from './proxy/proxy.js';
export type { BackendAddress } from './proxy/rotation.js';
export { LiverollError, LiverollErrorCodes } from './errors.js';
export type { LiverollErrorCode } from './errors.js';
export { createLogger } from './logger.js';
