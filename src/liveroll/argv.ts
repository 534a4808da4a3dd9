/**
 * Command-line flags: the table of every flag, parsing argv into LiverollOptions, and the
 * `--help` text. Parsing never starts anything; every mistake is a LiverollError with a stable
 * code, so the CLI can refuse bad input before a child or a listener exists.
 */
import { LiverollError, LiverollErrorCodes } from './errors.js';
import { formatDuration, parseDuration } from './duration.js';
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

type FlagKind = 'string' | 'duration' | 'port' | 'bool' | 'level' | 'format' | 'mode';

interface FlagSpec {
  kind: FlagKind;
  help: string;
  /** The default as printed by --help, when there is one. */
  shown?: string;
}

const ms = formatDuration;

/** Every flag liveroll accepts, in --help order. */
const flags: Record<string, FlagSpec> = {
  mode: {
    kind: 'mode',
    help: 'proxy: liveroll forwards each request to the child; direct: each child accepts on the public socket itself (fd 3, LISTEN_FDS)',
    shown: defaultOptions.mode,
  },
  pull: { kind: 'string', help: 'command fetching the new artifact (sh -c); optional' },
  id: { kind: 'string', help: "command printing the artifact's id on stdout (sh -c); required" },
  exec: {
    kind: 'string',
    help: 'command starting a child (sh -c); <<PORT>> and <<HEALTHCHECK>> are substituted; required',
  },
  interval: {
    kind: 'duration',
    help: 'time between update checks; 0 disables them',
    shown: ms(defaultOptions.intervalMs),
  },
  healthcheck: {
    kind: 'string',
    help: 'path answering HTTP 200 once a child is ready',
    shown: defaultOptions.healthPath,
  },
  'health-timeout': {
    kind: 'duration',
    help: 'time a new child has to become healthy',
    shown: ms(defaultOptions.healthTimeoutMs),
  },
  'health-probe-timeout': {
    kind: 'duration',
    help: 'deadline of one health probe',
    shown: ms(defaultOptions.healthProbeTimeoutMs),
  },
  'health-interval': {
    kind: 'duration',
    help: 'pause between health probes',
    shown: ms(defaultOptions.healthIntervalMs),
  },
  host: { kind: 'string', help: 'address of the public listener', shown: 'all interfaces' },
  port: {
    kind: 'port',
    help: 'port of the public listener (reverse proxy); 0 picks one',
    shown: String(defaultOptions.port),
  },
  'child-port1': {
    kind: 'port',
    help: 'port of child slot 1; 0 means a free port chosen at each spawn',
    shown: String(defaultOptions.childPorts[0]),
  },
  'child-port2': {
    kind: 'port',
    help: 'port of child slot 2; 0 means a free port chosen at each spawn',
    shown: String(defaultOptions.childPorts[1]),
  },
  'command-timeout': {
    kind: 'duration',
    help: 'deadline of each --pull and --id run',
    shown: ms(defaultOptions.commandTimeoutMs),
  },
  'drain-timeout': {
    kind: 'duration',
    help: 'time in-flight requests get once their child or liveroll stops taking new ones',
    shown: ms(defaultOptions.drainTimeoutMs),
  },
  'stop-timeout': {
    kind: 'duration',
    help: "time between a child's SIGTERM and the SIGKILL of its process group",
    shown: ms(defaultOptions.stopTimeoutMs),
  },
  'restart-backoff': {
    kind: 'duration',
    help: 'delay before the second replacement in a row of a crashed child (the first is at once), doubled per further crash; also how long a failed id waits before it is tried again',
    shown: ms(defaultOptions.restartBackoffMs),
  },
  'restart-backoff-max': {
    kind: 'duration',
    help: 'longest delay before replacing a crashed child',
    shown: ms(defaultOptions.restartBackoffMaxMs),
  },
  'restart-reset': {
    kind: 'duration',
    help: 'uptime after which a crash no longer counts as part of a crash loop',
    shown: ms(defaultOptions.restartResetMs),
  },
  'proxy-timeout': {
    kind: 'duration',
    help: 'time a child has to send response headers; 0 disables',
    shown: ms(defaultOptions.proxyTimeoutMs),
  },
  'proxy-idle-timeout': {
    kind: 'duration',
    help: 'longest silence inside a proxied body; 0 disables',
    shown: ms(defaultOptions.proxyIdleTimeoutMs),
  },
  'trust-forward-headers': {
    kind: 'bool',
    help: 'extend incoming X-Forwarded-* headers instead of replacing them',
  },
  'coordination-dir': {
    kind: 'string',
    help: 'directory shared by the instances that hand the public port over',
    shown:
      '$RUNTIME_DIRECTORY, else $XDG_RUNTIME_DIR/liveroll-<port>, else <tmp>/liveroll-<uid>-<port>',
  },
  'instance-id': {
    kind: 'string',
    help: 'id of this instance in the coordination directory',
    shown: 'the systemd unit name, else pid-<pid>',
  },
  'upgrade-timeout': {
    kind: 'duration',
    help: 'time a takeover of the public port may take',
    shown: ms(defaultOptions.upgradeTimeoutMs),
  },
  'log-level': {
    kind: 'level',
    help: logLevels.join(', '),
    shown: defaultOptions.logLevel,
  },
  'log-format': {
    kind: 'format',
    help: 'json or pretty',
    shown: 'pretty on a terminal, else json',
  },
  help: { kind: 'bool', help: 'print this help and exit' },
  version: { kind: 'bool', help: 'print the version and exit' },
};

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
  for (const [name, spec] of Object.entries(flags)) {
    const arg = spec.kind === 'bool' ? '' : ` <${spec.kind === 'string' ? 'value' : spec.kind}>`;
    lines.push(`  --${name}${arg}`);
    lines.push(
      `        ${spec.help}${spec.shown === undefined ? '' : ` (default: ${spec.shown})`}`,
    );
  }
  lines.push(
    '',
    'Signals: SIGHUP forces an update; SIGINT/SIGTERM drain and stop (a second one exits at once).',
    'Exit status: 0 after a clean stop or a takeover, 1 on a runtime failure, 2 on bad usage.',
  );
  return lines.join('\n');
}
