/**
 * tableroll: zero-downtime upgrades for Node servers. Peer processes that share a coordination
 * directory hand their listening sockets to each other, with no parent process.
 */
export { Upgrader } from './upgrader.js';
export type { CompletionReason, UpgraderEvents } from './upgrader.js';
export { defaultOptions } from './upgrader-options.js';
export type { UpgraderOptions } from './upgrader-options.js';
export type { UpgraderState } from './upgrader-state.js';
export { Fds } from './fd-store.js';
export type {
  FdHandle,
  FdInfo,
  FdSource,
  TcpListenOptions,
  UdpListenOptions,
  UnixListenOptions,
} from './fd-types.js';
export type { FdKind } from './protocol.js';
export { ErrorCodes, TablerollError } from './errors.js';
export type { ErrorCode } from './errors.js';
export type { Logger } from './logger.js';
export { drainHttpServer, defaultDrainOptions } from './drains/http-drain.js';
export { runtimeDirectory } from './coordination/runtime-directory.js';
export { setMallocTrimThreshold, BULK_TRIM_THRESHOLD } from './memory.js';
export type { MallocTrimResult } from './memory.js';
export type { RuntimeEnvironment } from './coordination/runtime-directory.js';
export type { DrainOptions, DrainResult } from './drains/http-drain.js';
export { drainWebSocketServer } from './drains/websocket-drain.js';
export { trackHttp2Server } from './drains/http2-drain.js';
export type { Http2Tracker } from './drains/http2-drain.js';
export type {
  WebSocketDrainOptions,
  WebSocketLike,
  WebSocketServerLike,
} from './drains/websocket-drain.js';
