// Plain descriptor operations: close, dup, close-on-exec and the upgrade lock.
#include <fcntl.h>
#include <climits>
#include <sys/file.h>
#include <unistd.h>

#include <thread>

#include "addon.h"
#include "arguments.h"
#include "errors.h"

namespace tableroll {

static Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd;
  if (!ReadFd(info, 0, &fd)) return {};
  // Not retried: Linux releases the descriptor even when close() reports EINTR, and a retry
  // could close a descriptor another thread has just been given.
  if (close(fd) == -1 && errno != EINTR) return ThrowErrno(info.Env(), errno, "close");
  return info.Env().Undefined();
}

// An optional lowest number for the copy: duplicating to a high number grows the fd table in
// one step, where receiving many descriptors would grow it several times, each growth waiting
// for an RCU grace period in a multi-threaded process.
static Napi::Value Dup(const Napi::CallbackInfo& info) {
  int fd, lowest = 0;
  if (!ReadFd(info, 0, &fd)) return {};
  if (info.Length() > 1 && !ReadInt(info, 1, "lowest", 0, INT_MAX, &lowest)) return {};
  int copy = RetryOnEintr([&] { return fcntl(fd, F_DUPFD_CLOEXEC, lowest); });
  if (copy == -1) return ThrowErrno(info.Env(), errno, "fcntl");
  return Napi::Number::New(info.Env(), copy);
}

// Grows the fd table to hold `highest` on a thread of its own, and returns at once. In a
// multi-threaded process every growth waits for an RCU grace period (5 to 10 ms here); started
// before a burst of incoming descriptors, the wait overlaps with receiving the first ones, and
// only a descriptor that needs the bigger table waits for the growth to finish.
static Napi::Value GrowFdTable(const Napi::CallbackInfo& info) {
  int highest;
  if (!ReadInt(info, 0, "highest", 0, INT_MAX, &highest)) return {};
  std::thread([highest] {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd == -1) return;
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, highest);
    if (copy != -1) close(copy);
    close(fd);
  }).detach();
  return info.Env().Undefined();
}

static Napi::Value SetCloexec(const Napi::CallbackInfo& info) {
  int fd, flags;
  bool on;
  if (!ReadFd(info, 0, &fd) || !ReadBool(info, 1, "on", &on)) return {};
  if ((flags = fcntl(fd, F_GETFD)) == -1 ||
      fcntl(fd, F_SETFD, on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC) == -1) {
    return ThrowErrno(info.Env(), errno, "fcntl");
  }
  return info.Env().Undefined();
}

// The lock belongs to the open file description, so the kernel drops it when the holder dies.
static Napi::Value FlockExclusive(const Napi::CallbackInfo& info) {
  int fd;
  if (!ReadFd(info, 0, &fd)) return {};
  if (RetryOnEintr([&] { return flock(fd, LOCK_EX | LOCK_NB); }) == 0) {
    return Napi::Boolean::New(info.Env(), true);
  }
  if (errno == EWOULDBLOCK) return Napi::Boolean::New(info.Env(), false);
  return ThrowErrno(info.Env(), errno, "flock");
}

void RegisterDescriptors(Napi::Env env, Napi::Object exports) {
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("dup", Napi::Function::New(env, Dup, "dup"));
  exports.Set("growFdTable", Napi::Function::New(env, GrowFdTable, "growFdTable"));
  exports.Set("setCloexec", Napi::Function::New(env, SetCloexec, "setCloexec"));
  exports.Set("flockExclusive", Napi::Function::New(env, FlockExclusive, "flockExclusive"));
}

}  // namespace tableroll
