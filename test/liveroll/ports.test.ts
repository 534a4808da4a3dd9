/**
 * Child port slots on real sockets: free ports come from below the kernel's range for outgoing
 * connections, a held port is passed over, two slots means two children at most.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { test } from 'node:test';
import { LiverollErrorCodes } from '../../src/liveroll/errors.js';
import { ChildPorts, pickFreePort, portBusyReason } from '../../src/liveroll/supervisor/ports.js';

const TIMEOUT = { timeout: 10_000 };

test(
  'a free port is outside the range outgoing connections use, and really free',
  TIMEOUT,
  async () => {
    const low = Number(
      readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0],
    );
    const port = await pickFreePort();
    assert.ok(port >= 10_000 && port < low, `port ${port}`);
    const server = createServer().listen(port, '127.0.0.1');
    await once(server, 'listening');
    assert.equal(await portBusyReason(port), 'EADDRINUSE', 'a loopback listener makes it busy');
    server.close();
    await once(server, 'close');
  },
);

test(
  'slots: two children at most, a held fixed port is passed over, release frees a slot',
  TIMEOUT,
  async () => {
    const holder = createServer().listen(0, '127.0.0.1');
    await once(holder, 'listening');
    const held = (holder.address() as AddressInfo).port;
    try {
      const ports = new ChildPorts([held, 0]);
      const first = await ports.acquire();
      assert.equal(first.slot, 1);
      assert.deepEqual(first.skipped, [`port ${held} is not free (EADDRINUSE)`]);
      await assert.rejects(ports.acquire(), { code: LiverollErrorCodes.NO_FREE_PORT });
      ports.release(first);
      assert.equal((await ports.acquire()).slot, 1);

      const both = new ChildPorts([0, 0]);
      const a = await both.acquire();
      const b = await both.acquire();
      assert.notEqual(a.port, b.port);
      await assert.rejects(both.acquire(), /slot 1 is used by a child; slot 2 is used by a child/);
    } finally {
      holder.close();
    }
  },
);
