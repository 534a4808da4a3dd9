/**
 * The shape of src/, read from the TypeScript sources: no import circle (type imports count:
 * they tie the modules together for a reader all the same), no file over 350 lines, the core
 * never imports liveroll, and liveroll reaches the core only through its public entry point (and
 * the one helper it shares with it).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from '../support/helpers.js';

const SRC = path.join(ROOT, 'src');
const MAX_LINES = 350;
/** The core modules liveroll may import directly. */
const LIVEROLL_MAY_IMPORT = ['index.ts', 'coordination/runtime-directory.ts'];

/** Every module of src/ (relative path) with the modules of src/ it imports. */
function importGraph(): Map<string, string[]> {
  const files = fs
    .readdirSync(SRC, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .sort();
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const text = fs.readFileSync(path.join(SRC, file), 'utf8');
    const specifiers = [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map(
      (m) => m[1]!,
    );
    const targets = specifiers.map((spec) =>
      path.normalize(path.join(path.dirname(file), spec)).replace(/\.js$/, '.ts'),
    );
    graph.set(file, targets);
  }
  return graph;
}

/** One circle of the graph, as a list of modules, or null when there is none. */
function findCircle(graph: Map<string, string[]>): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const trail: string[] = [];
  const visit = (file: string): string[] | null => {
    if (state.get(file) === 'done') return null;
    if (state.get(file) === 'open') return [...trail.slice(trail.indexOf(file)), file];
    state.set(file, 'open');
    trail.push(file);
    for (const next of graph.get(file) ?? []) {
      const circle = visit(next);
      if (circle) return circle;
    }
    trail.pop();
    state.set(file, 'done');
    return null;
  };
  for (const file of graph.keys()) {
    const circle = visit(file);
    if (circle) return circle;
  }
  return null;
}

describe('the structure of src/', () => {
  const graph = importGraph();

  it('reads every module and resolves every relative import to a file', () => {
    assert.ok(graph.size > 40, `${graph.size} modules found under ${SRC}`);
    for (const [file, targets] of graph) {
      for (const target of targets) {
        assert.ok(graph.has(target), `${file} imports ${target}, which is not a module of src/`);
      }
    }
  });

  it('has no import circle', () => {
    const circle = findCircle(graph);
    assert.equal(circle, null, `circle: ${circle?.join(' -> ')}`);
  });

  it('finds a circle when there is one (the check itself)', () => {
    const looped = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts']],
    ]);
    assert.deepEqual(findCircle(looped), ['a.ts', 'b.ts', 'c.ts', 'a.ts']);
  });

  it(`has no file over ${MAX_LINES} lines`, () => {
    const long = [...graph.keys()]
      .map((file) => ({
        file,
        lines: fs.readFileSync(path.join(SRC, file), 'utf8').split('\n').length - 1,
      }))
      .filter(({ lines }) => lines > MAX_LINES);
    assert.deepEqual(long, []);
  });

  it('keeps the core free of liveroll, and liveroll on the public entry point', () => {
    for (const [file, targets] of graph) {
      const inLiveroll = file.startsWith('liveroll/');
      for (const target of targets) {
        if (!inLiveroll) {
          assert.ok(!target.startsWith('liveroll/'), `the core module ${file} imports ${target}`);
        } else if (!target.startsWith('liveroll/')) {
          assert.ok(LIVEROLL_MAY_IMPORT.includes(target), `${file} imports the core's ${target}`);
        }
      }
    }
  });
});
