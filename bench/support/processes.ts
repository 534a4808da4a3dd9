/**
 * Processes a benchmark starts: JSON-line children (scripts/child.ts) that are all killed when
 * the run ends, however it ends, together with the process groups they reported (liveroll's
 * children run in their own groups and print their pids as `childPid`).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Child } from '../../scripts/child.js';

/** The repository root (this file runs from dist/bench/support). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

const started = new Set<Child>();
const tempDirs = new Set<string>();

function killEverything(): void {
  for (const child of started) {
    for (const line of child.lines) {
      if (typeof line.childPid === 'number' && line.childPid > 0) signalGroup(line.childPid);
    }
    if (child.alive) child.proc.kill('SIGKILL');
  }
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
}

function signalGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

process.once('exit', killEverything);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => process.exit(130));
}

/** Starts `node <script> ...args`, killed at the latest when this process exits. */
export function startNode(
  script: string,
  args: string[] = [],
  options: { execArgv?: string[]; env?: NodeJS.ProcessEnv } = {},
): Child {
  const child = new Child(process.execPath, [...(options.execArgv ?? []), script, ...args], {
    env: options.env,
  });
  started.add(child);
  return child;
}

/** Starts any executable (a peer of another implementation), stopped at exit like the others. */
export function startProgram(program: string, args: string[] = []): Child {
  const child = new Child(program, args);
  started.add(child);
  return child;
}

/** A fresh short temp directory (unix socket paths are limited), removed at exit. */
export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/** Removes a directory from tempDir now. */
export function removeTempDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

/** Sends SIGTERM, then SIGKILL if the process has not exited within `graceMs`. */
export async function stopProcess(child: Child, graceMs = 10_000): Promise<void> {
  if (!child.alive) return;
  child.proc.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), graceMs);
  });
  const outcome = await Promise.race([child.exited, late]);
  clearTimeout(timer);
  if (outcome === 'late') await child.kill('SIGKILL');
}

/** Resolves after `ms` (pacing a benchmark, never waiting for something to happen). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
