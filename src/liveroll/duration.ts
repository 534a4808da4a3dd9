/**
 * Go duration syntax (`10s`, `1m30s`, `1.5h`, `250ms`, `500us`), as the original tool's flags
 * used it. Inside liveroll durations are plain numbers of milliseconds (`...Ms`); only the
 * command line speaks Go.
 */
import { LiverollError, LiverollErrorCodes } from './errors.js';

/** Milliseconds per unit, for every unit Go accepts (both spellings of the micro sign). */
const unitMs: ReadonlyMap<string, number> = new Map([
  ['ns', 1e-6],
  ['us', 1e-3],
  ['\u00b5s', 1e-3],
  ['\u03bcs', 1e-3],
  ['ms', 1],
  ['s', 1000],
  ['m', 60_000],
  ['h', 3_600_000],
]);

/**
 * The longest delay a Node timer honours (about 24.8 days). Longer delays fire at once, so they
 * are refused rather than silently shortened.
 */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/** One `<number><unit>` component: digits with an optional fraction, then letters. */
const componentPattern = /^(\d*)(?:\.(\d*))?([a-z\u00b5\u03bc]+)/;

function invalid(text: string, why: string): LiverollError {
  return new LiverollError(
    LiverollErrorCodes.INVALID_DURATION,
    `invalid duration ${JSON.stringify(text)}: ${why} (use Go syntax such as 10s, 1m30s, 250ms)`,
  );
}

/**
 * Parses a non-negative Go duration into milliseconds (possibly fractional). `0` alone needs no
 * unit. Throws ERR_LIVEROLL_INVALID_DURATION for anything else Go would reject, for negative
 * values, and for values above MAX_DURATION_MS.
 */
export function parseDuration(text: string): number {
  let rest = text;
  if (rest.startsWith('+')) rest = rest.slice(1);
  if (rest.startsWith('-')) throw invalid(text, 'negative durations are not allowed');
  if (rest === '0') return 0;
  if (rest === '') throw invalid(text, 'empty');
  let total = 0;
  while (rest !== '') {
    const match = componentPattern.exec(rest);
    if (match === null) throw invalid(text, 'expected a number followed by a unit');
    const [whole, intPart = '', fracPart = '', unit = ''] = match;
    if (intPart === '' && fracPart === '') throw invalid(text, 'a unit needs a number before it');
    const perUnit = unitMs.get(unit);
    if (perUnit === undefined) {
      throw invalid(text, `unknown unit ${JSON.stringify(unit)} (ns, us, ms, s, m, h)`);
    }
    total += Number(`${intPart || '0'}.${fracPart || '0'}`) * perUnit;
    rest = rest.slice(whole.length);
  }
  if (total > MAX_DURATION_MS) throw invalid(text, 'longer than 24 days');
  return total;
}

/** A number without floating-point noise: 0.30000000000000004 -> "0.3". */
function plain(n: number): string {
  return String(Number(n.toFixed(6)));
}

/** Formats milliseconds the way Go prints a duration: `0s`, `250ms`, `1.5s`, `1m30s`, `1h0m0s`. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 0) return `-${formatDuration(-ms)}`;
  if (ms < 1e-3) return `${plain(ms * 1e6)}ns`;
  if (ms < 1) return `${plain(ms * 1e3)}\u00b5s`;
  if (ms < 1000) return `${plain(ms)}ms`;
  const hours = Math.floor(ms / 3_600_000);
  const minutes = Math.floor((ms % 3_600_000) / 60_000);
  const seconds = `${plain((ms % 60_000) / 1000)}s`;
  if (hours > 0) return `${hours}h${minutes}m${seconds}`;
  if (minutes > 0) return `${minutes}m${seconds}`;
  return seconds;
}
