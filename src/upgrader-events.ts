/** The Upgrader's events and completion reasons, shared with what listens to them. */
import type { TablerollError } from './errors.js';
import type { UpgraderState } from './upgrader-state.js';

/**
 * Why `upgradeComplete()` resolved: 'upgraded' (a newcomer took over), 'stopped' (`stop()` ran),
 * or 'failed' (this process was a newcomer and its handoff from the previous owner failed or
 * ran out of time before `ready()` confirmed it: the previous owner kept the sockets, so this
 * process must stop serving and exit).
 */
export type CompletionReason = 'upgraded' | 'stopped' | 'failed';

/** Events of an Upgrader, for tests and supervisors that await real happenings. */
export interface UpgraderEvents {
  /** Every state change. */
  state: (to: UpgraderState, from: UpgraderState) => void;
  /** Owner: a newcomer connected and the transfer began. */
  'upgrade-started': (info: { peerPid: number }) => void;
  /** Owner: the transfer failed and we are the owner again. Newcomer: the handoff failed. */
  'upgrade-failed': (error: TablerollError) => void;
  /** Owner: the newcomer took over; drain and exit. */
  'upgrade-completed': () => void;
  /** This process became the owner. */
  owner: () => void;
  /** `stop()` ran. */
  stopped: () => void;
}
