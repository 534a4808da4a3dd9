/**
 * A diagnostic preload for the handoff benchmark (`node --import` it): tableroll's modules are
 * compiled in full as they load (V8's --no-lazy, switched on for that one import and off again),
 * while Node's own code and everything loaded later stays lazy. Set against the headline, it
 * shows how much of a fresh newcomer's handoff is V8 compiling tableroll's functions on their
 * first call. Not for applications: Node documents changing V8 flags at run time as unsafe.
 */
import v8 from 'node:v8';

v8.setFlagsFromString('--no-lazy');
try {
  await import('tableroll');
} finally {
  v8.setFlagsFromString('--lazy');
}
