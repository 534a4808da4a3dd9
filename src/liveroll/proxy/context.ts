/**
 * What the pieces of the proxy (an exchange, a tunnel, an Expect: 100-continue request) need
 * from the ReverseProxy that runs them.
 */
import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Rotation } from './rotation.js';

/** Proxy settings; durations in milliseconds, 0 disables a timeout. */
export interface ProxyOptions {
  /** Time a child has to send response headers. */
  headersTimeoutMs: number;
  /** Longest silence inside a body, in either direction. */
  idleTimeoutMs: number;
  /** Time to open a connection to a child. */
  connectTimeoutMs?: number;
  /** Extend incoming X-Forwarded-* headers instead of replacing them. */
  trustForwardHeaders: boolean;
  /** Seconds sent in `Retry-After` with a 503. */
  retryAfterSeconds?: number;
  /** Time a client has to send a request's headers (default 30 s; 0 disables). */
  clientHeadersTimeoutMs?: number;
  /**
   * Serve plain requests on a lane rather than through http.Server; on unless false. False
   * turns both lanes off: every request goes through http.Server.
   */
  fastLane?: boolean;
  /**
   * Serve plain requests on the native lane (native-lane.ts), in C++, in front of the fast lane
   * (fast-lane.ts, JavaScript); on unless false (or `fastLane` false).
   */
  nativeLane?: boolean;
  /** Most client connections at once (default: from the descriptor limit, see connectionCap). */
  maxConnections?: number;
  logger: Logger;
}

/** The proxy as its pieces see it. */
export interface ProxyContext {
  readonly options: ProxyOptions;
  readonly rotation: Rotation;
  /** Answers a request liveroll itself cannot forward. */
  reject(res: ServerResponse, status: number, message: string): void;
}
