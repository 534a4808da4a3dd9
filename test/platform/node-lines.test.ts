/**
 * The other Node lines users run: 20, 22, 24 and 26, less the one running this suite. Each is
 * npm's `node-linux-<arch>` package (a Node binary and its headers), installed once into .tmp/.
 * For each line: the addon builds against that line's headers and loads, then this suite's
 * test files run under it: all of them on the current LTS (24), a smoke part on the others (the
 * addon, handoffs between processes under load, wire compatibility). One N-API addon serves
 * every line, so the runs use the checkout's build.
 *
 * TABLEROLL_NODE_LINES=0 skips them (say, on a machine that cannot reach the npm registry).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { buildAddon, nodeLine } from '../../scripts/node-lines.js';
import { ROOT, tempDir } from '../support/helpers.js';

const CURRENT = Number(process.versions.node.split('.')[0]);
const LTS = 24;
const LINES = [20, 22, 24, 26].filter((major) => major !== CURRENT);
/** The addon's tests (every file of test/native/), handoffs between processes, wire compatibility. */
const SMOKE = [
  ...fs
    .readdirSync(path.join(ROOT, 'dist/test/native'))
    .filter((f) => f.endsWith('.test.js'))
    .map((f) => `native/${f}`),
  'handoff/upgrader-processes.test.js',
  'handoff/wire-compat.test.js',
];
const skip = process.env.TABLEROLL_NODE_LINES === '0' ? 'TABLEROLL_NODE_LINES=0' : false;

/** Runs Node's test runner under `node` on `files`; resolves with its TAP output. */
function runSuite(node: string, files: string[]): Promise<string> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: `${path.dirname(node)}:${process.env.PATH ?? ''}`,
  };
  // Set by the test runner that runs this file: the nested runner must report as a top level.
  delete env.NODE_TEST_CONTEXT;
  const child = spawn(node, ['--test', '--test-timeout=120000', '--test-reporter=tap', ...files], {
    cwd: path.join(ROOT, 'dist/test'),
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', () => resolve(out));
  });
}

function count(tap: string, what: 'pass' | 'fail'): number {
  return Number(new RegExp(`^# ${what} (\\d+)$`, 'm').exec(tap)?.[1] ?? NaN);
}

/**
 * Each failed test of a nested run with its YAML block (error, expected, actual, stack), as far
 * as the block's end: a failure on another line must say what failed, not only its name.
 */
function failureDetails(tap: string): string {
  const lines = tap.split('\n');
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s*not ok /.test(lines[i] ?? '')) continue;
    out.push(lines[i] ?? '');
    for (let j = i + 1; j < lines.length && j < i + 60; j++) {
      out.push(lines[j] ?? '');
      if (/^\s*\.\.\.$/.test(lines[j] ?? '')) break;
    }
  }
  return out.join('\n').slice(0, 8_000);
}

describe('other Node lines', () => {
  for (const major of LINES) {
    const full = major === LTS;
    it(
      `Node ${major}: the addon builds and loads, and ${full ? 'the whole suite' : 'the smoke tests'} pass`,
      { timeout: 20 * 60_000, skip },
      async (t) => {
        const line = nodeLine(major);
        t.diagnostic(`Node ${line.version} at ${line.node}`);
        const built = buildAddon(line, tempDir(t));
        const loaded = await new Promise<string>((resolve, reject) => {
          const probe = spawn(line.node, [
            '-p',
            `typeof require(${JSON.stringify(built)}).flockExclusive`,
          ]);
          let text = '';
          probe.stdout.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
          probe.on('error', reject);
          probe.on('close', () => resolve(text.trim()));
        });
        assert.equal(
          loaded,
          'function',
          `the addon built with Node ${line.version}'s headers loads`,
        );
        const files = full
          ? fs
              .readdirSync(path.join(ROOT, 'dist/test'), { recursive: true, encoding: 'utf8' })
              .filter((f) => f.endsWith('.test.js') && !f.endsWith('node-lines.test.js'))
              .sort()
          : SMOKE;
        const tap = await runSuite(line.node, files);
        const [passed, failed] = [count(tap, 'pass'), count(tap, 'fail')];
        t.diagnostic(`Node ${line.version}: ${passed} passed, ${failed} failed`);
        assert.equal(failed, 0, failureDetails(tap));
        assert.ok(passed > 0, tap.slice(-2000));
      },
    );
  }
});
