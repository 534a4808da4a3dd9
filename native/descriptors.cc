// Plain descriptor operations: close, dup, close-on-exec and the upgrade lock.
#include <fcntl.h>
#include <pthread.h>
#include <algorithm>
#include <climits>
#include <sys/file.h>
#include <sys/timerfd.h>
#include <unistd.h>

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

// An optional lowest number for the copy (F_DUPFD_CLOEXEC takes the lowest free one from it).
static Napi::Value Dup(const Napi::CallbackInfo& info) {
  int fd, lowest = 0;
  if (!ReadFd(info, 0, &fd)) return {};
  if (info.Length() > 1 && !ReadInt(info, 1, "lowest", 0, INT_MAX, &lowest)) return {};
  int copy = RetryOnEintr([&] { return fcntl(fd, F_DUPFD_CLOEXEC, lowest); });
  if (copy == -1) return ThrowErrno(info.Env(), errno, "fcntl");
  return Napi::Number::New(info.Env(), copy);
}

// Grows the fd table to hold `highest` on a short-lived thread of its own, and returns at once.
// In a multi-threaded process every growth waits for an RCU grace period (8 to 17 ms here);
// started before a burst of incoming descriptors, the wait overlaps with other work, and only a
// descriptor that needs the bigger table waits for the growth to finish. The thread copies an
// fd the caller keeps open to `highest` and closes the copy at once, so no extra descriptor
// stays open while it waits. Should the caller close that fd first, the copy fails (or copies
// whatever now has that number, for a moment): either way nothing is left behind. A raw
// detached thread with a small stack: cheaper to start than Node's pool work, and nothing to
// clean up at exit.
struct Growth {
  int fd;
  int highest;
};

static void* GrowInBackground(void* arg) {
  auto* growth = static_cast<Growth*>(arg);
  int copy = fcntl(growth->fd, F_DUPFD_CLOEXEC, growth->highest);
  if (copy != -1) close(copy);
  delete growth;
  return nullptr;
}

static Napi::Value GrowFdTable(const Napi::CallbackInfo& info) {
  int fd, highest;
  if (!ReadFd(info, 0, &fd) || !ReadInt(info, 1, "highest", 0, INT_MAX, &highest)) return {};
  pthread_attr_t attr;
  pthread_t thread;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  auto* growth = new Growth{fd, highest};
  // Best effort: without a thread the table grows when it must.
  if (pthread_create(&thread, &attr, GrowInBackground, growth) != 0) delete growth;
  pthread_attr_destroy(&attr);
  return info.Env().Undefined();
}

// A one-shot timer as a descriptor (timerfd, CLOCK_MONOTONIC): readable `ms` milliseconds from
// now, so a Poller can wait for it on Node's loop. Deadlines use it instead of setTimeout: a
// handoff runs once per process, and the first setTimeout of a process compiles a chain of
// Node's internal JavaScript (timer lists, a priority queue, async ids) worth ~0.3 ms.
static Napi::Value TimerFd(const Napi::CallbackInfo& info) {
  double ms;
  if (!info[0].IsNumber()) {
    return ThrowCoded(
        Napi::TypeError::New(info.Env(), "The \"ms\" argument must be of type number"),
        "ERR_INVALID_ARG_TYPE");
  }
  ms = info[0].As<Napi::Number>().DoubleValue();
  if (!(ms >= 0 && ms <= 1e12)) {
    return ThrowCoded(Napi::RangeError::New(info.Env(), "The value of \"ms\" is out of range"),
                      "ERR_OUT_OF_RANGE");
  }
  int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (fd == -1) return ThrowErrno(info.Env(), errno, "timerfd_create");
  // A zero it_value disarms a timerfd: the shortest wait is one nanosecond.
  int64_t ns = std::max<int64_t>(1, static_cast<int64_t>(ms * 1e6));
  itimerspec when{};
  when.it_value.tv_sec = ns / 1000000000;
  when.it_value.tv_nsec = ns % 1000000000;
  if (timerfd_settime(fd, 0, &when, nullptr) == -1) {
    int err = errno;
    close(fd);
    return ThrowErrno(info.Env(), err, "timerfd_settime");
  }
  return Napi::Number::New(info.Env(), fd);
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
  exports.Set("timerFd", Napi::Function::New(env, TimerFd, "timerFd"));
  exports.Set("setCloexec", Napi::Function::New(env, SetCloexec, "setCloexec"));
  exports.Set("flockExclusive", Napi::Function::New(env, FlockExclusive, "flockExclusive"));
}

}  // namespace tableroll
