/**
 * The proxy's fast lane. Most requests a proxy sees are a head with no body, or a small one, on a
 * keep-alive connection. For those, Node's http.Server adds an IncomingMessage and a
 * ServerResponse, both streams, and their events to every request (6-22% of liveroll's CPU per
 * request, measured in docs/benchmarks.md). The fast lane reads the connection itself, parses each head with llhttp (the parser http.Server
 * uses, see upstream-parser.ts), forwards the request through the same Exchange as the http.Server
 * path, and writes the response straight to the socket.
 *
 * Everything else is handed to http.Server with the bytes read so far put back, and the
 * connection stays there for good: a head split across reads, a body not read whole in the same
 * read, Expect, Upgrade, CONNECT, HTTP/1.0, a target not in origin form, a repeated Host, any
 * bytes llhttp refuses. So every rule http.Server enforces (its timeouts, 400, 408, 431,
 * 100-continue, tunnels only after a 101) holds as before, and the fast lane never has to answer
 * a request it does not fully understand.
 */
import type net from 'node:net';
import { createRequire } from 'node:module';
import type { ProxyContext } from './context.js';
import { Exchange, hostCount } from './exchange.js';
import { isName } from './head-values.js';
import { LaneRequest, type LaneConnectionView } from './lane-request.js';
import { QuietClock, Sweeper, sweepInterval } from './sweep.js';
import { ParserBinding, type RequestHead, type RequestParser } from './upstream-parser.js';

/** The largest body the fast lane takes, when it came in the same read as its head. */
const MAX_BODY = 64 * 1024;
/** Pipelined bytes buffered while a request is in flight, before the socket is paused. */
const MAX_QUEUED = 64 * 1024;
/** Idle time between requests before a keep-alive connection is closed (http.Server's default). */
const KEEP_ALIVE_MS = 5_000;

const binding = new ParserBinding(createRequire(import.meta.url));
const noop = (): void => {};

/** Settings of the fast lane; durations in ms, 0 disables. */
export interface FastLaneOptions {
  /** Time a new connection has to send its first request (then 408). */
  headersTimeoutMs: number;
}

/**
 * The length of the body a fast-lane head announces, or undefined when the request belongs to
 * http.Server: Transfer-Encoding, Expect or Upgrade present, or a Content-Length that is repeated,
 * malformed or over MAX_BODY.
 */
function bodyLength(headers: readonly string[]): number | undefined {
  let length = 0;
  let seen = false;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i] ?? '';
    if (isName(name, 'transfer-encoding') || isName(name, 'expect') || isName(name, 'upgrade'))
      return undefined;
    if (!isName(name, 'content-length')) continue;
    const value = headers[i + 1] ?? '';
    if (seen || !/^\d{1,6}$/.test(value)) return undefined;
    seen = true;
    length = Number(value);
  }
  return length <= MAX_BODY ? length : undefined;
}

/** The client connections the fast lane holds, and the hand-over to http.Server. */
export class FastLane {
  private readonly connections = new Set<LaneConnection>();
  draining = false;
  /** Times the connections' silences; runs while the lane holds any. */
  private readonly sweeper: Sweeper;

  constructor(
    readonly proxy: ProxyContext,
    readonly options: FastLaneOptions,
    /** Gives a connection to http.Server, which reads it from then on. */
    private readonly handOver: (socket: net.Socket) => void,
  ) {
    this.sweeper = new Sweeper(sweepInterval([options.headersTimeoutMs]), (now) => {
      for (const connection of this.connections) connection.sweep(now);
      return this.connections.size > 0;
    });
  }

  /** Takes a new client connection. */
  accept(socket: net.Socket): void {
    this.connections.add(new LaneConnection(this, socket));
    this.sweeper.start();
  }

  /** Connections the fast lane still holds. */
  get size(): number {
    return this.connections.size;
  }

  /**
   * Drains like tableroll's drainHttpServer does http.Server's connections: a request in flight
   * gets `Connection: close` and its connection ends after it; an idle one serves at most one
   * more request that way, or ends at its keep-alive timeout. The drain's deadline is its
   * caller's: destroyAll() then ends what is left.
   */
  drain(): void {
    // Each connection reads this flag when it writes a response head (lastResponse).
    this.draining = true;
  }

  destroyAll(): void {
    for (const connection of this.connections) connection.socket.destroy();
  }

  /** Called by a connection that closed or went to http.Server. */
  released(connection: LaneConnection, socket: net.Socket | undefined): void {
    this.connections.delete(connection);
    if (socket !== undefined) this.handOver(socket);
  }
}

/** One client connection while the fast lane reads it. */
class LaneConnection implements LaneConnectionView {
  private readonly parser: RequestParser;
  /** Bytes read and not parsed yet: pipelined requests that wait for the one in flight. */
  private queued: Buffer | undefined;
  private current: LaneRequest | undefined;
  /** No more requests: the connection ends after the current response. */
  private closing = false;
  private served = 0;
  private released = false;
  /** Reading stopped: too many pipelined bytes wait. */
  private paused = false;
  private readonly onData = (data: Buffer): void => this.read(data);
  private readonly onEnd = (): void => this.clientEnded();
  private readonly onClose = (): void => this.closed();
  /** Moved by each read and each answer; the lane's sweep times the silences between. */
  private readonly quiet = new QuietClock();
  private expired = false;

