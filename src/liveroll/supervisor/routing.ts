/** What the supervisor hands its children to, and what asks it for an update. */
import type { BackendAddress } from '../proxy/rotation.js';

/**
 * Where the supervisor puts healthy children and takes retiring ones from. In proxy mode it is
 * the reverse proxy; in direct mode the children accept on the public socket themselves, so
 * there is no rotation and a child drains on its own after SIGTERM.
 */
export interface Router {
  add(backend: BackendAddress): void;
  /** Takes the child out of the rotation; resolves true once its requests finished in time. */
  retire(name: string, timeoutMs: number): Promise<boolean>;
  forget(name: string): Promise<void>;
}

/** The router of direct mode: nothing to route. */
export const directRouter: Router = {
  add: () => {},
  retire: () => Promise.resolve(true),
  forget: () => Promise.resolve(),
};

/** The public socket a direct-mode child receives as fd 3. */
export interface SharedListener {
  fd: number;
  /** Its LISTEN_FDNAMES name. */
  name: string;
}

/** Where children listen; the proxy and the health check connect there. */
export const CHILD_HOST = '127.0.0.1';

/** What asked for an update. */
export type UpdateReason = 'start' | 'interval' | 'sighup' | 'child-exit';
