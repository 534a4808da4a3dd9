// Sockets whose descriptors tableroll owns: the unix listener peers meet on and its client
// side, TCP and UDP sockets bound for handing over, and the sd_notify datagram. Every socket is
// created non-blocking and close-on-exec, and closed again on every error path.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <climits>
#include <cstddef>
#include <cstring>

#include "addon.h"
#include "arguments.h"
#include "errors.h"

namespace tableroll {

constexpr int kSocketFlags = SOCK_NONBLOCK | SOCK_CLOEXEC;

union SocketAddress {
  sockaddr any;
  sockaddr_un un;
  sockaddr_in v4;
  sockaddr_in6 v6;
};

// Returns the address length, or 0 with errno set. A leading '@' (when allowed) names the
// abstract namespace, whose names are not NUL-terminated: the length must not count one.
static socklen_t UnixAddress(const std::string& path, bool abstract_allowed, SocketAddress* addr) {
  bool abstract = abstract_allowed && !path.empty() && path[0] == '@';
  size_t size = path.size() + (abstract ? 0 : 1);
  if (path.empty() || size > sizeof(addr->un.sun_path)) {
    errno = path.empty() ? ENOENT : ENAMETOOLONG;
    return 0;
  }
  *addr = {};
  addr->un.sun_family = AF_UNIX;
  memcpy(addr->un.sun_path, path.data(), path.size());
  if (abstract) addr->un.sun_path[0] = '\0';
  return offsetof(sockaddr_un, sun_path) + size;
}

// Returns the address length, or 0 when `text` is not a numeric address of `family`.
static socklen_t InetAddress(int family, const std::string& text, int port, SocketAddress* addr) {
  *addr = {};
  if (family == 4) {
    addr->v4.sin_family = AF_INET;
    addr->v4.sin_port = htons(port);
    return inet_pton(AF_INET, text.c_str(), &addr->v4.sin_addr) == 1 ? sizeof(addr->v4) : 0;
  }
  addr->v6.sin6_family = AF_INET6;
  addr->v6.sin6_port = htons(port);
  return inet_pton(AF_INET6, text.c_str(), &addr->v6.sin6_addr) == 1 ? sizeof(addr->v6) : 0;
}

// A new socket prepared by `setup`, which returns the name of the syscall that failed or null.
// On failure the socket is closed, errno kept, *failed set, and -1 returned.
template <typename Setup>
static int OpenSocket(int domain, int type, const char** failed, Setup setup) {
  int fd = socket(domain, type | kSocketFlags, 0);
  *failed = fd == -1 ? "socket" : setup(fd);
  if (*failed == nullptr) return fd;
  int err = errno;
  if (fd != -1) close(fd);
  errno = err;
  return -1;
}

// Binds by path natively because libuv unlinks the path of a unix server it closes: a draining
// process would delete the socket its successor serves. Nothing here unlinks either.
static Napi::Value UnixListen(const Napi::CallbackInfo& info) {
  std::string path;
  int backlog;
  SocketAddress addr;
  if (!ReadPath(info, 0, "path", &path) || !ReadInt(info, 1, "backlog", 0, INT_MAX, &backlog)) {
    return {};
  }
  socklen_t length = UnixAddress(path, false, &addr);
  const char* failed = "bind";
  int fd = length == 0 ? -1 : OpenSocket(AF_UNIX, SOCK_STREAM, &failed, [&](int s) -> const char* {
    if (RetryOnEintr([&] { return bind(s, &addr.any, length); }) == -1) return "bind";
    return RetryOnEintr([&] { return listen(s, backlog); }) == -1 ? "listen" : nullptr;
  });
  if (fd == -1) return ThrowErrno(info.Env(), errno, failed, path);
  return Napi::Number::New(info.Env(), fd);
}

// A unix connect completes or fails at once; EAGAIN means the listener's backlog is full.
static Napi::Value UnixConnect(const Napi::CallbackInfo& info) {
  std::string path;
  SocketAddress addr;
  if (!ReadPath(info, 0, "path", &path)) return {};
  socklen_t length = UnixAddress(path, false, &addr);
  const char* failed = "connect";
  int fd = length == 0 ? -1 : OpenSocket(AF_UNIX, SOCK_STREAM, &failed, [&](int s) -> const char* {
    return RetryOnEintr([&] { return connect(s, &addr.any, length); }) == -1 ? "connect" : nullptr;
  });
  if (fd == -1) return ThrowErrno(info.Env(), errno, failed, path);
  return Napi::Number::New(info.Env(), fd);
}

static Napi::Value Accept(const Napi::CallbackInfo& info) {
  int fd;
  if (!ReadFd(info, 0, &fd)) return {};
  int conn = RetryOnEintr([&] { return accept4(fd, nullptr, nullptr, kSocketFlags); });
  if (conn == -1 && errno != EAGAIN) return ThrowErrno(info.Env(), errno, "accept");
  return Napi::Number::New(info.Env(), conn);
}

// inetListen(address, port, family, backlog, flags) and udpBind(address, port, family, flags).
static Napi::Value OpenInet(const Napi::CallbackInfo& info, int type) {
  bool stream = type == SOCK_STREAM;
  std::string address;
  int port, family, backlog = 0;
  Napi::Object flags;
  if (!ReadPath(info, 0, "address", &address) || !ReadInt(info, 1, "port", 0, 65535, &port) ||
      !ReadInt(info, 2, "family", 4, 6, &family) ||
      (stream && !ReadInt(info, 3, "backlog", 0, INT_MAX, &backlog)) ||
      !ReadOptions(info, stream ? 4 : 3, "flags", &flags)) {
    return {};
  }
  if (family == 5) {
    return ThrowCoded(Napi::RangeError::New(info.Env(), "The value of \"family\" must be 4 or 6"),
                      "ERR_OUT_OF_RANGE");
  }
  SocketAddress addr;
  socklen_t length = InetAddress(family, address, port, &addr);
  if (length == 0) return ThrowInetErrno(info.Env(), EINVAL, "inet_pton", address, port);
  int one = 1, v6only = flags.Get("ipv6Only").ToBoolean() ? 1 : 0;
  bool reuse_addr = stream || flags.Get("reuseAddr").ToBoolean();
  bool reuse_port = flags.Get("reusePort").ToBoolean();
  const char* failed;
  int fd = OpenSocket(addr.any.sa_family, type, &failed, [&](int s) -> const char* {
    if ((reuse_addr && setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1) ||
        (reuse_port && setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1) ||
        // Set either way: the default comes from a sysctl (net.ipv6.bindv6only).
        (family == 6 && setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) == -1)) {
      return "setsockopt";
    }
    if (RetryOnEintr([&] { return bind(s, &addr.any, length); }) == -1) return "bind";
    if (stream && RetryOnEintr([&] { return listen(s, backlog); }) == -1) return "listen";
    return nullptr;
  });
  if (fd == -1) return ThrowInetErrno(info.Env(), errno, failed, address, port);
  return Napi::Number::New(info.Env(), fd);
}

