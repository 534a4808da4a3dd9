/**
 * Where a coordination directory belongs when the user names none: a directory that only this
 * user can write to, never a predictable name in a shared temp directory (there another user
 * can create the name first and keep the service from starting, or plant files in it).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The environment variables read. */
export interface RuntimeEnvironment {
  RUNTIME_DIRECTORY?: string | undefined;
  XDG_RUNTIME_DIR?: string | undefined;
}

/**
 * A private per-user base directory for coordination directories: systemd's
 * `$RUNTIME_DIRECTORY` (the first listed) when the unit has one, else `$XDG_RUNTIME_DIR`, else
 * `/run/user/<uid>` when it exists and is ours, else `/run` for root, else
 * `~/.local/state` (made 0700 by `Upgrader.create` as needed). Append a name of your own.
 */
export function runtimeDirectory(env: RuntimeEnvironment = process.env): string {
  const service = env.RUNTIME_DIRECTORY?.split(':')[0];
  if (service) return service;
  if (env.XDG_RUNTIME_DIR) return env.XDG_RUNTIME_DIR;
  const uid = process.getuid?.() ?? 0;
  const session = `/run/user/${uid}`;
  if (isOwnDirectory(session, uid)) return session;
  if (uid === 0) return '/run';
  return path.join(os.homedir(), '.local', 'state');
}

function isOwnDirectory(dir: string, uid: number): boolean {
  try {
    const stat = fs.statSync(dir);
    return stat.isDirectory() && stat.uid === uid;
  } catch {
    return false;
  }
}
