/**
 * A ReverseProxy listening on an ephemeral loopback port, closed when the test ends, and a port
 * nobody listens on: what the proxy tests start from.
 */
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { ReverseProxy, type ProxyOptions } from '../../src/liveroll/proxy/proxy.js';
import { silentLogger } from '../../src/liveroll/logger.js';

export async function startProxy(
  t: TestContext,
  options: Partial<ProxyOptions> = {},
): Promise<{ proxy: ReverseProxy; port: number }> {
  const proxy = new ReverseProxy({
    headersTimeoutMs: 10_000,
    idleTimeoutMs: 10_000,
    trustForwardHeaders: false,
    logger: silentLogger(),
    ...options,
  });
  proxy.server.listen(0, '127.0.0.1');
  await once(proxy.server, 'listening');
  t.after(async () => {
    proxy.server.closeAllConnections();
    proxy.server.close();
    await proxy.close();
  });
  return { proxy, port: (proxy.server.address() as AddressInfo).port };
}

/** A port nobody listens on (bound, then closed). */
export async function deadPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  server.close();
  await once(server, 'close');
  return port;
}
