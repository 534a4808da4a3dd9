/**
 * systemd's readiness protocol without libsystemd: `KEY=value` lines in one datagram to the unix
 * socket named by $NOTIFY_SOCKET (a path, or `@name` in the abstract namespace, which is why the
 * datagram goes through our addon rather than a userland module).
 *
 * The Upgrader tells systemd: READY=1 (with MAINPID=) once `ready()` made this process the owner,
 * STATUS= for each step of a handoff, STOPPING=1 when it starts draining after a completed
 * upgrade, and WATCHDOG=1 every half $WATCHDOG_USEC when the unit has a watchdog.
 */
import type { EventEmitter } from 'eventemitter3';
import type { Logger } from '../logger.js';
import { native } from '../native.js';
import type { UpgraderEvents } from '../upgrader-events.js';

/** Sends notifications to the service manager. */
export class SystemdNotifier {
  private watchdogTimer: NodeJS.Timeout | undefined;

  constructor(
    /** The socket address: a path, or '@name' for the abstract namespace. */
    readonly socket: string,
    private readonly log: Logger,
  ) {}

  /** A notifier for $NOTIFY_SOCKET, or null when this process does not run under systemd. */
  static fromEnv(log: Logger, env: NodeJS.ProcessEnv = process.env): SystemdNotifier | null {
    const socket = env.NOTIFY_SOCKET;
    return socket ? new SystemdNotifier(socket, log) : null;
  }

  /** Sends `fields` as one datagram. Failures are logged, never thrown: systemd is optional. */
  notify(fields: Record<string, string | number>): void {
    const text = Object.entries(fields)
      .map(([key, value]) => `${key}=${String(value).replace(/\n/g, ' ')}`)
      .join('\n');
    try {
      native.sendDatagram(this.socket, Buffer.from(text + '\n', 'utf8'));
    } catch (err) {
      this.log.warn({ err, socket: this.socket }, 'could not notify systemd');
    }
  }

  /** Starts WATCHDOG=1 pings at half the unit's watchdog interval, if it has one for us. */
  startWatchdog(env: NodeJS.ProcessEnv = process.env): void {
    const usec = Number(env.WATCHDOG_USEC);
    const forPid = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === process.pid;
    if (!(usec > 0) || !forPid || this.watchdogTimer) return;
    this.watchdogTimer = setInterval(() => this.notify({ WATCHDOG: 1 }), Math.max(1, usec / 2000));
    this.watchdogTimer.unref();
  }

  /** Stops the watchdog pings. */
  stopWatchdog(): void {
    clearInterval(this.watchdogTimer);
    this.watchdogTimer = undefined;
  }
}

/** Reports an Upgrader's steps to systemd, from its events. */
export function reportToSystemd(
  upgrader: EventEmitter<UpgraderEvents>,
  notifier: SystemdNotifier,
  describe: () => string,
): void {
  let stopping = false;
  notifier.startWatchdog();
  notifier.notify({ STATUS: `started: ${describe()}` });
  upgrader.on('upgrade-started', ({ peerPid }) =>
    notifier.notify({ STATUS: `handing our descriptors to pid ${peerPid}` }),
  );
  let state = '';
  upgrader.on('state', (to) => (state = to));
  upgrader.on('upgrade-failed', (err) =>
    // An owner whose newcomer failed serves on as before, and says so.
    notifier.notify({
      STATUS:
        state === 'owner'
          ? `serving: ${describe()} (the last handoff failed: ${err.message})`
          : `handoff failed: ${err.message}`,
    }),
  );
  upgrader.on('owner', () =>
    notifier.notify({ READY: 1, MAINPID: process.pid, STATUS: `serving: ${describe()}` }),
  );
  upgrader.on('upgrade-completed', () => {
    stopping = true;
    notifier.notify({ STOPPING: 1, STATUS: 'a newer process took over; draining' });
  });
  upgrader.on('stopped', () => {
    notifier.stopWatchdog();
    if (!stopping) notifier.notify({ STOPPING: 1, STATUS: 'stopped' });
  });
}
