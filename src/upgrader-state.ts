/**
 * The Upgrader's state machine. Every process starts in `checking-owner` (it may be inheriting
 * from an owner) and becomes `owner` in `ready()`. An owner moves to `transferring` while it
 * sends its descriptors to a newcomer, then back to `owner` if the handoff fails or on to
 * `draining` once the newcomer took over. Any state may move to `stopped`.
 */
import { bug } from './errors.js';

export type UpgraderState = 'checking-owner' | 'owner' | 'transferring' | 'draining' | 'stopped';

const TRANSITIONS: Readonly<Record<UpgraderState, readonly UpgraderState[]>> = {
  'checking-owner': ['owner', 'stopped'],
  owner: ['transferring', 'stopped'],
  transferring: ['owner', 'draining', 'stopped'],
  draining: ['stopped'],
  stopped: [],
};

/** True when the machine may move from `from` to `to`. */
export function canTransition(from: UpgraderState, to: UpgraderState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Holds the current state and refuses illegal moves with a `BUG:` error. */
export class StateMachine {
  private current: UpgraderState = 'checking-owner';

  constructor(private readonly onChange: (to: UpgraderState, from: UpgraderState) => void) {}

  get state(): UpgraderState {
    return this.current;
  }

  /** Moves to `to`; throws ERR_TABLEROLL_BUG when the move is not in the table. */
  transition(to: UpgraderState): void {
    const from = this.current;
    if (!canTransition(from, to)) throw bug(`illegal state transition ${from} -> ${to}`);
    this.current = to;
    this.onChange(to, from);
  }
}
