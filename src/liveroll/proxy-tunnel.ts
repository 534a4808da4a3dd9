/**
 * Upgrade requests (WebSocket and others): the request head is rewritten like any other
 * (X-Forwarded-*, hop-by-hop headers) and written to a fresh connection to a child, then bytes
 * flow both ways untouched, so the child's `101 Switching Protocols` (or its refusal) reaches
 * the client as sent. A child that refuses the connection is skipped for the next one: nothing
 * was sent to it.
 */
import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { describeError } from './errors.js';
import { forwardRequestHeaders } from './forward-headers.js';
import type { ReverseProxy } from './proxy.js';
import type { Backend } from './rotation.js';

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

/** The request line and headers, as they go to the child. */
function requestHead(req: IncomingMessage, trust: boolean): string {
  const headers = forwardRequestHeaders(req, { trustForwardHeaders: trust, upgrade: true });
  let head = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${head}\r\n`;
}

/** Connects the client to a child for an upgrade request; handles the server's 'upgrade' event. */
export function tunnelUpgrade(
  proxy: ReverseProxy,
  req: IncomingMessage,
  client: Duplex,
  head: Buffer,
): void {
  const { logger, idleTimeoutMs, trustForwardHeaders } = proxy.options;
  const connectTimeoutMs = proxy.options.connectTimeoutMs ?? 5_000;
  const tried = new Set<Backend>();
  const requestBytes = requestHead(req, trustForwardHeaders);
  let upstream: Socket | undefined;
  client.on('error', () => upstream?.destroy());
  client.on('close', () => upstream?.destroy());
  client.on('timeout', () => client.destroy());

  const tryNext = (): void => {
    const backend = proxy.rotation.pick(tried);
    if (backend === undefined) {
      refuse(client, tried.size === 0 ? 503 : 502, proxy.options.retryAfterSeconds ?? 1);
      return;
    }
    tried.add(backend);
    const finish = backend.begin();
    const { host, port } = backend.address;
    const socket = connect({ host, port });
    upstream = socket;
    let connected = false;
    socket.setTimeout(connectTimeoutMs);
    socket.once('connect', () => {
      connected = true;
      socket.setTimeout(idleTimeoutMs);
      (client as Socket).setTimeout(idleTimeoutMs);
      socket.write(requestBytes);
      if (head.length > 0) socket.write(head);
      socket.pipe(client);
      client.pipe(socket);
    });
    socket.on('timeout', () => socket.destroy(new Error('tunnel timed out')));
    socket.on('error', (err) => {
      logger.debug({ child: backend.name, err: describeError(err), connected }, 'tunnel error');
    });
    socket.on('close', () => {
      finish();
      if (!connected && !client.destroyed) tryNext();
      else client.destroy();
    });
  };
  tryNext();
}
