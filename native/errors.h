// Node-style errors thrown by the addon, and the EINTR rule every syscall follows.
#pragma once

#include <napi.h>

#include <cerrno>
#include <string>

namespace tableroll {

// Retries a syscall interrupted by a signal. Never wrap close(): on Linux the fd is already gone.
// Calls that cannot report EINTR (socket, setsockopt, getsockopt, getsockname, fcntl other than
// F_SETLKW) are left unwrapped.
template <typename Call>
auto RetryOnEintr(Call call) {
  decltype(call()) result;
  do result = call();
  while (result == -1 && errno == EINTR);
  return result;
}

// An Error shaped like Node's syscall errors: code (libuv's errno name), negative errno, syscall,
// and path when one was involved. `err` is a positive errno value.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& path = "");

// The Throw* helpers leave the exception pending and return an empty value, so a binding can
// `return ThrowErrno(env, errno, "close");`.
Napi::Value ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& path = "");
// Like Node's exceptionWithHostPort: the error carries `address` and `port`.
Napi::Value ThrowInetErrno(Napi::Env env, int err, const char* syscall,
                           const std::string& address, int port);
// Throws `error` with a Node error code such as ERR_INVALID_ARG_TYPE.
Napi::Value ThrowCoded(Napi::Error error, const char* code);

}  // namespace tableroll
