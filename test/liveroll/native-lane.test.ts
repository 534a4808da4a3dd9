/**
 * The proxy's tests again, with the native lane (src/liveroll/proxy/native-lane.ts) in front:
 * every rule they check through real sockets must hold when plain requests are served in C++
 * and the rest handed back to http.Server.
 */
import { useNativeLane } from '../support/proxy-kit.js';

useNativeLane(true);
await import('./proxy.test.js');
await import('./upstream.test.js');
await import('./fast-lane.test.js');
