/**
 * Parsing argv into LiverollOptions, and the `--help` text, both from the flag table in
 * options.ts. Parsing never starts anything; every mistake is a LiverollError with a stable
 * code, so the CLI can refuse bad input before a child or a listener exists.
 */
import { LiverollError, LiverollErrorCodes } from './errors.js';
import { formatDuration, parseDuration } from './duration.js';
import { flags, logLevels, modes, type Flag, type LiverollOptions } from './options.js';
import { defaultCoordinationDir, defaultInstanceId, type SystemdEnvironment } from './systemd.js';

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

function invalidOption(message: string): LiverollError {
  return new LiverollError(LiverollErrorCodes.INVALID_OPTION, message);
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
    const flag = flags[name];
    if (flag === undefined) throw usage(`unknown flag --${name}`);
    if (eq !== -1) {
      values.set(name, arg.slice(eq + 1));
    } else if (flag.kind === 'bool') {
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

function oneOf<T extends string>(name: string, allowed: readonly T[], raw: string): T {
  const found = allowed.find((value) => value === raw);
  if (found === undefined) {
    const expected = allowed.length === 2 ? allowed.join(' or ') : `one of ${allowed.join(', ')}`;
    throw invalidOption(`--${name}: expected ${expected}, got ${raw}`);
  }
  return found;
}

/** The value of flag `name` from its text, by the flag's kind. */
function readValue(name: string, flag: Flag, raw: string): string | number | boolean {
  switch (flag.kind) {
    case 'string':
    case 'command':
      return raw;
    case 'duration':
      try {
        return parseDuration(raw);
      } catch (err) {
        if (err instanceof LiverollError) {
          throw new LiverollError(err.code, `--${name}: ${err.message}`);
        }
        throw err;
      }
    case 'port':
      if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65535) {
        throw new LiverollError(
          LiverollErrorCodes.INVALID_PORT,
          `--${name}: ${JSON.stringify(raw)} is not a port (an integer from 0 to 65535)`,
        );
      }
      return Number(raw);
    case 'bool':
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      throw usage(`--${name}: expected true or false, got ${JSON.stringify(raw)}`);
    case 'level':
      return oneOf(name, logLevels, raw);
    case 'mode':
      return oneOf(name, modes, raw);
    case 'format':
      return oneOf(name, ['json', 'pretty'], raw);
  }
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

/** The defaults the environment sets: they depend on the port, systemd and the terminal. */
function computedDefault(option: keyof LiverollOptions, port: number, context: ParseContext) {
  switch (option) {
    case 'coordinationDir':
      return defaultCoordinationDir(port, context.env);
    case 'instanceId':
      return defaultInstanceId(context.env);
    case 'logFormat':
      return context.isTTY ? 'pretty' : 'json';
    default:
      return undefined;
  }
}

function buildOptions(raw: Map<string, string>, context: ParseContext): LiverollOptions {
  const out: Record<string, unknown> = {};
  const missing: [string, Flag][] = [];
  for (const [name, flag] of Object.entries(flags)) {
    if (flag.option === undefined) continue;
    const text = raw.get(name);
    const value = text === undefined ? flag.default : readValue(name, flag, text);
    if (value === undefined) missing.push([name, flag]);
    else if (flag.index === undefined) out[flag.option] = value;
    else ((out[flag.option] ??= []) as unknown[])[flag.index] = value;
  }
  for (const [name, flag] of Object.entries(flags)) {
    const value = out[flag.option!];
    if (flag.kind === 'command' && (typeof value !== 'string' || value.trim() === '')) {
      throw new LiverollError(LiverollErrorCodes.MISSING_COMMAND, `--${name} is required`);
    }
  }
  for (const [, flag] of missing) {
    if (flag.kind !== 'command') {
      out[flag.option!] = computedDefault(flag.option!, out.port as number, context);
    }
  }
  const options = out as unknown as LiverollOptions;
  checkConsistency(options);
  return options;
}

/** Parses the arguments after `liveroll` (no node, no script path). Throws LiverollError. */
export function parseCommandLine(
  argv: readonly string[],
  context: ParseContext,
): ParsedCommandLine {
  const raw = readFlags(argv);
  const asked = (name: string): boolean => {
    const text = raw.get(name);
    return text !== undefined && readValue(name, flags[name]!, text) === true;
  };
  if (asked('help')) return { action: 'help' };
  if (asked('version')) return { action: 'version' };
  return { action: 'run', options: buildOptions(raw, context) };
}

/** How --help shows a flag's default. */
function shownDefault(flag: Flag): string | undefined {
  if (flag.computed !== undefined) return flag.computed;
  if (flag.default === undefined || flag.default === '' || flag.kind === 'bool') return undefined;
  return flag.kind === 'duration' ? formatDuration(flag.default as number) : String(flag.default);
}

/** The text printed by `--help`. */
export function helpText(): string {
  const lines = [
    'Usage: liveroll --id <command> --exec <command> [flags]',
    '',
    'Runs a child server behind a reverse proxy and replaces it with no downtime when the id',
    'printed by --id changes (checked every --interval), on SIGHUP, or when the child crashes.',
    'Flags take "--flag value" or "--flag=value"; durations use Go syntax (10s, 1m30s, 250ms).',
    '',
    'Flags:',
  ];
  for (const [name, flag] of Object.entries(flags)) {
    const kind = flag.kind === 'string' || flag.kind === 'command' ? 'value' : flag.kind;
    lines.push(`  --${name}${flag.kind === 'bool' ? '' : ` <${kind}>`}`);
    const shown = shownDefault(flag);
    lines.push(`        ${flag.help}${shown === undefined ? '' : ` (default: ${shown})`}`);
  }
  lines.push(
    '',
    'Signals: SIGHUP forces an update; SIGINT/SIGTERM drain and stop (a second one exits at once).',
    'Exit status: 0 after a clean stop or a takeover, 1 on a runtime failure, 2 on bad usage.',
  );
  return lines.join('\n');
}
