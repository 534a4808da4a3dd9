/**
 * Parsing argv into LiverollOptions, by the flag table in flags.ts. Parsing never starts
 * anything; every mistake is a LiverollError with a stable code, so the CLI can refuse bad input
 * before a child or a listener exists.
 */
import { LiverollError, LiverollErrorCodes } from './errors.js';
import { parseDuration } from './duration.js';
import { flags } from './flags.js';
import {
  defaultOptions,
  logLevels,
  modes,
  type LiverollOptions,
  type Mode,
  type LogFormat,
  type LogLevel,
} from './options.js';
import { defaultCoordinationDir, defaultInstanceId, type SystemdEnvironment } from './systemd.js';

export { helpText } from './flags.js';

/** What the command line asks for. */
export type ParsedCommandLine =
  { action: 'help' } | { action: 'version' } | { action: 'run'; options: LiverollOptions };

/** What parsing needs from the process besides argv. */
export interface ParseContext {
  env: SystemdEnvironment;
  /** Whether stdout is a terminal (picks the default log format). */
  isTTY: boolean;
}

function usage(message: string): LiverollError {
  return new LiverollError(LiverollErrorCodes.USAGE, message);
}

/** Splits argv into flag name -> raw value; later occurrences of a flag win. */
function readFlags(argv: readonly string[]): Map<string, string> {
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '-h') {
      values.set('help', 'true');
      continue;
    }
    if (!arg.startsWith('--') || arg === '--')
      throw usage(`unexpected argument ${JSON.stringify(arg)}`);
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const spec = flags[name];
    if (spec === undefined) throw usage(`unknown flag --${name}`);
    if (eq !== -1) {
      values.set(name, arg.slice(eq + 1));
    } else if (spec.kind === 'bool') {
      values.set(name, 'true');
    } else {
      const next = argv[i + 1];
      if (next === undefined) throw usage(`flag --${name} needs a value`);
      values.set(name, next);
      i++;
    }
  }
  return values;
}

function toPort(name: string, raw: string): number {
  if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65535) {
    throw new LiverollError(
      LiverollErrorCodes.INVALID_PORT,
      `--${name}: ${JSON.stringify(raw)} is not a port (an integer from 0 to 65535)`,
    );
  }
  return Number(raw);
}

function toBool(name: string, raw: string): boolean {
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw usage(`--${name}: expected true or false, got ${JSON.stringify(raw)}`);
}

function toDuration(name: string, raw: string): number {
  try {
    return parseDuration(raw);
  } catch (err) {
    if (err instanceof LiverollError) {
      throw new LiverollError(err.code, `--${name}: ${err.message}`);
    }
    throw err;
  }
}

function invalidOption(message: string): LiverollError {
  return new LiverollError(LiverollErrorCodes.INVALID_OPTION, message);
}

/** Typed accessors over the raw flag values, falling back to a default. */
class FlagValues {
  constructor(private readonly raw: Map<string, string>) {}

  string(name: string, fallback: string): string {
    return this.raw.get(name) ?? fallback;
  }

  duration(name: string, fallback: number): number {
    const raw = this.raw.get(name);
    return raw === undefined ? fallback : toDuration(name, raw);
  }

  port(name: string, fallback: number): number {
    const raw = this.raw.get(name);
    return raw === undefined ? fallback : toPort(name, raw);
  }

  bool(name: string): boolean {
    const raw = this.raw.get(name);
    return raw === undefined ? false : toBool(name, raw);
  }

  level(): LogLevel {
    const raw = this.raw.get('log-level') ?? defaultOptions.logLevel;
    const level = logLevels.find((l) => l === raw);
    if (level === undefined) {
      throw invalidOption(`--log-level: expected one of ${logLevels.join(', ')}, got ${raw}`);
    }
    return level;
  }

  mode(): Mode {
    const raw = this.raw.get('mode') ?? defaultOptions.mode;
    const mode = modes.find((m) => m === raw);
    if (mode === undefined) throw invalidOption(`--mode: expected proxy or direct, got ${raw}`);
    return mode;
  }

  format(isTTY: boolean): LogFormat {
    const raw = this.raw.get('log-format');
    if (raw === undefined) return isTTY ? 'pretty' : 'json';
    if (raw === 'json' || raw === 'pretty') return raw;
    throw invalidOption(`--log-format: expected json or pretty, got ${raw}`);
  }
}

