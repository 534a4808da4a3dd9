#include "errors.h"

#include <uv.h>

namespace tableroll {

// Raw N-API calls on purpose: a poll callback can build an error while the environment is torn
// down, when property writes fail and node-addon-api would make that failure fatal.
static void SetField(napi_env env, napi_value object, const char* name, napi_value value) {
  if (value != nullptr) napi_set_named_property(env, object, name, value);
}

static napi_value String(napi_env env, const std::string& text) {
  napi_value value = nullptr;
  napi_create_string_utf8(env, text.data(), text.size(), &value);
  return value;
}

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& path) {
  const char* code = uv_err_name(-err);
  std::string message = std::string(syscall) + " " + code + (path.empty() ? "" : " " + path);
  napi_value error, errno_value = nullptr;
  napi_create_error(env, String(env, code), String(env, message), &error);
  napi_create_int32(env, -err, &errno_value);
  SetField(env, error, "errno", errno_value);
  SetField(env, error, "syscall", String(env, syscall));
  if (!path.empty()) SetField(env, error, "path", String(env, path));
  return Napi::Error(env, error);
}

Napi::Value ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& path) {
  ErrnoError(env, err, syscall, path).ThrowAsJavaScriptException();
  return {};
}

Napi::Value ThrowInetErrno(Napi::Env env, int err, const char* syscall,
                           const std::string& address, int port) {
  Napi::Error error = ErrnoError(env, err, syscall, address + ":" + std::to_string(port));
  Napi::Object fields = error.Value();
  fields.Delete("path");
  fields.Set("address", address);
  fields.Set("port", port);
  error.ThrowAsJavaScriptException();
  return {};
}

Napi::Value ThrowCoded(Napi::Error error, const char* code) {
  error.Value().Set("code", code);
  error.ThrowAsJavaScriptException();
  return {};
}

}  // namespace tableroll