  constructor(
    readonly lane: FastLane,
    readonly socket: net.Socket,
  ) {
    this.parser = binding.requestParser();
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onClose);
    socket.on('error', noop);
  }

  /**
   * Called by the lane's sweep: a connection that has sent no request within the headers
   * timeout gets 408, and one idle between requests for KEEP_ALIVE_MS is closed. A request in
   * flight is the child's timeouts' and the client's own pace's to govern.
   */
  sweep(now: number): void {
    if (this.released || this.expired) return;
    const quiet = this.quiet.quietFor(now);
    if (this.current !== undefined) return;
    const limit = this.served === 0 ? this.lane.options.headersTimeoutMs : KEEP_ALIVE_MS;
    if (limit > 0 && quiet >= limit) this.timedOut();
  }

  private read(data: Buffer): void {
    this.quiet.touch();
    if (this.current !== undefined || this.queued !== undefined) {
      this.queued = this.queued === undefined ? data : Buffer.concat([this.queued, data]);
      if (this.queued.length > MAX_QUEUED && !this.paused) {
        this.paused = true;
        this.socket.pause();
      }
      return;
    }
    this.parse(data);
  }

  /** Starts the request at the front of `data`, or hands the connection over. */
  private parse(data: Buffer): void {
    const head = this.parser.head(data);
    if (typeof head !== 'object') return this.handOver(data);
    const length = this.fits(head);
    if (length === undefined || head.length + length > data.length) return this.handOver(data);
    const end = head.length + length;
    this.queued = end < data.length ? data.subarray(end) : undefined;
    if (!head.keepAlive) this.closing = true;
    const request = new LaneRequest(
      this,
      head,
      length > 0 ? data.subarray(head.length, end) : undefined,
    );
    this.current = request;
    this.served++;
    new Exchange(this.lane.proxy, request).start();
  }

  /** The body length of a request the fast lane serves, or undefined for http.Server's. */
  private fits(head: RequestHead): number | undefined {
    if (head.upgrade || head.minor !== 1 || head.method === 'CONNECT') return undefined;
    // What http.Server's path answers with 400 (exchange.ts) stays its to answer.
    if (head.url.charCodeAt(0) !== 47 /* '/' */ || hostCount(head.headers) > 1) return undefined;
    return bodyLength(head.headers);
  }

  get options(): ProxyContext['options'] {
    return this.lane.proxy.options;
  }

  /** Whether the response being written is the connection's last. */
  get lastResponse(): boolean {
    return this.closing || this.lane.draining;
  }

  /** The current response was written whole. */
  responded(request: LaneRequest): void {
    if (this.current !== request) return;
    this.current = undefined;
    this.quiet.touch();
    if (this.lastResponse) {
      this.closing = true;
      this.socket.end();
      return;
    }
    if (this.queued === undefined) return;
    // Pipelined requests answered at once (a 503, say) must not nest one stack frame each.
    process.nextTick(() => this.next());
  }

  /** Starts the next pipelined request, whose bytes were read while the last one ran. */
  private next(): void {
    if (this.released || this.socket.destroyed || this.current !== undefined) return;
    const queued = this.queued;
    this.queued = undefined;
    // Chunks the socket still holds come after `queued`: resume() hands them to read() on a
    // later tick, which queues them behind a request started here.
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    if (queued !== undefined) this.parse(queued);
  }

  private clientEnded(): void {
    // A client's FIN ends its exchange, as in http.Server (which allows no half-open
    // connections): a client that closed while waiting would otherwise hold the child's
    // request until our first write failed.
    this.closing = true;
    this.queued = undefined;
    this.current?.gone();
    this.current = undefined;
    this.socket.end();
  }

  private timedOut(): void {
    this.expired = true;
    if (this.served === 0) {
      // No request within the headers timeout: what http.Server answers too.
      this.socket.end('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n');
      this.socket.destroySoon();
      return;
    }
    this.socket.destroy();
  }

  private closed(): void {
    this.parser.close();
    this.current?.gone();
    this.current = undefined;
    if (!this.released) {
      this.released = true;
      this.lane.released(this, undefined);
    }
  }

  /** Gives the connection, with `data` put back in front, to http.Server for good. */
  private handOver(data: Buffer): void {
    const socket = this.socket;
    this.released = true;
    this.parser.close();
    socket.removeListener('data', this.onData);
    socket.removeListener('end', this.onEnd);
    socket.removeListener('close', this.onClose);
    socket.removeListener('error', noop);
    socket.pause();
    socket.unshift(data);
    this.lane.released(this, socket);
    // http.Server would let its C++ parser read the socket's handle directly, beside the stream
    // that holds the bytes put back; a 'data' listener keeps it reading through the stream, so
    // no byte can overtake those, whenever the stream is flushed. (No 'end' can have come: it
    // clears what is queued, so nothing is handed over after it.)
    socket.on('data', noop);
    socket.resume();
  }
}
