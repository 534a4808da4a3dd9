/**
 * A ReverseProxy listening on an ephemeral loopback port, closed when the test ends, a port
 * nobody listens on, and a raw client: what the proxy tests start from.
 */
import { once } from 'node:events';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { TestContext } from 'node:test';
import { ReverseProxy, type ProxyOptions } from '../../src/liveroll/proxy/proxy.js';
import { silentLogger } from '../../src/liveroll/logger.js';

/**
 * Whether proxies start with the native lane unless a test says otherwise. The proxy's own
 * default is on; here it is off, so that the proxy's test files cover the JavaScript lanes, and
 * native-lane.test.ts runs the same files again with it on.
 */
let nativeLaneByDefault = false;
export function useNativeLane(on: boolean): void {
  nativeLaneByDefault = on;
}

export async function startProxy(
  t: TestContext,
  options: Partial<ProxyOptions> = {},
): Promise<{ proxy: ReverseProxy; port: number }> {
  const proxy = new ReverseProxy({
    nativeLane: nativeLaneByDefault,
    headersTimeoutMs: 10_000,
    idleTimeoutMs: 10_000,
    trustForwardHeaders: false,
    logger: silentLogger(),
    ...options,
  });
  proxy.server.listen(0, '127.0.0.1');
  await once(proxy.server, 'listening');
  t.after(async () => {
    proxy.lane?.destroyAll();
    proxy.native?.destroyAll();
    proxy.server.closeAllConnections();
    proxy.server.close();
    await proxy.close();
  });
  return { proxy, port: (proxy.server.address() as AddressInfo).port };
}

/**
 * A child on an ephemeral loopback port serving `handler`, closed when the test ends; `setup`
 * may add listeners before it listens. Returns its port.
 */
export async function startChild(
  t: TestContext,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  setup?: (server: HttpServer) => void,
): Promise<number> {
  const app = createHttpServer(handler);
  setup?.(app);
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  t.after(() => {
    app.closeAllConnections();
    app.close();
  });
  return (app.address() as AddressInfo).port;
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

/**
 * Everything a raw client connection receives until the proxy closes it; `onData` sees what
 * arrived so far after each chunk, and may write more.
 */
export async function rawExchange(
  port: number,
  bytes: string,
  onData: (received: string, client: Socket) => void = () => {},
): Promise<string> {
  const client = connect(port, '127.0.0.1');
  let received = '';
  client.setEncoding('utf8').on('data', (chunk: string) => {
    received += chunk;
    onData(received, client);
  });
  // A reset after the answer is fine: what matters is what arrived.
  const closed = new Promise((resolve) => client.on('close', resolve));
  client.on('error', () => {});
  client.write(bytes);
  await closed;
  return received;
}
