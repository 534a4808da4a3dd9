/**
 * One allocator setting for processes that move bulk data through Node's sockets, such as
 * liveroll's proxy.
 *
 * Node reads each socket chunk into a fresh block from the C library's malloc, freed when the
 * garbage collector finds the chunk unused. A proxy has many MiB of such blocks alive between
 * collections. When they are freed, glibc returns the top of its heap to the kernel as soon as
 * more than 128 KiB is free there, and the next reads fault those pages back in one by one.
 * Through liveroll's proxy that was up to 40,000 minor faults per 256 MiB moved, and 2.4 times
 * the system time of a plain Node pipe. With a 4 MiB threshold the faults stayed; with 32 MiB
 * they went to near zero (docs/benchmarks.md).
 */
import { native } from './native.js';

/** What `setMallocTrimThreshold` did. */
export type MallocTrimResult =
  /** The threshold is now the one asked for. */
  | 'set'
  /** The environment sets it already (`MALLOC_TRIM_THRESHOLD_` or `GLIBC_TUNABLES`): left alone. */
  | 'environment'
  /** The C library has no such setting (musl, for example). */
  | 'unsupported';

/** The threshold liveroll's proxy asks for (4 MiB was measured too small there). */
export const BULK_TRIM_THRESHOLD = 32 * 1024 * 1024;

/**
 * Lets glibc keep up to `bytes` of freed memory at the top of its heap instead of 128 KiB
 * (`mallopt(M_TRIM_THRESHOLD)`), so that a process streaming large bodies does not hand pages
 * back to the kernel after each burst and fault them in again. The cost is that much resident
 * memory kept after a burst. A threshold set by the process's environment wins: the call then
 * changes nothing. Throws ERR_OUT_OF_RANGE for a negative or non-integer `bytes` or one of
 * 2 GiB or more.
 */
export function setMallocTrimThreshold(
  bytes: number = BULK_TRIM_THRESHOLD,
  env: NodeJS.ProcessEnv = process.env,
): MallocTrimResult {
  if (env.MALLOC_TRIM_THRESHOLD_ !== undefined) return 'environment';
  if ((env.GLIBC_TUNABLES ?? '').includes('glibc.malloc.trim_threshold')) return 'environment';
  return native.setMallocTrimThreshold(bytes) ? 'set' : 'unsupported';
}
