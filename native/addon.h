// Each file registers the exports it implements.
#pragma once

#include <napi.h>

namespace tableroll {

void RegisterDescriptors(Napi::Env env, Napi::Object exports);
void RegisterFdPassing(Napi::Env env, Napi::Object exports);
void RegisterFiles(Napi::Env env, Napi::Object exports);
void RegisterSockets(Napi::Env env, Napi::Object exports);
void RegisterSocketInfo(Napi::Env env, Napi::Object exports);
void RegisterPoller(Napi::Env env, Napi::Object exports);
void RegisterMemory(Napi::Env env, Napi::Object exports);
void RegisterNativeLane(Napi::Env env, Napi::Object exports);

}  // namespace tableroll
