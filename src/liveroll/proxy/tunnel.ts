/**
 * Upgrade requests (WebSocket and others). The request head is rewritten like any other
 * (X-Forwarded-*, hop-by-hop headers) and sent to a child on a fresh connection, whose answer
 * Node's HTTP client parses:
 *
 * - `101 Switching Protocols`: the head goes to the client as the child sent it, then bytes flow
 *   both ways untouched; the connection now speaks another protocol.
 * - anything else: an ordinary response, forwarded with `Connection: close`, after which the
 *   client's connection is closed. It must never become a raw tunnel: every later request on
 *   it would reach the child unparsed, with whatever X-Forwarded-* headers the client forged,
 *   past the proxy's timeouts, and pinned to that child through every roll.
 *
 * A child that refuses the connection is skipped for the next one: nothing was sent to it.
 *
 * When the child is retired (a roll, or a takeover of liveroll), its tunnels are closed rather
 * than left to the drain deadline: a WebSocket gets a Close frame with status 1001 (going away)
 * from liveroll, put between two of the child's frames; the client's answering Close still
 * reaches the child, which then hangs up. Other protocols, which liveroll cannot speak, get
 * their connection ended (FIN both ways). The drain waits for the tunnels up to its deadline.
 */
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { describeError } from '../errors.js';
import { forwardRequestHeaders, forwardResponseHeaders } from './forward-headers.js';
import type { ProxyContext } from './context.js';
import type { Backend } from './rotation.js';
import { FrameBoundaries, GOING_AWAY, closeFrame } from './websocket-frames.js';

const statusLines: Record<number, string> = {
  502: '502 Bad Gateway',
  503: '503 Service Unavailable',
};

/** Ends the client's connection with a bodiless error response. */
function refuse(socket: Duplex, status: 502 | 503, retryAfterSeconds: number): void {
  const retry = status === 503 ? `Retry-After: ${retryAfterSeconds}\r\n` : '';
  socket.end(
    `HTTP/1.1 ${statusLines[status]}\r\n${retry}Connection: close\r\nContent-Length: 0\r\n\r\n`,
  );
}

/** A status line and headers (flat name/value list) as bytes on the wire. */
function responseHead(res: IncomingMessage, headers: readonly string[]): string {
  let head = `HTTP/1.1 ${res.statusCode ?? 502} ${res.statusMessage ?? ''}\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${head}\r\n`;
}

/** Connects the client to a child for an upgrade request; handles the server's 'upgrade' event. */
export function tunnelUpgrade(
  proxy: ProxyContext,
  req: IncomingMessage,
  client: Duplex,
  head: Buffer,
): void {
  const { logger, idleTimeoutMs, trustForwardHeaders } = proxy.options;
  const connectTimeoutMs = proxy.options.connectTimeoutMs ?? 5_000;
  const tried: Backend[] = [];
  const headers = forwardRequestHeaders(req, { trustForwardHeaders, upgrade: true });
  let upstream: ClientRequest | undefined;
  client.on('error', () => upstream?.destroy());
  client.on('close', () => upstream?.destroy());
  client.on('timeout', () => client.destroy());
  (client as Socket).setTimeout(idleTimeoutMs);

  const tryNext = (): void => {
    const backend = proxy.rotation.pick(tried);
    if (backend === undefined) {
      refuse(client, tried.length === 0 ? 503 : 502, proxy.options.retryAfterSeconds ?? 1);
      return;
    }
    tried.push(backend);
    const begun = backend.begin();
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      begun();
    };
    let connected = false;
    let answered = false;
    const outgoing = request({
      host: backend.address.host,
      port: backend.address.port,
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers,
      agent: false,
      timeout: connectTimeoutMs,
    });
    upstream = outgoing;
    outgoing.on('socket', (socket) => {
      socket.once('connect', () => {
        connected = true;
        outgoing.setTimeout(proxy.options.headersTimeoutMs);
      });
    });
    outgoing.on('timeout', () => outgoing.destroy(new Error('no answer to the upgrade request')));
    outgoing.on('upgrade', (res, socket, upgradeHead) => {
      answered = true;
      socket.setTimeout(idleTimeoutMs);
      socket.on('timeout', () => socket.destroy());
      socket.on('error', () => client.destroy());
      socket.on('close', () => {
        finish();
        client.destroy();
      });
      client.on('close', () => socket.destroy());
      client.write(responseHead(res, rawHeaderList(res)));
      const websocket = String(res.headers.upgrade ?? '').toLowerCase() === 'websocket';
      const toClient = new ChildToClient(socket, client, websocket);
      const unsubscribe = backend.onRetire(() => toClient.close());
      socket.on('close', unsubscribe);
      if (upgradeHead.length > 0) toClient.forward(upgradeHead);
      if (head.length > 0) socket.write(head);
      client.pipe(socket);
    });
    outgoing.on('response', (res) => {
      // Declined: one ordinary response, then the connection ends.
      answered = true;
      res.socket.setTimeout(idleTimeoutMs);
      const kept = forwardResponseHeaders(res.rawHeaders);
      client.write(responseHead(res, [...kept, 'Connection', 'close']));
      res.pipe(client);
      res.on('error', () => client.destroy());
      res.on('close', () => {
        finish();
        client.destroy();
      });
    });
    outgoing.on('close', () => {
      if (!answered) finish();
    });
    outgoing.on('error', (err) => {
      logger.debug({ child: backend.name, err: describeError(err), connected }, 'tunnel error');
      if (answered) return;
      finish();
      if (!connected && !client.destroyed) tryNext();
      else if (!client.destroyed) refuse(client, 502, 0);
    });
    outgoing.end();
  };
  tryNext();
}

/** A response's headers as the child sent them, for a 101 (Upgrade and Connection included). */
function rawHeaderList(res: IncomingMessage): string[] {
  return res.rawHeaders.slice();
}

/**
 * The child-to-client half of a tunnel: piped with backpressure, with the WebSocket frame
 * boundaries followed, so that close() can end it between two frames.
 */
class ChildToClient {
  private readonly frames: FrameBoundaries | undefined;
  private closing = false;
  private closed = false;

  constructor(
    private readonly child: Duplex,
    private readonly client: Duplex,
    websocket: boolean,
  ) {
    this.frames = websocket ? new FrameBoundaries() : undefined;
    child.on('data', (chunk: Buffer) => this.forward(chunk));
    child.on('end', () => client.end());
    client.on('drain', () => child.resume());
  }

  forward(chunk: Buffer): void {
    if (this.closed) return;
    let data = chunk;
    if (this.frames !== undefined) {
      const taken = this.frames.consume(chunk, this.closing);
      data = taken === chunk.length ? chunk : chunk.subarray(0, taken);
    }
    if (data.length > 0 && !this.client.write(data)) this.child.pause();
    if (this.closing && this.frames?.atBoundary === true) this.sendClose();
  }

  /** Ends the tunnel: a 1001 Close between frames for WebSocket, else FIN both ways. */
  close(): void {
    if (this.closing || this.closed) return;
    this.closing = true;
    if (this.frames === undefined) {
      this.closed = true;
      this.client.end();
      this.child.end();
      return;
    }
    if (this.frames.atBoundary) this.sendClose();
  }

  /** From now on the child's bytes are dropped; the client's Close reply still reaches it. */
  private sendClose(): void {
    this.closed = true;
    this.child.resume();
    this.client.write(closeFrame(GOING_AWAY, 'server going away'));
  }
}
