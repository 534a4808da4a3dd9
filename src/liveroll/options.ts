/**
 * The one set of liveroll options and their defaults. The CLI (argv.ts) fills these from flags;
 * `--help` prints the defaults from here, so the documentation cannot drift from the code.
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
  /** Directory shared by the liveroll instances that hand the public port to each other. */
  coordinationDir: string;
  /** This instance's id within the coordination directory; unique among live instances. */
  instanceId: string;
  /** How long a takeover (receiving the port, then `ready()`) may take. */
  upgradeTimeoutMs: number;
  logLevel: LogLevel;
  logFormat: LogFormat;
}

/** The defaults of every option that has one. Commands and identity have none. */
export const defaultOptions = {
  mode: 'proxy',
  pull: '',
  intervalMs: 60_000,
  healthPath: '/healthz',
  healthTimeoutMs: 30_000,
  healthProbeTimeoutMs: 2_000,
  healthIntervalMs: 500,
  host: '',
  port: 8080,
  childPorts: [9101, 9102] as const,
  commandTimeoutMs: 300_000,
  drainTimeoutMs: 10_000,
  stopTimeoutMs: 10_000,
  restartBackoffMs: 1_000,
  restartBackoffMaxMs: 60_000,
  restartResetMs: 60_000,
  proxyTimeoutMs: 60_000,
  proxyIdleTimeoutMs: 300_000,
  trustForwardHeaders: false,
  upgradeTimeoutMs: 60_000,
  logLevel: 'info',
} satisfies Partial<LiverollOptions>;

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
