// Bytes with descriptors attached (SCM_RIGHTS) over a unix stream socket.
//
// The kernel keeps descriptors with the bytes they were sent with: a read never continues past
// the end of a write that carried descriptors, so the fds one recv returns belong to the last
// bytes it returned. Plain bytes written before them may be merged in front.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <vector>

#include "addon.h"
#include "arguments.h"
#include "errors.h"

namespace tableroll {

constexpr size_t kMaxFds = 253;  // SCM_MAX_FD: the kernel refuses more in one message

// MSG_DONTWAIT on both sides keeps these calls non-blocking even on a blocking-mode fd.
static Napi::Value Send(const Napi::CallbackInfo& info) {
  int fd, pass_fd;
  uint8_t* data;
  size_t length;
  if (!ReadFd(info, 0, &fd) || !ReadBytes(info, 1, "data", &data, &length) ||
      !ReadInt(info, 2, "passFd", -1, INT_MAX, &pass_fd)) {
    return {};
  }
  // With no bytes to ride on, a stream socket drops the descriptor and sendmsg still succeeds.
  if (pass_fd >= 0 && length == 0) {
    return ThrowCoded(Napi::RangeError::New(info.Env(), "A descriptor needs at least one byte"),
                      "ERR_OUT_OF_RANGE");
  }
  iovec iov{data, length};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (pass_fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &pass_fd, sizeof(int));
  }
  ssize_t sent = RetryOnEintr([&] { return sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT); });
  if (sent == -1 && errno != EAGAIN) return ThrowErrno(info.Env(), errno, "sendmsg");
  return Napi::Number::New(info.Env(), static_cast<double>(sent));
}

static std::vector<int> ReceivedFds(msghdr* msg) {
  std::vector<int> fds;
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(msg, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    fds.resize(fds.size() + count);
    memcpy(fds.data() + fds.size() - count, CMSG_DATA(cmsg), count * sizeof(int));
  }
  return fds;
}

// One non-blocking recvmsg into `data`, with room for the most descriptors one message can carry.
// Returns the bytes (-1 with errno set); `fds` gets the descriptors, and `truncated` tells that
// some were lost (MSG_CTRUNC), in which case those that arrived are already closed: the message
// is unusable, and they would leak if nobody saw them.
static ssize_t ReceiveOne(int fd, uint8_t* data, size_t length, std::vector<int>* fds,
                          bool* truncated) {
  iovec iov{data, length};
  alignas(cmsghdr) char control[CMSG_SPACE(kMaxFds * sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t bytes = RetryOnEintr([&] { return recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT); });
  if (bytes == -1) return -1;
  *fds = ReceivedFds(&msg);
  *truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  if (*truncated) {
    for (int received : *fds) close(received);
    fds->clear();
  }
  return bytes;
}

static Napi::Value Recv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd, offset, length;
  uint8_t* data;
  size_t size;
  if (!ReadFd(info, 0, &fd) || !ReadBytes(info, 1, "buf", &data, &size) ||
      !ReadInt(info, 2, "offset", 0, std::min<size_t>(size, INT_MAX), &offset) ||
      // At least one byte, so that reading 0 bytes can only mean end of stream.
      !ReadInt(info, 3, "length", 1, std::min<size_t>(size - offset, INT_MAX), &length)) {
    return {};
  }
  std::vector<int> fds;
  bool truncated;
  ssize_t bytes = ReceiveOne(fd, data + offset, length, &fds, &truncated);
  if (bytes == -1) return errno == EAGAIN ? env.Null() : ThrowErrno(env, errno, "recvmsg");
  Napi::Array array = Napi::Array::New(env, fds.size());
  for (size_t i = 0; i < fds.size(); i++) array.Set(i, fds[i]);
  Napi::Object result = Napi::Object::New(env);
  result.Set("bytes", static_cast<double>(bytes));
  result.Set("fds", array);
  result.Set("truncated", truncated);
  return result;
}

// Up to `max` messages in a row, each read into `buf` from its start (their bytes are only
// counted), without waiting: the receiving half of a burst of one-descriptor messages, in one
// call instead of one per descriptor. Returns the numbers [bytes, fdCount, ...fds] per message,
// fdCount -1 for a truncated message (its descriptors closed); null when nothing was there. It
// stops after the end of stream or a message without exactly one descriptor, for the caller to
// judge. An error met once something was read ends the batch without being thrown: a lasting
// one (EBADF) is thrown by the next call, but the kernel clears a one-shot socket error when it
// reports it, so a reset peer then reads as the end of stream.
static Napi::Value RecvEach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd, max;
  uint8_t* data;
  size_t size;
  if (!ReadFd(info, 0, &fd) || !ReadBytes(info, 1, "buf", &data, &size) ||
      !ReadInt(info, 2, "max", 1, INT_MAX, &max)) {
    return {};
  }
  if (size == 0) {
    return ThrowCoded(Napi::RangeError::New(env, "The buffer must not be empty"),
                      "ERR_OUT_OF_RANGE");
  }
  std::vector<int> out;
  for (int n = 0; n < max; n++) {
    std::vector<int> fds;
    bool truncated;
    ssize_t bytes = ReceiveOne(fd, data, size, &fds, &truncated);
    if (bytes == -1) {
      if (!out.empty()) break;
      return errno == EAGAIN ? env.Null() : ThrowErrno(env, errno, "recvmsg");
    }
    out.push_back(static_cast<int>(bytes));
    if (truncated) {
      out.push_back(-1);
      break;
    }
    out.push_back(static_cast<int>(fds.size()));
    out.insert(out.end(), fds.begin(), fds.end());
    if (bytes == 0 || fds.size() != 1) break;
  }
  Napi::Array array = Napi::Array::New(env, out.size());
  for (size_t i = 0; i < out.size(); i++) array.Set(i, out[i]);
  return array;
}

void RegisterFdPassing(Napi::Env env, Napi::Object exports) {
  exports.Set("send", Napi::Function::New(env, Send, "send"));
  exports.Set("recv", Napi::Function::New(env, Recv, "recv"));
  exports.Set("recvEach", Napi::Function::New(env, RecvEach, "recvEach"));
}

}  // namespace tableroll
