/**
 * Defaults for the coordination directory and the instance id, taken from systemd when liveroll
 * runs as a service. A template unit `app@.service` with `RuntimeDirectory=app` and
 * `RuntimeDirectoryPreserve=yes` gives every instance (`app@1`, `app@2`, ...) the same
 * directory, and each instance its own id (its unit name), which is what a takeover needs.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runtimeDirectory } from '../coordination/runtime-directory.js';

/** The environment variables this module reads. */
export interface SystemdEnvironment {
  RUNTIME_DIRECTORY?: string | undefined;
  INVOCATION_ID?: string | undefined;
  XDG_RUNTIME_DIR?: string | undefined;
}

/**
 * The coordination directory to use when `--coordination-dir` is not given: systemd's
 * RuntimeDirectory (the first one listed), else `liveroll-<port>` in the user's private runtime
 * directory (`$XDG_RUNTIME_DIR`, `/run/user/<uid>`, `/run` for root, else `~/.local/state`),
 * never a predictable name in the shared temp directory. The port keeps unrelated liveroll
 * services apart.
 */
export function defaultCoordinationDir(port: number, env: SystemdEnvironment): string {
  const runtime = env.RUNTIME_DIRECTORY?.split(':')[0];
  if (runtime) return runtime;
  return join(runtimeDirectory({ XDG_RUNTIME_DIR: env.XDG_RUNTIME_DIR }), `liveroll-${port}`);
}

/**
 * The unit this process runs in (`app@2.service`), read from its cgroup path; undefined when not
 * started by systemd as a service.
 */
export function currentUnitName(
  env: SystemdEnvironment,
  cgroupFile = '/proc/self/cgroup',
): string | undefined {
  if (!env.INVOCATION_ID) return undefined;
  let text: string;
  try {
    text = readFileSync(cgroupFile, 'utf8');
  } catch {
    return undefined;
  }
  return unitFromCgroup(text);
}

/** The innermost `.service` component of a /proc/<pid>/cgroup listing (v1 or v2). */
export function unitFromCgroup(text: string): string | undefined {
  for (const line of text.split('\n')) {
    const path = line.split(':').slice(2).join(':');
    const unit = path
      .split('/')
      .reverse()
      .find((part) => part.endsWith('.service'));
    if (unit !== undefined) return unit;
  }
  return undefined;
}

/** The instance id to use when `--instance-id` is not given: the systemd unit, else the pid. */
export function defaultInstanceId(env: SystemdEnvironment): string {
  return currentUnitName(env) ?? `pid-${process.pid}`;
}

/** Variables that address liveroll itself as a systemd service, not the programs it runs. */
const serviceVariables = [
  'NOTIFY_SOCKET',
  'LISTEN_FDS',
  'LISTEN_PID',
  'LISTEN_FDNAMES',
  'WATCHDOG_USEC',
  'WATCHDOG_PID',
];

/**
 * The environment for commands and children: liveroll's own, minus the variables by which
 * systemd talks to liveroll, so a child cannot report READY=1 or take the sockets in its place.
 */
export function childEnvironment(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const copy = { ...env };
  for (const name of serviceVariables) delete copy[name];
  return copy;
}
