/**
 * The native addon against the real kernel, with real sockets, descriptors and processes:
 * Poller, readiness callbacks on Node's own event loop.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, test } from 'node:test';

import { DISCONNECT, READABLE, WRITABLE, native } from '../../src/native.js';
import {
  ADDON,
  TIMEOUT,
  BAD_FD,
  Resources,
  Child,
  nodeChild,
  errnoOf,
  nextEvent,
  afterAPollPhase,
} from '../support/native-kit.js';

describe('Poller', () => {
  test('fires when readable, writable or disconnected', TIMEOUT, async (t) => {
    const res = new Resources(t);
    const { client, server } = res.pair();
    assert.deepEqual(await nextEvent(res, client, WRITABLE), { err: null, events: WRITABLE });
    const readable = nextEvent(res, server, READABLE);
    native.send(client, Buffer.from('x'), -1);
    assert.deepEqual(await readable, { err: null, events: READABLE });
    native.recv(server, Buffer.alloc(1), 0, 1);
    const hangup = nextEvent(res, server, READABLE | DISCONNECT);
    res.close(client);
    assert.deepEqual(await hangup, { err: null, events: READABLE | DISCONNECT });
  });

  test('reports a socket error as a Node-style error', TIMEOUT, async (t) => {
    const res = new Resources(t);
    const { client, server } = res.pair();
    // Closing with unread data resets the peer (ECONNRESET), which epoll reports as EPOLLERR;
    // libuv turns that into UV_EBADF and stops the watcher.
    native.send(server, Buffer.from('unread'), -1);
    res.close(client);
    const { err, events } = await nextEvent(res, server, WRITABLE);
    assert.equal(events, 0);
    assert.ok(err instanceof Error);
    assert.deepEqual(
      { ...err, message: err.message },
      { code: 'EBADF', errno: errnoOf('EBADF'), syscall: 'uv_poll', message: 'uv_poll EBADF' },
    );
    assert.throws(() => native.recv(server, Buffer.alloc(8), 0, 8), {
      code: 'ECONNRESET',
      syscall: 'recvmsg',
    });
  });

  test('stop, start again and change the mask', TIMEOUT, async (t) => {
    const res = new Resources(t);
    const { client, server } = res.pair();
    const seen: number[] = [];
    let wake = () => {};
    const poller = res.poller(server, (_err, events) => {
      seen.push(events);
      poller.stop();
      wake();
    });
    const nextCall = () => new Promise<void>((resolve) => (wake = resolve));

    poller.start(READABLE);
    poller.stop();
    native.send(client, Buffer.from('x'), -1);
    await afterAPollPhase();
    assert.deepEqual(seen, []);

    let call = nextCall();
    poller.start(READABLE);
    await call;
    assert.deepEqual(seen, [READABLE]);

    // start() replaces the mask: data is still waiting, but only writability is asked for.
    call = nextCall();
    poller.start(READABLE);
    poller.start(WRITABLE);
    await call;
    assert.deepEqual(seen, [READABLE, WRITABLE]);
  });

  test(
    'close is idempotent, silences the callback and makes other methods throw',
    TIMEOUT,
    async (t) => {
      const res = new Resources(t);
      const { client, server } = res.pair();
      let calls = 0;
      const poller = res.poller(client, () => calls++);
      poller.start(WRITABLE);
      poller.close();
      poller.close();
      await afterAPollPhase();
      assert.equal(calls, 0);
      const closed = { code: 'ERR_INVALID_STATE', message: /the Poller is closed/ };
      assert.throws(() => poller.start(WRITABLE), closed);
      assert.throws(() => poller.stop(), closed);
      assert.throws(() => poller.ref(), closed);
      assert.throws(() => poller.unref(), closed);

      // Closed from inside its own callback while the fd stays writable.
      let inside = 0;
      const selfClosing = res.poller(server, () => {
        inside++;
        selfClosing.close();
      });
      selfClosing.start(WRITABLE);
      while (inside === 0) await afterAPollPhase();
      await afterAPollPhase();
      assert.equal(inside, 1);
    },
  );

  test('refuses what libuv cannot watch, and an fd closed under it', TIMEOUT, (t) => {
    const res = new Resources(t);
    const { client } = res.pair();
    const file = res.fd(fs.openSync(res.path('plain'), 'w'));
    const noop = () => {};
    assert.throws(() => new native.Poller(file, noop), { code: 'EPERM', syscall: 'uv_poll_init' });
    assert.throws(() => new native.Poller(BAD_FD, noop), {
      code: 'EBADF',
      syscall: 'uv_poll_init',
    });
    assert.throws(() => Reflect.apply(native.Poller, undefined, [client, noop]), TypeError);

    // libuv allows one active watcher per fd.
    const first = res.poller(client, noop);
    first.start(READABLE);
    assert.throws(() => new native.Poller(client, noop), { code: 'EEXIST' });
    first.stop();
    res.poller(client, noop).close();

    assert.throws(() => first.start(0), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => first.start(8), { code: 'ERR_OUT_OF_RANGE' });
    // libuv would abort the process on epoll_ctl's EBADF: start() must throw instead.
    const copy = res.fd(native.dup(client));
    const orphan = res.poller(copy, noop);
    res.close(copy);
    assert.throws(() => orphan.start(READABLE), { code: 'EBADF', syscall: 'uv_poll_start' });
  });

  test('promise reactions run after each callback, before the next one', TIMEOUT, async (t) => {
    const res = new Resources(t);
    const { client, server } = res.pair();
    const order: string[] = [];
    await new Promise<void>((resolve) => {
      let pending = 2;
      for (const fd of [client, server]) {
        const poller = res.poller(fd, () => {
          poller.close();
          order.push('callback');
          void Promise.resolve().then(() => {
            order.push('microtask');
            if (--pending === 0) resolve();
          });
        });
        poller.start(WRITABLE);
      }
    });
    assert.deepEqual(order, ['callback', 'microtask', 'callback', 'microtask']);
  });

  test(
    'an exception in the callback is an uncaught exception, and leaves no residue',
    TIMEOUT,
    async (t) => {
      const res = new Resources(t);
      const script = `
      const a = require(process.argv[1]);
      const listener = a.unixListen(process.argv[2], 1);
      const fd = a.unixConnect(process.argv[2]);
      const poller = new a.Poller(fd, () => { throw new Error('boom'); });
      process.on('uncaughtException', (err) => {
        poller.close();
        a.close(fd); // would rethrow 'boom' if the exception were left pending in the addon
        a.close(listener);
        console.log('caught ' + err.message);
      });
      poller.start(2);`;
      const child = nodeChild(t, script, res.path('throw.sock'));
      assert.equal(await child.line(), 'caught boom');
      assert.equal((await child.exited).code, 0, child.stderr);
    },
  );

  test('unref lets the process exit while watching; ref keeps it alive', TIMEOUT, async (t) => {
    const res = new Resources(t);
    const script = `
      const a = require(process.argv[1]);
      const fd = a.unixListen(process.argv[2], 1);
      const poller = new a.Poller(fd, () => {
        console.log('event');
        poller.close();
        a.close(a.accept(fd));
        a.close(fd);
      });
      poller.start(1);
      poller.unref();
      if (process.argv[3] === 'ref') poller.ref();
      console.log('watching');`;

    const unrefd = nodeChild(t, script, res.path('unref.sock'), 'unref');
    assert.equal(await unrefd.line(), 'watching');
    assert.deepEqual(await unrefd.exited, { code: 0, signal: null });

    const refd = nodeChild(t, script, res.path('ref.sock'), 'ref');
    assert.equal(await refd.line(), 'watching');
    res.fd(native.unixConnect(res.path('ref.sock')));
    assert.equal(await refd.line(), 'event');
    assert.deepEqual(await refd.exited, { code: 0, signal: null });
  });

  test(
    'garbage collection and worker teardown with live Pollers do not crash',
    TIMEOUT,
    async (t) => {
      const res = new Resources(t);
      const script = `
      const a = require(process.argv[1]);
      const { Worker } = require('worker_threads');
      const socketPath = process.argv[2];
      const listener = a.unixListen(socketPath, 8);
      const total = 1000;
      let collected = 0;
      const registry = new FinalizationRegistry(() => collected++);
      for (let i = 0; i < total; i++) {
        const poller = new a.Poller(listener, () => {});
        if (i % 2 === 0) { poller.start(1); poller.stop(); }
        registry.register(poller, i);
      }
      // Started and dropped: pinned while active, so it must survive collection.
      let active = new a.Poller(a.dup(listener), () => {});
      active.start(1);
      active.unref();
      const pinned = new WeakRef(active);
      active = null;
      const collect = async () => {
        for (let i = 0; i < 20; i++) { gc(); await new Promise((r) => setImmediate(r)); }
      };
      const worker = async (body) => {
        const w = new Worker(
          'const a = require(' + JSON.stringify(process.argv[1]) + ');' +
          'const { parentPort, workerData } = require("worker_threads");' +
          'const p = new a.Poller(a.unixConnect(workerData), () => {});' + body,
          { eval: true, workerData: socketPath });
        return w;
      };
      (async () => {
        await collect();
        console.log('collected ' + collected + ' pinned ' + (pinned.deref() !== undefined));
        pinned.deref().close();
        // A worker stopped mid-watch, and one that ends with an unref'd watch still active.
        const busy = await worker('p.start(2); parentPort.postMessage("watching");');
        await new Promise((r) => busy.once('message', r));
        await busy.terminate();
        const idle = await worker('p.start(1); p.unref();');
        const [code] = await require('events').once(idle, 'exit');
        await collect();
        console.log('workers ' + code);
      })();`;
      const child = new Child(t, process.execPath, [
        '--expose-gc',
        '-e',
        script,
        ADDON,
        res.path('gc.sock'),
      ]);
      assert.equal(await child.line(), 'collected 1000 pinned true');
      assert.equal(await child.line(), 'workers 0');
      assert.deepEqual(await child.exited, { code: 0, signal: null }, child.stderr);
    },
  );
});

/** Keeps the process alive until the test ends: a Deadline's timer alone does not. */
