/**
 * Requests with `Expect: 100-continue`: the child decides whether it wants the body. Node's
 * server would answer `100 Continue` itself, and liveroll's pooled client drops the header, so
 * these few requests go through Node's HTTP client on a connection of their own:
 *
 * - the child answers `100 Continue`: liveroll passes it on, then streams the body;
 * - the child answers with a final status (417, 401, 413, ...) first: that response goes to the
 *   client with `Connection: close`, and the body the client was holding back is never read.
 *
 * Nothing is retried: the child may have acted on the headers alone.
 */
import { request, type IncomingMessage, type ServerResponse } from 'node:http';
import { describeError } from '../errors.js';
import { forwardRequestHeaders, forwardResponseHeaders } from './forward-headers.js';
import type { ProxyContext } from './context.js';

/** Forwards one `Expect: 100-continue` request (the server's 'checkContinue' event). */
export function forwardExpectContinue(
  proxy: ProxyContext,
  req: IncomingMessage,
  res: ServerResponse,
): void {
  const { logger, trustForwardHeaders, idleTimeoutMs } = proxy.options;
  const backend = proxy.rotation.pick();
  if (backend === undefined) {
    res.shouldKeepAlive = false;
    return proxy.reject(res, 503, 'no healthy child');
  }
  const finish = backend.begin();
  const headers = forwardRequestHeaders(req, { trustForwardHeaders, upgrade: false });
  headers.push('expect', '100-continue');
  let continued = false;
  const outgoing = request({
    host: backend.address.host,
    port: backend.address.port,
    method: req.method,
    path: req.url,
    headers,
    agent: false,
    timeout: proxy.options.headersTimeoutMs || undefined,
  });
  outgoing.on('continue', () => {
    continued = true;
    res.writeContinue();
    req.pipe(outgoing);
  });
  outgoing.on('response', (answer) => {
    outgoing.setTimeout(idleTimeoutMs);
    if (!continued) {
      // A final answer without 100: the body stays with the client; this connection ends.
      res.shouldKeepAlive = false;
      outgoing.end();
    }
    const status = answer.statusCode ?? 502;
    const kept = forwardResponseHeaders(answer.rawHeaders);
    res.writeHead(status, answer.statusMessage, kept);
    answer.pipe(res);
    answer.on('error', () => res.destroy());
  });
  outgoing.on('timeout', () => outgoing.destroy(new Error('the child did not answer in time')));
  outgoing.on('error', (err) => {
    logger.debug({ child: backend.name, err: describeError(err) }, 'expect-continue error');
    if (res.headersSent) res.destroy();
    else {
      res.shouldKeepAlive = false;
      proxy.reject(res, 502, 'the child did not answer');
    }
  });
  req.on('error', () => outgoing.destroy());
  res.on('close', () => {
    finish();
    if (!res.writableFinished) outgoing.destroy();
  });
  outgoing.flushHeaders();
}
