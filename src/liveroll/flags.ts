/**
 * Every flag liveroll accepts: its kind, its help line and the default `--help` shows, taken
 * from options.ts so the documentation cannot drift from the code.
 */
import { formatDuration } from './duration.js';
import { defaultOptions, logLevels } from './options.js';

export type FlagKind = 'string' | 'duration' | 'port' | 'bool' | 'level' | 'format' | 'mode';

export interface FlagSpec {
  kind: FlagKind;
  help: string;
  /** The default as printed by --help, when there is one. */
  shown?: string;
}

const ms = formatDuration;

/** Every flag liveroll accepts, in --help order. */
export const flags: Record<string, FlagSpec> = {
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
