/**
 * liveroll's options: their type, and the flag table that gives each one its flag, parsing,
 * default and help line. The CLI (argv.ts) fills the options from argv through the table and
 * prints `--help` from it, so the documentation cannot drift from the code.
 */

/** How log lines are written: JSON (one object a line) or a readable, coloured format. */
export type LogFormat = 'json' | 'pretty';

/** Pino level names accepted by `--log-level`. */
export const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof logLevels)[number];

/**
 * How clients reach the children. `proxy`: liveroll accepts on the public port and forwards each
 * request to the serving child. `direct`: every child gets the public listening socket itself
 * (fd 3, systemd's socket-activation convention) and accepts on it; liveroll only supervises.
 */
export const modes = ['proxy', 'direct'] as const;
export type Mode = (typeof modes)[number];

/** Everything that configures one liveroll instance. Durations are milliseconds. */
export interface LiverollOptions {
  mode: Mode;
  /** Shell command fetching the new artifact (run through `sh -c`); empty: no pull step. */
  pull: string;
  /** Shell command printing the artifact's id on stdout (trimmed). */
  id: string;
  /** Shell command starting one child; `<<PORT>>` and `<<HEALTHCHECK>>` are substituted. */
  exec: string;
  /** Time between update checks; 0 disables periodic checks (SIGHUP and crashes still update). */
  intervalMs: number;
  /** Path probed on a new child; it is healthy once this answers HTTP 200. */
  healthPath: string;
  /** How long a new child may take to become healthy before it is killed. */
  healthTimeoutMs: number;
  /** Deadline of one health probe (connect, headers and body). */
  healthProbeTimeoutMs: number;
  /** Pause between two health probes. */
  healthIntervalMs: number;
  /** Address of the public listener; '' means every interface. */
  host: string;
  /** Port of the public listener (the reverse proxy); 0 picks a free port (logged). */
  port: number;
  /** The two child ports; 0 means "a free port chosen at each spawn". */
  childPorts: readonly [number, number];
  /** Deadline of each `--pull` and `--id` run; its process group is killed past it. */
  commandTimeoutMs: number;
  /** How long in-flight requests may take once their child (or liveroll) stops taking new ones. */
  drainTimeoutMs: number;
  /** After SIGTERM, how long a child's process group may take to exit before SIGKILL. */
  stopTimeoutMs: number;
  /** First delay before replacing a crashed child; doubles per consecutive crash. */
  restartBackoffMs: number;
  /** Upper bound of that delay. */
  restartBackoffMaxMs: number;
  /** Time a child must stay up for its crash not to count as part of a crash loop. */
  restartResetMs: number;
  /** Time a child may take to send response headers through the proxy. */
  proxyTimeoutMs: number;
  /** Longest silence inside a proxied body (either direction) before the exchange is cut. */
  proxyIdleTimeoutMs: number;
  /** Keep incoming X-Forwarded-* headers (liveroll sits behind a trusted proxy). */
  trustForwardHeaders: boolean;
  /** Serve plain requests on the proxy's fast lane rather than through Node's http.Server. */
  fastLane: boolean;
  /** Serve plain requests on the native lane (C++ in the addon) rather than the fast lane. */
  nativeLane: boolean;
  /** Directory shared by the liveroll instances that hand the public port to each other. */
  coordinationDir: string;
  /** This instance's id within the coordination directory; unique among live instances. */
  instanceId: string;
  /** How long a takeover (receiving the port, then `ready()`) may take. */
  upgradeTimeoutMs: number;
  logLevel: LogLevel;
  logFormat: LogFormat;
}

/** How a flag's text becomes a value: argv.ts holds one reader per kind. */
export type FlagKind =
  'string' | 'command' | 'duration' | 'port' | 'bool' | 'level' | 'format' | 'mode';

/** One flag: the option it sets, how its text is read, its default and its help line. */
export interface Flag {
  /** The option it sets (none for --help and --version). `childPorts` takes two flags. */
  option?: keyof LiverollOptions;
  /** For `childPorts`: which of the two. */
  index?: 0 | 1;
  kind: FlagKind;
  help: string;
  /** The value when the flag is absent; none for a required command. */
  default?: string | number | boolean;
  /** For a default that depends on the environment: how --help describes it. */
  computed?: string;
}

/**
 * Every flag liveroll accepts, in --help order: the one place where an option's flag, parsing,
 * default and help are spelled. argv.ts reads argv through it and prints --help from it, and
 * `defaultOptions` below is taken from it.
 */
