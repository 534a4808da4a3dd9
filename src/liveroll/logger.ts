/**
 * The CLI's logger: pino writing one JSON object a line to stdout (for journald and log
 * shippers), or pino-pretty's readable format for a terminal. Writes are synchronous so that
 * the last lines before an exit are never lost.
 */
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { LogFormat, LogLevel } from './options.js';

export type { Logger };

/** Creates the root logger; `base` fields appear on every line. */
export function createLogger(
  level: LogLevel,
  format: LogFormat,
  base: Record<string, unknown> = {},
): Logger {
  const options = { level, base: { pid: process.pid, ...base } };
  if (format === 'pretty') {
    // One line per entry: a child's output line stays one line, its fields after it.
    return pino(options, pretty({ sync: true, colorize: process.stdout.isTTY, singleLine: true }));
  }
  const destination = pino.destination({ dest: 1, sync: true });
  // A closed stdout (EPIPE) must cost the logs, never the children: keep supervising.
  destination.on('error', () => {});
  return pino(options, destination);
}

/** A logger that drops everything: the library side of liveroll is silent unless given one. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
