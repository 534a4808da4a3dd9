/**
 * The native addon against the real kernel, with real sockets, descriptors and processes:
 * no descriptor leaks over many handoffs and Pollers.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { READABLE, native } from '../../src/native.js';
import { TIMEOUT, Resources, openFdCount, afterAPollPhase } from '../support/native-kit.js';

test('no descriptor leaks over 200 handoffs and 200 Pollers', TIMEOUT, async (t) => {
  const res = new Resources(t);
  const socketPath = res.path('leak.sock');
  const listener = res.fd(native.unixListen(socketPath, 8));
  const buf = Buffer.alloc(8);
  const before = openFdCount();
  for (let i = 0; i < 200; i++) {
    const client = native.unixConnect(socketPath);
    const server = native.accept(listener);
    assert.equal(native.send(client, Buffer.from('x'), client), 1);
    const { fds } = native.recv(server, buf, 0, buf.length)!;
    assert.equal(fds.length, 1);
    for (const fd of [...fds, server, client]) native.close(fd);
  }
  for (let i = 0; i < 200; i++) {
    const poller = new native.Poller(listener, () => {});
    poller.start(READABLE);
    poller.close();
  }
  await afterAPollPhase();
  assert.equal(openFdCount(), before);
});
