/**
 * Splits a child's stdout or stderr into lines for the log, with a cap on line length so that
 * output without newlines cannot grow memory without bound.
 */
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

/** Longest line kept whole; longer ones are cut into pieces of this size. */
export const MAX_LINE_BYTES = 16 * 1024;

/**
 * Calls `onLine` for every line of `stream` (without its newline), then once more at the end for
 * an unterminated last line.
 *
 * The stream is left in Buffer mode: another listener may be collecting the same bytes (the
 * `--id` result), and `setEncoding` here would hand it strings instead. A decoder of our own
 * keeps a UTF-8 character split across two chunks whole.
 */
export function forEachLine(stream: Readable, onLine: (line: string) => void): void {
  const decoder = new StringDecoder('utf8');
  let pending = '';
  const take = (text: string): void => {
    pending += text;
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
  };
  stream.on('data', (chunk: Buffer | string) => {
    take(typeof chunk === 'string' ? chunk : decoder.write(chunk));
  });
  stream.on('end', () => {
    take(decoder.end());
    if (pending !== '') onLine(stripCr(pending));
    pending = '';
  });
  // A read error on a pipe only means the child went away; the exit is reported elsewhere.
  stream.on('error', () => {});
}

function stripCr(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}
