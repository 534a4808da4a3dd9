// Argument checks in the manner of Node's validators. Each reader throws a TypeError
// (ERR_INVALID_ARG_TYPE) or RangeError (ERR_OUT_OF_RANGE) and returns false when the argument
// is unusable, so a caller writes `if (!ReadFd(info, 0, &fd)) return {};`.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace tableroll {

bool ReadInt(const Napi::CallbackInfo& info, size_t index, const char* name, int64_t min,
             int64_t max, int* out);
bool ReadFd(const Napi::CallbackInfo& info, size_t index, int* out);
bool ReadBool(const Napi::CallbackInfo& info, size_t index, const char* name, bool* out);
// A string without NUL bytes: the kernel would silently cut a path at the first one.
bool ReadPath(const Napi::CallbackInfo& info, size_t index, const char* name, std::string* out);
bool ReadBytes(const Napi::CallbackInfo& info, size_t index, const char* name, uint8_t** data,
               size_t* length);
// An options object; undefined reads as an empty one.
bool ReadOptions(const Napi::CallbackInfo& info, size_t index, const char* name,
                 Napi::Object* out);

}  // namespace tableroll
