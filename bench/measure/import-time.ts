/**
 * What the eager-compile pass costs at load: `import('tableroll')` in fresh processes, from the
 * published build and from the plain-tsc copy (bench/lazy-build.ts), alternated.
 */
import path from 'node:path';
import { ROOT, startNode } from '../support/processes.js';
import { summarize, type Summary } from '../support/stats.js';

export interface ImportResult {
  /** Milliseconds for the import, and the heap after it (MiB), per build. */
  published: { importMs: Summary; heapMiB: Summary };
  plainTsc: { importMs: Summary; heapMiB: Summary };
}

async function importOnce(root: string): Promise<{ importMs: number; heapUsed: number }> {
  const child = startNode(path.join(root, 'dist/bench/programs/import-process.js'));
  const line = await child.line('imported', 30_000);
  await child.exited;
  return line as unknown as { importMs: number; heapUsed: number };
}

/** `runs` imports from each build, alternating which goes first. */
export async function measureImport(lazyRoot: string, runs: number): Promise<ImportResult> {
  const samples = { published: [] as number[][], plainTsc: [] as number[][] };
  for (let i = 0; i < runs; i++) {
    const order =
      i % 2 ? (['plainTsc', 'published'] as const) : (['published', 'plainTsc'] as const);
    for (const which of order) {
      const s = await importOnce(which === 'published' ? ROOT : lazyRoot);
      samples[which].push([s.importMs, s.heapUsed / 2 ** 20]);
    }
  }
  const of = (rows: number[][]) => ({
    importMs: summarize(rows.map((r) => r[0]!)),
    heapMiB: summarize(rows.map((r) => r[1]!)),
  });
  return { published: of(samples.published), plainTsc: of(samples.plainTsc) };
}
