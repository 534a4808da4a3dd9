/**
 * The main deployment path under a real systemd: PID 1 of a Debian bookworm container (made by
 * debootstrap and `docker import`), with the units of examples/systemd/ installed as the README
 * says: copied to /etc/systemd/system, a system user `app`, `systemctl daemon-reload`.
 *
 * Load runs inside the container, on its loopback, for the whole of each part, and every
 * request is counted: app@1 -> app@2 -> app@3 with every old instance ending `inactive`; a new
 * instance that dies before ready() (its start fails, the owner keeps serving and stays in
 * `pid`); and socket activation through app.socket, then a roll.
 *
 * It needs Docker: the test installs Debian's docker.io and starts dockerd itself when it is
 * root; elsewhere it says why it cannot run and skips.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { docker, buildSystemdImage, systemdRunFlags } from '../../scripts/docker.js';
import { ROOT, dockerOrSkip, startCommand, until, type Child } from '../support/helpers.js';

const TIMEOUT = { timeout: 900_000 };
/** Where the project's runtime files go in the container (the units' /opt/app). */
const APP = '/opt/app';

/** Runs a shell script as root in the container; returns its stdout. */
function inContainer(name: string, script: string): string {
  return docker(['exec', name, 'sh', '-c', script]);
}

/**
 * What a `systemctl` query printed (`is-active app@1`: `active`, `inactive`, `failed`...;
 * `is-system-running`: `starting`, then `running`), whatever its exit status.
 */
function systemctl(name: string, query: string): string {
  try {
    return inContainer(name, `systemctl ${query}`);
  } catch (err) {
    return String((err as { stdout?: string }).stdout ?? '').trim();
  }
}

/** `systemctl is-active` of a unit. */
function state(name: string, unit: string): string {
  return systemctl(name, `is-active ${unit}`);
}

/**
 * Starts load on the container's 127.0.0.1:8080 (the units' port, in the container's own network
 * namespace: nothing on the host uses it); stop it by ending its stdin.
 */
async function startContainerLoad(t: TestContext, name: string): Promise<Child> {
  const load = startCommand(t, 'docker', [
    'exec',
    '-i',
    name,
    'node',
    `${APP}/dist/scripts/load-cli.js`,
    '--port',
    '8080',
  ]);
  await load.line('started', 30_000);
  return load;
}

/** Waits until the load has `more` successes past its latest progress line. */
async function progress(load: Child, more = 50): Promise<void> {
  const progressLines = (): { ok: number }[] =>
    load.lines.filter((l) => l.event === 'progress') as unknown as { ok: number }[];
  const base = progressLines().at(-1)?.ok ?? 0;
  await until(
    () => (progressLines().at(-1)?.ok ?? 0) >= base + more,
    `${more} more requests to succeed`,
    30_000,
  );
}

/** Ends the load and returns its counts. */
async function stopLoad(load: Child): Promise<{
  ok: number;
  failed: number;
  reasons: Record<string, number>;
  bodies: Record<string, number>;
}> {
  load.proc.stdin?.end();
  const result = await load.line('result', 30_000);
  console.log(`load in the container: ${String(result.ok)} ok, ${String(result.failed)} failed`);
  return result as never;
}

/** Distinct server pids in the load's bodies ("hello from <pid>"). */
function servers(bodies: Record<string, number>): string[] {
  return Object.keys(bodies).map((body) => body.replace('hello from ', ''));
}

