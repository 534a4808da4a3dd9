// What the kernel knows about a socket, so TypeScript can check what it inherited or received
// before handing it to Node.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstring>

#include "addon.h"
#include "arguments.h"
#include "errors.h"

namespace tableroll {

static int IntOption(int fd, int name, int* value) {
  socklen_t length = sizeof(*value);
  return getsockopt(fd, SOL_SOCKET, name, value, &length);
}

static const char* FamilyName(int domain) {
  return domain == AF_INET    ? "inet"
         : domain == AF_INET6 ? "inet6"
         : domain == AF_UNIX  ? "unix"
                              : "other";
}

static const char* TypeName(int type) {
  return type == SOCK_STREAM      ? "stream"
         : type == SOCK_DGRAM     ? "dgram"
         : type == SOCK_SEQPACKET ? "seqpacket"
                                  : "other";
}

// Unnamed: no path bytes. Abstract: starts with NUL and is exactly as long as the address says.
// Path name: ends at its NUL.
static std::string UnixPath(const sockaddr_un& addr, socklen_t length) {
  if (length <= offsetof(sockaddr_un, sun_path)) return "";
  size_t size = length - offsetof(sockaddr_un, sun_path);
  if (addr.sun_path[0] == '\0') return "@" + std::string(addr.sun_path + 1, size - 1);
  return std::string(addr.sun_path, strnlen(addr.sun_path, size));
}

static Napi::Value SocketInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd, domain, type, listening;
  if (!ReadFd(info, 0, &fd)) return {};
  if (IntOption(fd, SO_DOMAIN, &domain) == -1) {
    return errno == ENOTSOCK ? env.Null() : ThrowErrno(env, errno, "getsockopt");
  }
  if (IntOption(fd, SO_TYPE, &type) == -1 || IntOption(fd, SO_ACCEPTCONN, &listening) == -1) {
    return ThrowErrno(env, errno, "getsockopt");
  }
  union {
    sockaddr any;
    sockaddr_un un;
    sockaddr_in v4;
    sockaddr_in6 v6;
  } addr{};
  socklen_t length = sizeof(addr);
  if (getsockname(fd, &addr.any, &length) == -1) return ThrowErrno(env, errno, "getsockname");
  char text[INET6_ADDRSTRLEN] = "";
  int port = 0;
  if (addr.any.sa_family == AF_INET) {
    inet_ntop(AF_INET, &addr.v4.sin_addr, text, sizeof(text));
    port = ntohs(addr.v4.sin_port);
  } else if (addr.any.sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &addr.v6.sin6_addr, text, sizeof(text));
    port = ntohs(addr.v6.sin6_port);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("family", FamilyName(domain));
  result.Set("type", TypeName(type));
  result.Set("listening", listening != 0);
  result.Set("address", text);
  result.Set("port", port);
  result.Set("path", addr.any.sa_family == AF_UNIX ? UnixPath(addr.un, length) : "");
  return result;
}

void RegisterSocketInfo(Napi::Env env, Napi::Object exports) {
  exports.Set("socketInfo", Napi::Function::New(env, SocketInfo, "socketInfo"));
}

}  // namespace tableroll
