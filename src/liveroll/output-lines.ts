/**
 * Splits a child's stdout or stderr into lines for the log, with a cap on line length so that
 * output without newlines cannot grow memory without bound.
 */
import type { Readable } from 'node:stream';

/** Longest line kept whole; longer ones are cut into pieces of this size. */
export const MAX_LINE_BYTES = 16 * 1024;

/** Calls `onLine` for every line of `stream` (without its newline), then once more at the end for an unterminated last line. */
export function forEachLine(stream: Readable, onLine: (line: string) => void): void {
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    pending += chunk;
    let start = 0;
    for (;;) {
      const nl = pending.indexOf('\n', start);
      if (nl === -1) break;
      onLine(stripCr(pending.slice(start, nl)));
      start = nl + 1;
    }
    pending = pending.slice(start);
    while (pending.length > MAX_LINE_BYTES) {
      onLine(pending.slice(0, MAX_LINE_BYTES));
      pending = pending.slice(MAX_LINE_BYTES);
    }
  });
  stream.on('end', () => {
    if (pending !== '') onLine(stripCr(pending));
    pending = '';
  });
  // A read error on a pipe only means the child went away; the exit is reported elsewhere.
  stream.on('error', () => {});
}

function stripCr(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}
