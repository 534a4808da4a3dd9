/**
 * The interface of liveroll's HTTP/1.1 client to a child (upstream.ts): what an exchange's owner
 * gives it and gets back.
 */
import type { IncomingMessage } from 'node:http';

/** What a dispatch reports to its owner, in this order: start, response start, data, end or error. */
export interface UpstreamHandler {
  /** The request is being written to a connection: from here on the child may have seen it. */
  onRequestStart(): void;
  /** The final status line and headers (1xx responses are skipped). */
  onResponseStart(status: number, rawHeaders: string[], message: string): void;
  /**
   * A chunk of the body; return false to pause the connection until `resume()`. A `transient`
   * chunk is a view of the connection's read buffer, which the next read overwrites: copy it if
   * it is needed after this call returns (a write to a socket may keep it).
   */
  onResponseData(chunk: Buffer, transient: boolean): boolean;
  /** The response ended; `trailers` is a flat `[name, value, ...]` list, often empty. */
  onResponseEnd(trailers: string[]): void;
  /** The exchange failed; `err.code` says how (see UpstreamError). */
  onResponseError(err: UpstreamError): void;
}

/** A request to forward: the head's parts and, when it has one, the body to stream. */
export interface UpstreamRequest {
  method: string;
  path: string;
  /** Flat `[name, value, ...]`, already free of hop-by-hop headers. */
  headers: string[];
  /**
   * The body: the client's request, read as it streams, or the whole body already read (its
   * Content-Length among `headers`); undefined when there is none.
   */
  body?: IncomingMessage | Buffer | undefined;
}

/**
 * The hold an exchange's owner has on it: the connection that carries it. Each call names the
 * exchange's handler, and does nothing once the connection carries another exchange.
 */
export interface UpstreamControl {
  abort(handler: UpstreamHandler, reason: string): void;
  /** Lets a response paused by `onResponseData` returning false flow again. */
  resume(handler: UpstreamHandler): void;
}

/** Settings of a pool; durations in ms, 0 disables. */
export interface UpstreamSettings {
  connectTimeoutMs: number;
  /** From the end of the request to the response's headers. */
  headersTimeoutMs: number;
  /** Longest silence inside a response body. */
  bodyTimeoutMs: number;
}

/**
 * A failed exchange with a child. `code` says why: the socket's own code (ECONNREFUSED,
 * ECONNRESET, EPIPE) or one of ours: UPSTREAM_CONNECT_TIMEOUT, UPSTREAM_HEADERS_TIMEOUT, UPSTREAM_BODY_TIMEOUT, UPSTREAM_CLOSED
 * (the child closed before the response ended), UPSTREAM_BAD_RESPONSE (bytes that are not
 * HTTP), UPSTREAM_ABORTED (the client left), UPSTREAM_POOL_CLOSED (the child was forgotten).
 */
export class UpstreamError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}
