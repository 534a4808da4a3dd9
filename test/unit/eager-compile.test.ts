/**
 * The build's eager-compile pass (scripts/build.js): in a newcomer's handoff, V8 must not compile
 * any of the core modules' functions or methods on first call, only what the pass cannot rewrite
 * (class constructors, and arrow functions that use `this`). Read from V8's own function-event
 * log of a real newcomer taking over from a real owner.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { FIXTURES, startCommand, startFixture, tempDir } from '../support/helpers.js';

type Compiled = { file: string; kind: string; name: string; usesThis: boolean };

/**
 * The functions of the core's modules (any .js under dist/src/, in any folder but liveroll/) that V8
 * compiled lazily, on first call.
 */
function lazilyCompiled(logFile: string): Compiled[] {
  const lines = fs.readFileSync(logFile, 'utf8').split('\n');
  const scripts = new Map<string, string>();
  for (const line of lines) {
    const [event, id, url] = line.split(',');
    if (event === 'script-details' && id && url) scripts.set(id, url);
  }
  const parsed = new Map<string, ts.SourceFile>();
  const found: Compiled[] = [];
  for (const line of lines) {
    // function,parse-function,<script>,<start>,<end>,<ms>,<time>,<name>
    const [kind, event, id, start, , , , ...name] = line.split(',');
    if (kind !== 'function' || event !== 'parse-function') continue;
    const url = scripts.get(id ?? '') ?? '';
    if (!/^file:.*\/dist\/src\/.+\.js$/.test(url) || /\/dist\/src\/liveroll\//.test(url)) continue;
    const file = fileURLToPath(url);
    if (!parsed.has(file)) {
      const text = fs.readFileSync(file, 'utf8');
      parsed.set(file, ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true));
    }
    const node = innermostFunction(parsed.get(file)!, Number(start));
    found.push({
      file: path.basename(file),
      kind: node ? ts.SyntaxKind[node.kind] : 'none',
      name: name.join(','),
      usesThis: !!node && usesThis(node),
    });
  }
  return found;
}

function innermostFunction(root: ts.Node, pos: number): ts.Node | null {
  let found: ts.Node | null = null;
  const visit = (node: ts.Node): void => {
    if (node.getStart() > pos || pos >= node.end) return;
    if (ts.isFunctionLike(node) || ts.isClassLike(node)) found = node;
    ts.forEachChild(node, visit);
  };
  visit(root);
  return found;
}

function usesThis(node: ts.Node): boolean {
  return node.kind === ts.SyntaxKind.ThisKeyword || !!ts.forEachChild(node, usesThis);
}

describe('eager compilation of the core modules', () => {
  it('leaves only constructors and arrows that use this to be compiled during a handoff', async (t) => {
    const dir = tempDir(t);
    const owner = startFixture(t, 'upgrader-process.js', [
      '--dir',
      dir,
      '--id',
      'a',
      '--tcp',
      'web',
    ]);
    await owner.line('ready');
    const log = path.join(dir, 'v8.log');
    const newcomer = startCommand(t, process.execPath, [
      '--log-function-events',
      `--logfile=${log}`,
      '--no-logfile-per-isolate',
      path.join(FIXTURES, 'upgrader-process.js'),
      ...['--dir', dir, '--id', 'b', '--tcp', 'web'],
    ]);
    await newcomer.line('ready');
    assert.deepEqual(await owner.exited, { code: 0, signal: null });
    newcomer.send('exit');
    assert.deepEqual(await newcomer.exited, { code: 0, signal: null });

    const compiled = lazilyCompiled(log);
    // The log is read right: the Upgrader's constructor can only be compiled on first call.
    assert.ok(
      compiled.some((c) => c.file === 'upgrader.js' && c.kind === 'Constructor'),
      JSON.stringify(compiled),
    );
    const avoidable = compiled.filter(
      (c) => c.kind !== 'Constructor' && !(c.kind === 'ArrowFunction' && c.usesThis),
    );
    assert.deepEqual(avoidable, []);
  });
});
