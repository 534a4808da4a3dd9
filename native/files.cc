// The few file syscalls of the coordination directory (mkdir, open, stat, chmod, pread, pwrite,
// ftruncate). Node's fs makes them too, but a handoff runs once per process with cold code, and
// each first call of an fs function compiles a chain of Node's internal JavaScript (argument
// validation, Stats objects): about half a millisecond of the newcomer's handoff. These are
// plain calls with Node-style errors.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <string>

#include "addon.h"
#include "arguments.h"
#include "errors.h"

namespace tableroll {

static bool ReadMode(const Napi::CallbackInfo& info, size_t index, int* mode) {
  return ReadInt(info, index, "mode", 0, 07777, mode);
}

static Napi::Value StatObject(Napi::Env env, const struct stat& st) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("mode", static_cast<double>(st.st_mode));
  result.Set("uid", static_cast<double>(st.st_uid));
  result.Set("size", static_cast<double>(st.st_size));
  result.Set("ino", static_cast<double>(st.st_ino));
  result.Set("dev", static_cast<double>(st.st_dev));
  result.Set("nlink", static_cast<double>(st.st_nlink));
  result.Set("mtimeMs", static_cast<double>(st.st_mtim.tv_sec) * 1e3 +
                            static_cast<double>(st.st_mtim.tv_nsec) / 1e6);
  return result;
}

// True when created, false when something by that name exists (the caller checks what).
static Napi::Value Mkdir(const Napi::CallbackInfo& info) {
  std::string path;
  int mode;
  if (!ReadPath(info, 0, "path", &path) || !ReadMode(info, 1, &mode)) return {};
  if (mkdir(path.c_str(), mode) == 0) return Napi::Boolean::New(info.Env(), true);
  if (errno == EEXIST) return Napi::Boolean::New(info.Env(), false);
  return ThrowErrno(info.Env(), errno, "mkdir", path);
}

static Napi::Value Stat(const Napi::CallbackInfo& info) {
  std::string path;
  struct stat st;
  if (!ReadPath(info, 0, "path", &path)) return {};
  if (stat(path.c_str(), &st) == -1) return ThrowErrno(info.Env(), errno, "stat", path);
  return StatObject(info.Env(), st);
}

// The link itself, not what it points to: the coordination directory's checks refuse symlinks.
static Napi::Value Lstat(const Napi::CallbackInfo& info) {
  std::string path;
  struct stat st;
  if (!ReadPath(info, 0, "path", &path)) return {};
  if (lstat(path.c_str(), &st) == -1) return ThrowErrno(info.Env(), errno, "lstat", path);
  return StatObject(info.Env(), st);
}

static Napi::Value Fstat(const Napi::CallbackInfo& info) {
  int fd;
  struct stat st;
  if (!ReadFd(info, 0, &fd)) return {};
  if (fstat(fd, &st) == -1) return ThrowErrno(info.Env(), errno, "fstat");
  return StatObject(info.Env(), st);
}

// Always close-on-exec, as Node opens files.
static Napi::Value Open(const Napi::CallbackInfo& info) {
  std::string path;
  int flags, mode;
  if (!ReadPath(info, 0, "path", &path) || !ReadInt(info, 1, "flags", 0, INT_MAX, &flags) ||
      !ReadMode(info, 2, &mode)) {
    return {};
  }
  int fd = RetryOnEintr([&] { return open(path.c_str(), flags | O_CLOEXEC, mode); });
  if (fd == -1) return ThrowErrno(info.Env(), errno, "open", path);
  return Napi::Number::New(info.Env(), fd);
}

static Napi::Value Chmod(const Napi::CallbackInfo& info) {
  std::string path;
  int mode;
  if (!ReadPath(info, 0, "path", &path) || !ReadMode(info, 1, &mode)) return {};
  if (chmod(path.c_str(), mode) == -1) return ThrowErrno(info.Env(), errno, "chmod", path);
  return info.Env().Undefined();
}

static Napi::Value Fchmod(const Napi::CallbackInfo& info) {
  int fd, mode;
  if (!ReadFd(info, 0, &fd) || !ReadMode(info, 1, &mode)) return {};
  if (fchmod(fd, mode) == -1) return ThrowErrno(info.Env(), errno, "fchmod");
  return info.Env().Undefined();
}

// One pread into all of `buf`: the bytes read, 0 at the end of the file.
static Napi::Value Pread(const Napi::CallbackInfo& info) {
  int fd, position;
  uint8_t* data;
  size_t length;
  if (!ReadFd(info, 0, &fd) || !ReadBytes(info, 1, "buf", &data, &length) ||
      !ReadInt(info, 2, "position", 0, INT_MAX, &position)) {
    return {};
  }
  ssize_t got = RetryOnEintr([&] { return pread(fd, data, length, position); });
  if (got == -1) return ThrowErrno(info.Env(), errno, "read");
  return Napi::Number::New(info.Env(), static_cast<double>(got));
}

// One pwrite of all of `data`: the bytes written (possibly fewer).
static Napi::Value Pwrite(const Napi::CallbackInfo& info) {
  int fd, position;
  uint8_t* data;
  size_t length;
  if (!ReadFd(info, 0, &fd) || !ReadBytes(info, 1, "data", &data, &length) ||
      !ReadInt(info, 2, "position", 0, INT_MAX, &position)) {
    return {};
  }
  ssize_t put = RetryOnEintr([&] { return pwrite(fd, data, length, position); });
  if (put == -1) return ThrowErrno(info.Env(), errno, "write");
  return Napi::Number::New(info.Env(), static_cast<double>(put));
}

static Napi::Value Ftruncate(const Napi::CallbackInfo& info) {
  int fd, length;
  if (!ReadFd(info, 0, &fd) || !ReadInt(info, 1, "length", 0, INT_MAX, &length)) return {};
  if (RetryOnEintr([&] { return ftruncate(fd, length); }) == -1) {
    return ThrowErrno(info.Env(), errno, "ftruncate");
  }
  return info.Env().Undefined();
}

void RegisterFiles(Napi::Env env, Napi::Object exports) {
  exports.Set("mkdir", Napi::Function::New(env, Mkdir, "mkdir"));
  exports.Set("stat", Napi::Function::New(env, Stat, "stat"));
  exports.Set("fstat", Napi::Function::New(env, Fstat, "fstat"));
  exports.Set("lstat", Napi::Function::New(env, Lstat, "lstat"));
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("chmod", Napi::Function::New(env, Chmod, "chmod"));
  exports.Set("fchmod", Napi::Function::New(env, Fchmod, "fchmod"));
  exports.Set("pread", Napi::Function::New(env, Pread, "pread"));
  exports.Set("pwrite", Napi::Function::New(env, Pwrite, "pwrite"));
  exports.Set("ftruncate", Napi::Function::New(env, Ftruncate, "ftruncate"));
}

}  // namespace tableroll
