/**
 * Logging: silent by default, any pino-compatible logger when given one, and debug output on
 * stderr with NODE_DEBUG=tableroll (as Node's own util.debuglog).
 */
import { debuglog, format } from 'node:util';

type LogMethod = {
  (fields: object, message?: string): void;
  (message: string): void;
};

/** The subset of pino's logger that tableroll uses. */
export interface Logger {
  debug: LogMethod;
  info: LogMethod;
  warn: LogMethod;
  error: LogMethod;
  child?: (bindings: object) => Logger;
}

const noop = (): void => {};

/** A logger that drops everything. */
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };

function debugLogger(write: (text: string) => void, bindings: object): Logger {
  const method =
    (level: string): LogMethod =>
    (fieldsOrMessage: object | string, message?: string) => {
      const fields = typeof fieldsOrMessage === 'string' ? {} : fieldsOrMessage;
      const text = typeof fieldsOrMessage === 'string' ? fieldsOrMessage : (message ?? '');
      write(format('%s %s %j', level, text, { ...bindings, ...fields }));
    };
  return {
    debug: method('debug'),
    info: method('info'),
    warn: method('warn'),
    error: method('error'),
    child: (more) => debugLogger(write, { ...bindings, ...more }),
  };
}

/** The logger to use: the caller's (as a child with our bindings), NODE_DEBUG's, or silence. */
export function resolveLogger(given: Logger | undefined, bindings: object): Logger {
  if (given) return given.child ? given.child(bindings) : given;
  const debug = debuglog('tableroll');
  return debug.enabled ? debugLogger((text) => debug('%s', text), bindings) : silentLogger;
}
