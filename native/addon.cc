// tableroll's native addon: syscalls over integer fds that Node core cannot make. It keeps no
// state of its own; policy, timeouts and retries live in TypeScript (src/native.ts). The one
// exception is liveroll's native lane (lane/), a proxy data path that keeps its connections and
// applies the proxy's rules itself, loaded by src/liveroll/proxy/native-lane.ts only.
#include "addon.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  tableroll::RegisterDescriptors(env, exports);
  tableroll::RegisterFdPassing(env, exports);
  tableroll::RegisterFiles(env, exports);
  tableroll::RegisterSockets(env, exports);
  tableroll::RegisterSocketInfo(env, exports);
  tableroll::RegisterPoller(env, exports);
  tableroll::RegisterMemory(env, exports);
  tableroll::RegisterNativeLane(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(tableroll, Init)
