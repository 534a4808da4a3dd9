/**
 * The C relay of the HTTP fronts benchmark (bench/programs/c-relay.c), compiled with the
 * machine's C compiler into the run's temp dir: a floor under every front, to tell what the
 * kernel's loopback TCP costs from what a proxy adds to it.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { hasCommand } from '../../scripts/node-lines.js';
import { ROOT } from './processes.js';

/** The relay's binary in `dir`, or why it could not be built. */
export function buildCRelay(dir: string): { binary: string } | { skipped: string } {
  if (!hasCommand('cc')) return { skipped: 'no C compiler (cc) on PATH' };
  const binary = path.join(dir, 'c-relay');
  try {
    execFileSync('cc', ['-O2', '-o', binary, path.join(ROOT, 'bench/programs/c-relay.c')], {
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 60_000,
    });
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim();
    return { skipped: `cc failed: ${stderr.split('\n')[0] || (err as Error).message}` };
  }
  return { binary };
}
