/**
 * liveroll rolling real Docker containers, its headline use: `--exec "docker run --rm --init -p
 * 127.0.0.1:<<PORT>>:8080 IMAGE"` and `--id` reading the image id. The image is built with
 * `docker import` from this machine's `node` and a small server (no registry can be reached).
 * Under load with every request counted: a roll when the tag moves to a new image, a SIGHUP,
 * then SIGTERM, after which no container is left.
 *
 * It needs Docker: the test installs Debian's docker.io and starts dockerd itself when it is
 * root; elsewhere it says why it cannot run and skips.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildNodeImage, docker, dockerAsync, imageId } from '../../scripts/docker.js';
import { dockerOrSkip } from '../support/helpers.js';
import {
  baseFlags,
  msg,
  startLiveroll,
  startMixedLoad,
  loadProgress,
  tempDir,
  until,
} from '../support/liveroll-harness.js';

const TIMEOUT = { timeout: 300_000 };

/**
 * The containers' server: answers `{"name": <version>}`, 200 on /healthz, and on SIGTERM
 * stops accepting, finishes its requests and exits (liveroll has drained it already). Port 8080
 * is inside each container's own network namespace, so containers never collide; on the host
 * each is published on 127.0.0.1 at the free port liveroll picked (`-p 127.0.0.1:<<PORT>>:8080`).
 */
const SERVER = `
const http = require('node:http');
const fs = require('node:fs');
const name = fs.readFileSync('/app/version', 'utf8').trim();
const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ name, pid: process.pid }));
});
server.listen(8080, '0.0.0.0');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`;

function image(repository: string, tag: string, version: string): string {
  return buildNodeImage(
    repository,
    { '/app/server.js': SERVER, '/app/version': version },
    ['node', '/app/server.js'],
    tag,
  );
}

/**
 * Containers with `label`: running ones, or with `all`, stopped ones not yet removed too. Asked
 * without blocking, so the load loops that share this process keep running.
 */
async function containers(label: string, all = true): Promise<string[]> {
  const out = await dockerAsync(['ps', ...(all ? ['-a'] : []), '-q', '--filter', `label=${label}`]);
  return out.split('\n').filter((line) => line !== '');
}

/** Waits for no container with `label` to be left; on timeout, says what docker still shows. */
async function untilNoContainer(label: string, what: string, timeoutMs: number): Promise<void> {
  try {
    await until(async () => (await containers(label)).length === 0, what, timeoutMs);
  } catch (err) {
    const left = docker([
      'ps',
      '-a',
      '--filter',
      `label=${label}`,
      '--format',
      '{{.ID}} {{.Status}} {{.State}}',
    ]);
    throw new Error(`${(err as Error).message}; docker ps -a: ${left.trim() || 'nothing'}`, {
      cause: err,
    });
  }
}

test(
  'liveroll rolls docker run containers under load: tag move, SIGHUP, SIGTERM; 0 failed, none left',
  TIMEOUT,
  async (t) => {
    if (!(await dockerOrSkip(t))) return;
    const repository = 'tableroll-test-app';
    const tag = `t${process.pid}`;
    const name = image(repository, tag, 'v1');
    // v2 is built before the load starts: building copies and hashes the node binary and
    // tars a root, synchronously, which would stop the load loops in this process for seconds
    // (on a busy machine, past their 10 s request timeout).
    const next = image(repository, `${tag}-next`, 'v2');
    const nextId = imageId(next);
    const label = `tableroll-test=${process.pid}-${Date.now()}`;
    t.after(async () => {
      for (const id of await containers(label)) docker(['rm', '-f', id]);
      docker(['image', 'rm', '-f', name, next]);
    });
    const dir = tempDir(t);
    const run = await startLiveroll(t, [
      ...baseFlags(join(dir, 'coord')),
      '--interval',
      '300ms',
      '--health-timeout',
      '30s',
      '--stop-timeout',
      '10s',
      '--id',
      `docker image inspect --format '{{.Id}}' ${name}`,
      '--exec',
      `exec docker run --rm --init --label ${label} -p 127.0.0.1:<<PORT>>:8080 ${name}`,
    ]);
    assert.equal(run.matching(msg('artifact id'))[0]?.id, imageId(name));
    const traffic = startMixedLoad(run.port, { concurrency: 2, maxMs: 240_000 });
    const progress = (what: string): Promise<void> => loadProgress(traffic, what, 30, 60_000);
    await progress('load on v1');

    // The tag moves to the new image; the interval tick sees the new id and rolls.
    await dockerAsync(['tag', next, name]);
    await run.waitFor(msg('update complete', { id: nextId }), 'the roll to v2', 90_000);
    await progress('load on v2');
    run.signal('SIGHUP');
    await run.waitFor(msg('update complete'), 'the SIGHUP roll', 90_000, 2);
    await progress('load after the SIGHUP roll');
    // --rm removes an old container a moment after it stopped: wait for that.
    await until(
      async () => (await containers(label)).length === 1,
      'one container left after the rolls',
      30_000,
    );
    assert.equal((await containers(label, false)).length, 1, 'one container runs');

    const results = await traffic.stop();
    run.signal('SIGTERM');
    assert.equal((await run.waitExit(60_000)).code, 0);
    for (const result of results) {
      assert.deepEqual(result.failures, [], 'no request failed');
      assert.equal(result.names[0], 'v1');
      assert.equal(result.names.at(-1), 'v2');
    }
    console.log(`requests through liveroll: ${results.map((r) => r.ok).join(' + ')} ok, 0 failed`);
    await untilNoContainer(label, 'every container to be removed', 30_000);
  },
);

test('a SIGKILLed liveroll leaves no container running', TIMEOUT, async (t) => {
  if (!(await dockerOrSkip(t))) return;
  const name = image('tableroll-test-app', `k${process.pid}`, 'v1');
  const label = `tableroll-test=${process.pid}-${Date.now()}`;
  t.after(async () => {
    for (const id of await containers(label)) docker(['rm', '-f', id]);
    docker(['image', 'rm', '-f', name]);
  });
  const run = await startLiveroll(t, [
    ...baseFlags(join(tempDir(t), 'coord')),
    '--health-timeout',
    '30s',
    '--id',
    `docker image inspect --format '{{.Id}}' ${name}`,
    '--exec',
    `exec docker run --rm --init --label ${label} -p 127.0.0.1:<<PORT>>:8080 ${name}`,
  ]);
  assert.equal((await containers(label, false)).length, 1);
  run.signal('SIGKILL');
  await run.waitExit();
  // The watcher in the child's group sends SIGTERM to `docker run`, which passes it on to the
  // container; --rm then removes it.
  await untilNoContainer(label, 'the container to be gone', 30_000);
});