test(
  'under systemd in Docker: rolls, a failed start and socket activation, 0 failed',
  TIMEOUT,
  async (t) => {
    if (!(await dockerOrSkip(t))) return;
    const image = buildSystemdImage();
    const name = `tableroll-systemd-${process.pid}`;
    docker([
      'run',
      '-d',
      '--name',
      name,
      ...systemdRunFlags,
      '-v',
      `${ROOT}:/mnt/project:ro`,
      image,
      '/sbin/init',
    ]);
    t.after(() => docker(['rm', '-f', name]));
    await until(
      () => /^(running|degraded)$/.test(systemctl(name, 'is-system-running')),
      'systemd to boot',
      60_000,
    );
    // What a user does: the package's files in place, the units copied, a user for the service.
    inContainer(
      name,
      [
        `mkdir -p ${APP}`,
        `cp -a /mnt/project/package.json /mnt/project/dist /mnt/project/build /mnt/project/node_modules ${APP}/`,
        `[ ! -d /mnt/project/prebuilds ] || cp -a /mnt/project/prebuilds ${APP}/`,
        'useradd --system app',
        'cp /mnt/project/examples/systemd/app@.service /mnt/project/examples/systemd/app.socket /etc/systemd/system/',
        'systemctl daemon-reload',
      ].join(' && '),
    );

    await t.test(
      'app@1 -> app@2 -> app@3 under load: each old instance ends inactive',
      async () => {
        inContainer(name, 'systemctl start app@1');
        const load = await startContainerLoad(t, name);
        await progress(load);
        for (const [previous, next] of [
          ['app@1', 'app@2'],
          ['app@2', 'app@3'],
        ] as const) {
          inContainer(name, `systemctl start ${next}`);
          assert.equal(state(name, next), 'active');
          await until(
            () => state(name, previous) !== 'active' && state(name, previous) !== 'deactivating',
            `${previous} to stop`,
            60_000,
          );
          assert.equal(state(name, previous), 'inactive', `${previous} ended inactive, not failed`);
          await progress(load);
        }
        const result = await stopLoad(load);
        assert.equal(result.failed, 0, `failed requests: ${JSON.stringify(result.reasons)}`);
        assert.equal(servers(result.bodies).length, 3, 'three processes served in turn');
        assert.equal(inContainer(name, 'cat /run/app/pid'), '3');
      },
    );

    await t.test(
      'a new instance that dies before ready(): its start fails, app@3 keeps serving',
      async () => {
        // Fault injection for instance 4 only: the test fixture, SIGKILLed by itself once it has
        // received the first descriptor, before ready(). No restart, so the failure stays visible.
        inContainer(
          name,
          [
            'mkdir -p /etc/systemd/system/app@4.service.d',
            `printf '[Service]\\nExecStart=\\nExecStart=/usr/bin/node ${APP}/dist/test/fixtures/upgrader-process.js --dir %%t/app --id %%i --tcp port-8080=8080 --die-at fd-received\\nRestart=no\\n' > /etc/systemd/system/app@4.service.d/die.conf`,
            'systemctl daemon-reload',
          ].join(' && '),
        );
        const load = await startContainerLoad(t, name);
        await progress(load);
        assert.throws(() => inContainer(name, 'systemctl start app@4'), 'the start of app@4 fails');
        assert.equal(state(name, 'app@4'), 'failed');
        assert.equal(state(name, 'app@3'), 'active');
        assert.equal(inContainer(name, 'cat /run/app/pid'), '3', 'app@3 is still the owner');
        await progress(load);
        const result = await stopLoad(load);
        assert.equal(result.failed, 0, `failed requests: ${JSON.stringify(result.reasons)}`);
        assert.equal(servers(result.bodies).length, 1, 'only app@3 served');
        // The next roll still works.
        inContainer(name, 'systemctl reset-failed app@4 && systemctl start app@5');
        await until(() => state(name, 'app@3') === 'inactive', 'app@3 to stop', 60_000);
        inContainer(name, 'systemctl stop app@5');
      },
    );

    await t.test('socket activation through app.socket, then a roll', async () => {
      // As the README says: enable Sockets=app.socket in the service, start the socket.
      inContainer(
        name,
        [
          `sed -i 's/^#Sockets=app.socket/Sockets=app.socket/' /etc/systemd/system/app@.service`,
          'systemctl daemon-reload',
          'systemctl start app.socket',
        ].join(' && '),
      );
      assert.equal(state(name, 'app@1'), 'inactive', 'nothing runs before the first connection');
      const load = await startContainerLoad(t, name);
      await progress(load);
      assert.equal(state(name, 'app@1'), 'active', 'the first connection started app@1');
      inContainer(name, 'systemctl start app@2');
      await until(() => state(name, 'app@1') === 'inactive', 'app@1 to stop', 60_000);
      await progress(load);
      const result = await stopLoad(load);
      assert.equal(result.failed, 0, `failed requests: ${JSON.stringify(result.reasons)}`);
      assert.equal(servers(result.bodies).length, 2);
      assert.equal(state(name, 'app@1'), 'inactive', 'the socket did not start app@1 again');
    });
  },
);