export const flags: Readonly<Record<string, Flag>> = {
  mode: {
    option: 'mode',
    kind: 'mode',
    default: 'proxy',
    help: 'proxy: liveroll forwards each request to the child; direct: each child accepts on the public socket itself (fd 3, LISTEN_FDS)',
  },
  pull: {
    option: 'pull',
    kind: 'string',
    default: '',
    help: 'command fetching the new artifact (sh -c); optional',
  },
  id: {
    option: 'id',
    kind: 'command',
    help: "command printing the artifact's id on stdout (sh -c); required",
  },
  exec: {
    option: 'exec',
    kind: 'command',
    help: 'command starting a child (sh -c); <<PORT>> and <<HEALTHCHECK>> are substituted; required',
  },
  interval: {
    option: 'intervalMs',
    kind: 'duration',
    default: 60_000,
    help: 'time between update checks; 0 disables them',
  },
  healthcheck: {
    option: 'healthPath',
    kind: 'string',
    default: '/healthz',
    help: 'path answering HTTP 200 once a child is ready',
  },
  'health-timeout': {
    option: 'healthTimeoutMs',
    kind: 'duration',
    default: 30_000,
    help: 'time a new child has to become healthy',
  },
  'health-probe-timeout': {
    option: 'healthProbeTimeoutMs',
    kind: 'duration',
    default: 2_000,
    help: 'deadline of one health probe',
  },
  'health-interval': {
    option: 'healthIntervalMs',
    kind: 'duration',
    default: 500,
    help: 'pause between health probes',
  },
  host: {
    option: 'host',
    kind: 'string',
    default: '',
    computed: 'all interfaces',
    help: 'address of the public listener',
  },
  port: {
    option: 'port',
    kind: 'port',
    default: 8080,
    help: 'port of the public listener (reverse proxy); 0 picks one',
  },
  'child-port1': {
    option: 'childPorts',
    index: 0,
    kind: 'port',
    default: 9101,
    help: 'port of child slot 1; 0 means a free port chosen at each spawn',
  },
  'child-port2': {
    option: 'childPorts',
    index: 1,
    kind: 'port',
    default: 9102,
    help: 'port of child slot 2; 0 means a free port chosen at each spawn',
  },
  'command-timeout': {
    option: 'commandTimeoutMs',
    kind: 'duration',
    default: 300_000,
    help: 'deadline of each --pull and --id run',
  },
  'drain-timeout': {
    option: 'drainTimeoutMs',
    kind: 'duration',
    default: 10_000,
    help: 'time in-flight requests get once their child or liveroll stops taking new ones',
  },
  'stop-timeout': {
    option: 'stopTimeoutMs',
    kind: 'duration',
    default: 10_000,
    help: "time between a child's SIGTERM and the SIGKILL of its process group",
  },
  'restart-backoff': {
    option: 'restartBackoffMs',
    kind: 'duration',
    default: 1_000,
    help: 'delay before the second replacement in a row of a crashed child (the first is at once), doubled per further crash; also how long a failed id waits before it is tried again',
  },
  'restart-backoff-max': {
    option: 'restartBackoffMaxMs',
    kind: 'duration',
    default: 60_000,
    help: 'longest delay before replacing a crashed child',
  },
  'restart-reset': {
    option: 'restartResetMs',
    kind: 'duration',
    default: 60_000,
    help: 'uptime after which a crash no longer counts as part of a crash loop',
  },
  'proxy-timeout': {
    option: 'proxyTimeoutMs',
    kind: 'duration',
    default: 60_000,
    help: 'time a child has to send response headers, from the end of the request; 0 disables',
  },
  'proxy-idle-timeout': {
    option: 'proxyIdleTimeoutMs',
    kind: 'duration',
    default: 300_000,
    help: 'longest silence inside a proxied body; 0 disables',
  },
  'trust-forward-headers': {
    option: 'trustForwardHeaders',
    kind: 'bool',
    default: false,
    help: 'extend incoming X-Forwarded-* headers instead of replacing them',
  },
  'fast-lane': {
    option: 'fastLane',
    kind: 'bool',
    default: true,
    help: "proxy plain requests without Node's http.Server, which serves the rest; --fast-lane=false sends all through it (both lanes off)",
  },
  'native-lane': {
    option: 'nativeLane',
    kind: 'bool',
    default: true,
    help: 'proxy plain requests in C++ (the addon); --native-lane=false proxies them in JavaScript',
  },
  'coordination-dir': {
    option: 'coordinationDir',
    kind: 'string',
    computed:
      '$RUNTIME_DIRECTORY, else $XDG_RUNTIME_DIR/liveroll-<port>, else <tmp>/liveroll-<uid>-<port>',
    help: 'directory shared by the instances that hand the public port over',
  },
  'instance-id': {
    option: 'instanceId',
    kind: 'string',
    computed: 'the systemd unit name, else pid-<pid>',
    help: 'id of this instance in the coordination directory',
  },
  'upgrade-timeout': {
    option: 'upgradeTimeoutMs',
    kind: 'duration',
    default: 60_000,
    help: 'time a takeover of the public port may take',
  },
  'log-level': {
    option: 'logLevel',
    kind: 'level',
    default: 'info',
    help: logLevels.join(', '),
  },
  'log-format': {
    option: 'logFormat',
    kind: 'format',
    computed: 'pretty on a terminal, else json',
    help: 'json or pretty',
  },
  help: { kind: 'bool', help: 'print this help and exit' },
  version: { kind: 'bool', help: 'print the version and exit' },
};

/** The options that have a fixed default: all but the commands and what the environment sets. */
export type DefaultOptions = Omit<
  LiverollOptions,
  'id' | 'exec' | 'coordinationDir' | 'instanceId' | 'logFormat'
>;

/** The fixed defaults, as the flag table gives them. */
export const defaultOptions: Readonly<DefaultOptions> = Object.freeze(collectDefaults());

function collectDefaults(): DefaultOptions {
  const out: Record<string, unknown> = {};
  for (const flag of Object.values(flags)) {
    if (flag.option === undefined || flag.default === undefined) continue;
    if (flag.index === undefined) out[flag.option] = flag.default;
    else ((out[flag.option] ??= []) as unknown[])[flag.index] = flag.default;
  }
  return out as unknown as DefaultOptions;
}

/** Substitutes the template variables of `--exec` for one child. */
export function expandExec(template: string, port: number, healthPath: string): string {
  return template
    .replaceAll('<<PORT>>', String(port))
    .replaceAll('<<HEALTHCHECK>>', shellWord(healthPath));
}

/**
 * `text` as one shell word: as it is when it holds only characters the shell takes literally,
 * else in single quotes. A health path such as `/h;rm -rf x` or `/$(id)` must not run.
 */
export function shellWord(text: string): string {
  if (/^[A-Za-z0-9/._~%+=:@,-]+$/.test(text)) return text;
  return `'${text.replaceAll("'", `'\\''`)}'`;
}
