/** The errors both sides of the Upgrader raise about a handoff. */
import { ErrorCodes, TablerollError } from './errors.js';

export function stoppedError(): TablerollError {
  return new TablerollError(ErrorCodes.STOPPED, 'the upgrader was stopped', { final: true });
}

export function handoffError(message: string): TablerollError {
  return new TablerollError(ErrorCodes.HANDOFF_FAILED, message, { final: true });
}

export function asHandoffFailure(err: unknown): TablerollError {
  if (err instanceof TablerollError) return err;
  return new TablerollError(ErrorCodes.HANDOFF_FAILED, 'the handoff failed', { cause: err });
}
