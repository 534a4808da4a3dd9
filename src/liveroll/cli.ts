#!/usr/bin/env node
/**
 * The `liveroll` command: parse the flags (refusing bad ones before anything starts), create the
 * logger, install the signal handlers, run one instance, exit with its status.
 *
 * | Signal          | Effect                                                                 |
 * |-----------------|------------------------------------------------------------------------|
 * | SIGHUP          | forced update: a new child even for the same id; never waits           |
 * | SIGINT, SIGTERM | graceful stop: stop accepting, finish in-flight requests, retire children, exit 0 |
 * | second SIGINT/SIGTERM | SIGKILL every child's process group, exit 128 + signal number    |
 */
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { helpText, parseCommandLine, type ParsedCommandLine } from './argv.js';
import { LiverollError, describeError } from './errors.js';
import { ExitCodes, LiverollInstance } from './instance.js';
import { createLogger, type Logger } from './logger.js';

function version(): string {
  const text = readFileSync(new URL('../../../package.json', import.meta.url), 'utf8');
  return (JSON.parse(text) as { version: string }).version;
}

function parse(argv: string[]): ParsedCommandLine {
  try {
    return parseCommandLine(argv, { env: process.env, isTTY: process.stdout.isTTY === true });
  } catch (err) {
    if (!(err instanceof LiverollError)) throw err;
    process.stderr.write(
      `liveroll: ${err.message} [${err.code}]\nRun "liveroll --help" for usage.\n`,
    );
    process.exit(ExitCodes.USAGE);
  }
}

function installSignals(instance: LiverollInstance, log: Logger): void {
  process.on('SIGHUP', () => instance.requestUpdate());
  const onStop = (signal: 'SIGINT' | 'SIGTERM'): void => {
    if (!instance.stopping) return instance.requestStop(signal);
    log.warn({ signal }, 'second stop signal: killing every child and exiting now');
    instance.killAllNow();
    process.exit(128 + constants.signals[signal]);
  };
  process.on('SIGINT', onStop);
  process.on('SIGTERM', onStop);
}

function installFatalHandlers(instance: LiverollInstance, log: Logger): void {
  const fatal = (err: unknown): void => {
    log.fatal({ err: describeError(err), stack: (err as Error | undefined)?.stack }, 'fatal error');
    instance.killAllNow();
    process.exit(ExitCodes.FAILURE);
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
}

async function main(): Promise<void> {
  const parsed = parse(process.argv.slice(2));
  if (parsed.action === 'help') {
    process.stdout.write(`${helpText()}\n`);
    return;
  }
  if (parsed.action === 'version') {
    process.stdout.write(`liveroll (tableroll) ${version()}\n`);
    return;
  }
  const { options } = parsed;
  const log = createLogger(options.logLevel, options.logFormat, { instance: options.instanceId });
  const instance = new LiverollInstance(options, log);
  installSignals(instance, log);
  installFatalHandlers(instance, log);
  log.info(
    {
      version: version(),
      port: options.port,
      childPorts: options.childPorts,
      coordinationDir: options.coordinationDir,
    },
    'liveroll starting',
  );
  process.exit(await instance.run());
}

await main();
