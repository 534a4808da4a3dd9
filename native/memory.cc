// The C library's allocator, for a process that moves bulk data through Node's sockets.
//
// Node reads a socket into a fresh block from malloc, freed when the garbage collector finds it
// unused. When many MiB of them are freed together, glibc gives the top of the heap back to the
// kernel (past M_TRIM_THRESHOLD, 128 KiB by default) and the next reads fault every page in
// again: up to 40,000 minor faults per 256 MiB through liveroll, and 2.4x a plain pipe's system
// time. A higher threshold keeps those pages (src/memory.ts).
#include <malloc.h>

#include <climits>

#include "addon.h"
#include "arguments.h"

namespace tableroll {

// True when the threshold was set; false where the C library has no such knob (musl).
static Napi::Value SetMallocTrimThreshold(const Napi::CallbackInfo& info) {
  int bytes;
  if (!ReadInt(info, 0, "bytes", 0, INT_MAX, &bytes)) return {};
#if defined(__GLIBC__)
  return Napi::Boolean::New(info.Env(), mallopt(M_TRIM_THRESHOLD, bytes) == 1);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

void RegisterMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("setMallocTrimThreshold",
              Napi::Function::New(env, SetMallocTrimThreshold, "setMallocTrimThreshold"));
}

}  // namespace tableroll