function requireCommand(name: string, value: string): string {
  if (value.trim() === '') {
    throw new LiverollError(LiverollErrorCodes.MISSING_COMMAND, `--${name} is required`);
  }
  return value;
}

/** Rules between options that single flags cannot express. */
function checkConsistency(o: LiverollOptions): void {
  const [p1, p2] = o.childPorts;
  if (p1 !== 0 && p1 === p2) {
    throw new LiverollError(
      LiverollErrorCodes.INVALID_PORT,
      `--child-port1 and --child-port2 are both ${p1}; use two ports, or 0 for a free port at each spawn`,
    );
  }
  if (o.port !== 0 && (o.port === p1 || o.port === p2)) {
    throw new LiverollError(
      LiverollErrorCodes.INVALID_PORT,
      `--port ${o.port} is also a child port`,
    );
  }
  if (!o.healthPath.startsWith('/')) {
    throw invalidOption(`--healthcheck must start with "/", got ${JSON.stringify(o.healthPath)}`);
  }
  const positive: [string, number][] = [
    ['health-timeout', o.healthTimeoutMs],
    ['health-probe-timeout', o.healthProbeTimeoutMs],
    ['command-timeout', o.commandTimeoutMs],
    ['upgrade-timeout', o.upgradeTimeoutMs],
  ];
  for (const [name, value] of positive) {
    if (value <= 0) throw invalidOption(`--${name} must be longer than 0`);
  }
  if (o.restartBackoffMaxMs < o.restartBackoffMs) {
    throw invalidOption('--restart-backoff-max must not be shorter than --restart-backoff');
  }
  if (o.instanceId === '' || o.instanceId.includes('/')) {
    throw invalidOption(`--instance-id must be non-empty and contain no "/"`);
  }
  if (o.coordinationDir === '') throw invalidOption('--coordination-dir must not be empty');
}

function buildOptions(v: FlagValues, context: ParseContext): LiverollOptions {
  const d = defaultOptions;
  const port = v.port('port', d.port);
  const options: LiverollOptions = {
    mode: v.mode(),
    pull: v.string('pull', d.pull),
    id: requireCommand('id', v.string('id', '')),
    exec: requireCommand('exec', v.string('exec', '')),
    intervalMs: v.duration('interval', d.intervalMs),
    healthPath: v.string('healthcheck', d.healthPath),
    healthTimeoutMs: v.duration('health-timeout', d.healthTimeoutMs),
    healthProbeTimeoutMs: v.duration('health-probe-timeout', d.healthProbeTimeoutMs),
    healthIntervalMs: v.duration('health-interval', d.healthIntervalMs),
    host: v.string('host', d.host),
    port,
    childPorts: [v.port('child-port1', d.childPorts[0]), v.port('child-port2', d.childPorts[1])],
    commandTimeoutMs: v.duration('command-timeout', d.commandTimeoutMs),
    drainTimeoutMs: v.duration('drain-timeout', d.drainTimeoutMs),
    stopTimeoutMs: v.duration('stop-timeout', d.stopTimeoutMs),
    restartBackoffMs: v.duration('restart-backoff', d.restartBackoffMs),
    restartBackoffMaxMs: v.duration('restart-backoff-max', d.restartBackoffMaxMs),
    restartResetMs: v.duration('restart-reset', d.restartResetMs),
    proxyTimeoutMs: v.duration('proxy-timeout', d.proxyTimeoutMs),
    proxyIdleTimeoutMs: v.duration('proxy-idle-timeout', d.proxyIdleTimeoutMs),
    trustForwardHeaders: v.bool('trust-forward-headers'),
    coordinationDir: v.string('coordination-dir', defaultCoordinationDir(port, context.env)),
    instanceId: v.string('instance-id', defaultInstanceId(context.env)),
    upgradeTimeoutMs: v.duration('upgrade-timeout', d.upgradeTimeoutMs),
    logLevel: v.level(),
    logFormat: v.format(context.isTTY),
  };
  checkConsistency(options);
  return options;
}

/** Parses the arguments after `liveroll` (no node, no script path). Throws LiverollError. */
export function parseCommandLine(
  argv: readonly string[],
  context: ParseContext,
): ParsedCommandLine {
  const raw = readFlags(argv);
  const values = new FlagValues(raw);
  if (values.bool('help')) return { action: 'help' };
  if (values.bool('version')) return { action: 'version' };
  return { action: 'run', options: buildOptions(values, context) };
}
