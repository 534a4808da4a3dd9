// Readiness of one fd on Node's own event loop (uv_poll), so waiting never blocks the loop or
// takes a threadpool thread.
//
// Lifetime rules:
// - The uv_poll_t lives in a heap Watch that uv_close's callback frees, never the Poller: the
//   JS object may be collected before libuv is done with the handle.
// - While the poll is started the JS object is pinned by a strong reference, so an unreachable
//   but active Poller cannot be collected mid-watch.
// - An async cleanup hook closes the handle when the environment is torn down (worker exit,
//   process exit), and Node keeps running the loop until the close callback removes the hook:
//   a handle left open would make uv_loop_close fail and the process abort.
#include <fcntl.h>
#include <uv.h>

#include "addon.h"
#include "arguments.h"
#include "errors.h"

namespace tableroll {

namespace {

class Poller;

struct Watch {
  uv_poll_t handle;
  napi_async_cleanup_hook_handle cleanup_hook = nullptr;
  Poller* owner = nullptr;  // null once the Poller has let go and the handle is closing
};

class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Poller",
                       {InstanceMethod("start", &Poller::Start),
                        InstanceMethod("stop", &Poller::Stop),
                        InstanceMethod("close", &Poller::Close),
                        InstanceMethod("ref", &Poller::RefLoop),
                        InstanceMethod("unref", &Poller::UnrefLoop)});
  }

  explicit Poller(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<Poller>(info), env_(info.Env()), context_(env_, "tableroll:Poller") {
    if (!ReadFd(info, 0, &fd_)) return;
    if (!info[1].IsFunction()) {
      ThrowCoded(Napi::TypeError::New(env_, "The \"callback\" argument must be of type function"),
                 "ERR_INVALID_ARG_TYPE");
      return;
    }
    uv_loop_t* loop;
    napi_get_uv_event_loop(env_, &loop);
    auto* watch = new Watch;
    // Fails for a closed fd, a regular file (EPERM) or an fd another watcher uses (EEXIST).
    if (int err = uv_poll_init(loop, &watch->handle, fd_)) {
      delete watch;
      ThrowErrno(env_, -err, "uv_poll_init");
      return;
    }
    watch->handle.data = watch;
    watch->owner = this;
    napi_add_async_cleanup_hook(env_, OnTeardown, watch, &watch->cleanup_hook);
    watch_ = watch;
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
  }

  // Collected without close(): the poll was stopped, or it would be pinned.
  ~Poller() override {
    pinned_ = false;
    Release();
  }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    int events, all = UV_READABLE | UV_WRITABLE | UV_DISCONNECT;
    if (!CheckOpen() || !ReadInt(info, 0, "events", 1, all, &events)) return {};
    // libuv aborts the process if epoll_ctl fails later, so refuse an fd closed under us.
    if (fcntl(fd_, F_GETFD) == -1) return ThrowErrno(env_, errno, "uv_poll_start");
    if (int err = uv_poll_start(&watch_->handle, events, OnPoll)) {
      return ThrowErrno(env_, -err, "uv_poll_start");
    }
    Pin(true);
    return env_.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo&) {
    if (!CheckOpen()) return {};
    uv_poll_stop(&watch_->handle);
    Pin(false);
    return env_.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo&) {
    Release();
    return env_.Undefined();
  }

  Napi::Value RefLoop(const Napi::CallbackInfo&) {
    if (CheckOpen()) uv_ref(reinterpret_cast<uv_handle_t*>(&watch_->handle));
    return env_.Undefined();
  }

  Napi::Value UnrefLoop(const Napi::CallbackInfo&) {
    if (CheckOpen()) uv_unref(reinterpret_cast<uv_handle_t*>(&watch_->handle));
    return env_.Undefined();
  }

  bool CheckOpen() {
    if (watch_ != nullptr) return true;
    ThrowCoded(Napi::Error::New(env_, "Invalid state: the Poller is closed"), "ERR_INVALID_STATE");
    return false;
  }

  void Pin(bool on) {
    if (on != pinned_) on ? Ref() : Unref();
    pinned_ = on;
  }

  void Release() {
    if (watch_ == nullptr) return;
    watch_->owner = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&watch_->handle), OnClosed);
    watch_ = nullptr;
    Pin(false);
    callback_.Reset();
  }

  static void OnClosed(uv_handle_t* handle) {
    auto* watch = static_cast<Watch*>(handle->data);
    napi_remove_async_cleanup_hook(watch->cleanup_hook);
    delete watch;
  }

  static void OnTeardown(napi_async_cleanup_hook_handle, void* data) {
    auto* watch = static_cast<Watch*>(data);
    if (watch->owner != nullptr) watch->owner->Release();  // else OnClosed is already due
  }

  // Raw N-API calls: during teardown JavaScript is disallowed, N-API calls fail without an
  // exception, and node-addon-api would turn that failure into a fatal error.
  static void OnPoll(uv_poll_t* handle, int status, int events) {
    Poller* self = static_cast<Watch*>(handle->data)->owner;
    napi_env env = self->env_;
    Napi::HandleScope scope(env);
    // This local keeps the object alive through the callback even if it unpins or closes.
    napi_value receiver = self->Value(), argv[2], result;
    if (status < 0) {
      self->Pin(false);  // libuv has already stopped the watcher
      argv[0] = ErrnoError(env, -status, "uv_poll").Value();
    } else {
      napi_get_null(env, &argv[0]);
    }
    napi_create_int32(env, events, &argv[1]);
    napi_value callback = self->callback_.Value();
    if (napi_make_callback(env, self->context_, receiver, callback, 2, argv, &result) == napi_ok) {
      return;
    }
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) {
      self->Release();  // JavaScript can no longer run: the environment is going away
      return;
    }
    // Nothing above us would report it: raise it as uncaught, as Node's own handles do.
    napi_value exception;
    napi_get_and_clear_last_exception(env, &exception);
    napi_fatal_exception(env, exception);
  }

  Napi::Env env_;
  Napi::AsyncContext context_;  // so promise reactions run right after each callback
  int fd_ = -1;
  Watch* watch_ = nullptr;  // null until initialized and once closed
  bool pinned_ = false;
  Napi::FunctionReference callback_;
};

}  // namespace

void RegisterPoller(Napi::Env env, Napi::Object exports) {
  exports.Set("Poller", Poller::Define(env));
}

}  // namespace tableroll
