/**
 * Where liveroll and the app it rolls are, once compiled, and the flags a test or benchmark run
 * of liveroll starts from. Shared by the test harness and the benchmarks.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file runs from dist/scripts). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** The compiled CLI. */
export const CLI = join(ROOT, 'dist/src/liveroll/cli.js');
/** The compiled app the tests and benchmarks roll. */
export const APP = join(ROOT, 'dist/test/fixtures/liveroll-app.js');

/** Flags every test run of liveroll gets unless it overrides them. */
export function baseFlags(dir: string, instance = 'a'): string[] {
  return [
    '--port',
    '0',
    '--child-port1',
    '0',
    '--child-port2',
    '0',
    '--log-format',
    'json',
    '--coordination-dir',
    dir,
    '--instance-id',
    instance,
    '--health-interval',
    '20ms',
    '--health-probe-timeout',
    '1s',
    '--health-timeout',
    '10s',
    '--stop-timeout',
    '2s',
    '--drain-timeout',
    '2s',
    '--interval',
    '0',
  ];
}