static Napi::Value InetListen(const Napi::CallbackInfo& info) { return OpenInet(info, SOCK_STREAM); }

static Napi::Value UdpBind(const Napi::CallbackInfo& info) { return OpenInet(info, SOCK_DGRAM); }

// sd_notify. A non-blocking socket, so a full receive queue is an EAGAIN rather than a stall.
static Napi::Value SendDatagram(const Napi::CallbackInfo& info) {
  std::string path;
  uint8_t* data;
  size_t size;
  SocketAddress addr;
  if (!ReadPath(info, 0, "path", &path) || !ReadBytes(info, 1, "data", &data, &size)) return {};
  socklen_t length = UnixAddress(path, true, &addr);
  const char* failed = "sendto";
  int fd = length == 0 ? -1 : OpenSocket(AF_UNIX, SOCK_DGRAM, &failed, [&](int s) -> const char* {
    auto send = [&] { return sendto(s, data, size, MSG_NOSIGNAL, &addr.any, length); };
    return RetryOnEintr(send) == -1 ? "sendto" : nullptr;
  });
  if (fd == -1) return ThrowErrno(info.Env(), errno, failed, path);
  close(fd);
  return info.Env().Undefined();
}

static Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  int fd;
  ucred cred;
  socklen_t length = sizeof(cred);
  if (!ReadFd(info, 0, &fd)) return {};
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) == -1) {
    return ThrowErrno(info.Env(), errno, "getsockopt");
  }
  Napi::Object result = Napi::Object::New(info.Env());
  result.Set("pid", cred.pid);
  result.Set("uid", cred.uid);
  result.Set("gid", cred.gid);
  return result;
}

void RegisterSockets(Napi::Env env, Napi::Object exports) {
  exports.Set("unixListen", Napi::Function::New(env, UnixListen, "unixListen"));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect, "unixConnect"));
  exports.Set("accept", Napi::Function::New(env, Accept, "accept"));
  exports.Set("inetListen", Napi::Function::New(env, InetListen, "inetListen"));
  exports.Set("udpBind", Napi::Function::New(env, UdpBind, "udpBind"));
  exports.Set("sendDatagram", Napi::Function::New(env, SendDatagram, "sendDatagram"));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials, "peerCredentials"));
}

}  // namespace tableroll
