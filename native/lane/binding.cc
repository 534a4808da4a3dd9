// NativeLane: liveroll's proxy data path in C++ (engine.h), driven by Node's own loop. A uv_poll
// watches the engine's epoll descriptor and a uv_timer runs its sweep, so the engine's work runs
// on the main thread, between JavaScript callbacks, with no thread and no lock. JavaScript is
// called only for what it must decide: a connection handed back, a child's busy/idle edges, the
// last connection gone during a drain.
//
// Handle lifetimes follow poller.cc: the uv handles live in a heap Loop freed by their close
// callbacks, and an async cleanup hook closes them when the environment goes away.
#include <uv.h>

#include "../addon.h"
#include "../arguments.h"
#include "../errors.h"
#include "engine.h"

namespace tableroll {

namespace {

class NativeLane;

struct Loop {
  uv_poll_t poll;
  uv_timer_t timer;
  int open = 2;
  napi_async_cleanup_hook_handle cleanup_hook = nullptr;
  NativeLane* owner = nullptr;
};

uint64_t ReadMs(Napi::Object options, const char* name, uint64_t fallback) {
  Napi::Value v = options.Get(name);
  if (!v.IsNumber()) return fallback;
  double ms = v.As<Napi::Number>().DoubleValue();
  return ms > 0 ? static_cast<uint64_t>(ms) : 0;
}

class NativeLane : public Napi::ObjectWrap<NativeLane> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeLane",
                       {InstanceMethod("adopt", &NativeLane::Adopt),
                        InstanceMethod("add", &NativeLane::Add),
                        InstanceMethod("retire", &NativeLane::Retire),
                        InstanceMethod("forget", &NativeLane::Forget),
                        InstanceMethod("active", &NativeLane::Active),
                        InstanceMethod("drain", &NativeLane::Drain),
                        InstanceMethod("destroyAll", &NativeLane::DestroyAll),
                        InstanceMethod("connections", &NativeLane::Connections),
                        InstanceMethod("close", &NativeLane::Close)});
  }

  // new NativeLane(options, callback(kind, a, b))
  explicit NativeLane(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<NativeLane>(info), env_(info.Env()), context_(env_, "liveroll:lane") {
    Napi::Object options;
    if (!ReadOptions(info, 0, "options", &options)) return;
    if (!info[1].IsFunction()) {
      ThrowCoded(Napi::TypeError::New(env_, "The \"callback\" argument must be of type function"),
                 "ERR_INVALID_ARG_TYPE");
      return;
    }
    lane::Settings s;
    s.trust_forward_headers = options.Get("trustForwardHeaders").ToBoolean();
    Napi::Value retry = options.Get("retryAfterSeconds");
    if (retry.IsNumber()) s.retry_after_seconds = retry.As<Napi::Number>().Int32Value();
    s.headers_timeout_ms = ReadMs(options, "headersTimeoutMs", 30000);
    s.keep_alive_ms = ReadMs(options, "keepAliveMs", 5000);
    s.connect_timeout_ms = ReadMs(options, "connectTimeoutMs", 5000);
    s.child_headers_timeout_ms = ReadMs(options, "childHeadersTimeoutMs", 0);
    s.child_idle_timeout_ms = ReadMs(options, "childIdleTimeoutMs", 0);
    engine_ = std::make_unique<lane::Engine>(s);
    if (engine_->fd() < 0) {
      int err = errno;
      engine_.reset();
      ThrowErrno(env_, err, "epoll_create1");
      return;
    }
    // Four sweeps a second, or four per shortest timeout, as the JavaScript lane's sweep.
    uint64_t shortest = 250;
    for (uint64_t t : {s.headers_timeout_ms, s.keep_alive_ms, s.connect_timeout_ms,
                       s.child_headers_timeout_ms, s.child_idle_timeout_ms})
      if (t > 0 && t / 4 < shortest) shortest = t / 4;
    sweep_ms_ = shortest < 20 ? 20 : shortest;

    uv_loop_t* uv;
    napi_get_uv_event_loop(env_, &uv);
    auto* loop = new Loop;
    uv_poll_init(uv, &loop->poll, engine_->fd());
    uv_timer_init(uv, &loop->timer);
    loop->poll.data = loop;
    loop->timer.data = loop;
    loop->owner = this;
    napi_add_async_cleanup_hook(env_, OnTeardown, loop, &loop->cleanup_hook);
    loop_ = loop;
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    uv_poll_start(&loop->poll, UV_READABLE, OnPoll);
    // The loop is kept alive by the connections, not by the lane itself: see Retain().
    uv_unref(reinterpret_cast<uv_handle_t*>(&loop->poll));
    uv_timer_start(&loop->timer, OnTimer, sweep_ms_, sweep_ms_);
    uv_unref(reinterpret_cast<uv_handle_t*>(&loop->timer));
  }

  ~NativeLane() override { Release(); }

 private:
  bool CheckOpen() {
    if (loop_ != nullptr) return true;
    ThrowCoded(Napi::Error::New(env_, "Invalid state: the lane is closed"), "ERR_INVALID_STATE");
    return false;
  }

  bool ReadName(const Napi::CallbackInfo& info, size_t index, std::string* out) {
    if (!info[index].IsString()) {
      ThrowCoded(Napi::TypeError::New(env_, "The \"name\" argument must be of type string"),
                 "ERR_INVALID_ARG_TYPE");
      return false;
    }
    *out = info[index].As<Napi::String>().Utf8Value();
    return true;
  }

  Napi::Value Adopt(const Napi::CallbackInfo& info) {
    int fd;
    std::string ip;
    if (!CheckOpen() || !ReadFd(info, 0, &fd) || !ReadName(info, 1, &ip)) return {};
    if (int err = engine_->Adopt(fd, ip)) return ThrowErrno(env_, err, "fcntl");
    Retain();
    return env_.Undefined();
  }

  Napi::Value Add(const Napi::CallbackInfo& info) {
    std::string name, host;
    int port;
    if (!CheckOpen() || !ReadName(info, 0, &name) || !ReadName(info, 1, &host) ||
        !ReadInt(info, 2, "port", 1, 65535, &port))
      return {};
    if (!engine_->AddBackend(name, host, port)) {
      return ThrowCoded(Napi::TypeError::New(env_, "The child's host must be a numeric address"),
                        "ERR_INVALID_ARG_VALUE");
    }
    return env_.Undefined();
  }

  Napi::Value Retire(const Napi::CallbackInfo& info) {
    std::string name;
    if (!CheckOpen() || !ReadName(info, 0, &name)) return {};
    engine_->RetireBackend(name);
    Deliver();
    return env_.Undefined();
  }

  Napi::Value Forget(const Napi::CallbackInfo& info) {
    std::string name;
    if (!CheckOpen() || !ReadName(info, 0, &name)) return {};
    engine_->ForgetBackend(name);
    Deliver();
    return env_.Undefined();
  }

  Napi::Value Active(const Napi::CallbackInfo& info) {
    std::string name;
    if (!CheckOpen() || !ReadName(info, 0, &name)) return {};
    return Napi::Number::New(env_, engine_->Active(name));
  }

  Napi::Value Drain(const Napi::CallbackInfo&) {
    if (!CheckOpen()) return {};
    engine_->Drain();
    Deliver();
    return env_.Undefined();
  }

  Napi::Value DestroyAll(const Napi::CallbackInfo&) {
    if (!CheckOpen()) return {};
    engine_->DestroyAll();
    Deliver();
    return env_.Undefined();
  }

  Napi::Value Connections(const Napi::CallbackInfo&) {
    // 0 once closed: closing ended every connection.
    return Napi::Number::New(env_, engine_ ? static_cast<double>(engine_->connections()) : 0);
  }

  Napi::Value Close(const Napi::CallbackInfo&) {
    Release();
    return env_.Undefined();
  }

  // The lane keeps Node's loop alive while it holds a connection, like a socket would.
  void Retain() {
    if (loop_ == nullptr) return;
    bool busy = engine_->connections() > 0;
    if (busy == referenced_) return;
    referenced_ = busy;
    auto* poll = reinterpret_cast<uv_handle_t*>(&loop_->poll);
    auto* timer = reinterpret_cast<uv_handle_t*>(&loop_->timer);
    if (busy) {
      uv_ref(poll);
      uv_ref(timer);
      Ref();
    } else {
      uv_unref(poll);
      uv_unref(timer);
      Unref();
    }
  }

  // Passes the engine's events to JavaScript. Not re-entered: a callback that calls back into
  // the lane leaves its events for the outer loop.
  void Deliver() {
    if (delivering_ || loop_ == nullptr) return;
    delivering_ = true;
    // A callback may close the lane (and its engine): checked before each use.
    while (engine_ != nullptr) {
      std::vector<lane::Event> events = engine_->TakeEvents();
      if (events.empty()) break;
      for (lane::Event& e : events) {
        // Not delivered (the lane closed, or JavaScript can no longer run): a descriptor
        // meant for JavaScript is closed here rather than leaked.
        bool delivered = loop_ != nullptr && Call(e);
        if (!delivered && e.kind == lane::Event::Kind::kHandOver && e.fd >= 0) close(e.fd);
      }
    }
    delivering_ = false;
    if (loop_ != nullptr) Retain();
  }

  bool Call(lane::Event& e) {
    napi_env env = env_;
    Napi::HandleScope scope(env_);
    napi_value argv[3], result;
    const char* kind = e.kind == lane::Event::Kind::kHandOver ? "handover"
                       : e.kind == lane::Event::Kind::kBusy   ? "busy"
                       : e.kind == lane::Event::Kind::kIdle   ? "idle"
                                                              : "empty";
    napi_create_string_utf8(env, kind, NAPI_AUTO_LENGTH, &argv[0]);
    if (e.kind == lane::Event::Kind::kHandOver) {
      napi_create_int32(env, e.fd, &argv[1]);
      void* data;
      napi_create_buffer_copy(env, e.bytes.size(), e.bytes.data(), &data, &argv[2]);
    } else {
      napi_create_string_utf8(env, e.name.data(), e.name.size(), &argv[1]);
      napi_get_undefined(env, &argv[2]);
    }
    napi_value receiver = Value();
    napi_value callback = callback_.Value();
    if (napi_make_callback(env, context_, receiver, callback, 3, argv, &result) == napi_ok)
      return true;
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) return false;
    napi_value exception;
    napi_get_and_clear_last_exception(env, &exception);
    napi_fatal_exception(env, exception);
    return true;
  }

  void Release() {
    if (loop_ == nullptr) return;
    Loop* loop = loop_;
    loop_ = nullptr;
    loop->owner = nullptr;
    engine_.reset();  // closes every connection the lane holds
    uv_close(reinterpret_cast<uv_handle_t*>(&loop->poll), OnClosed);
    uv_close(reinterpret_cast<uv_handle_t*>(&loop->timer), OnClosed);
    if (referenced_) {
      referenced_ = false;
      Unref();
    }
    callback_.Reset();
  }

  static void OnClosed(uv_handle_t* handle) {
    auto* loop = static_cast<Loop*>(handle->data);
    if (--loop->open > 0) return;
    napi_remove_async_cleanup_hook(loop->cleanup_hook);
    delete loop;
  }

  static void OnTeardown(napi_async_cleanup_hook_handle, void* data) {
    auto* loop = static_cast<Loop*>(data);
    if (loop->owner != nullptr) loop->owner->Release();
  }

  static void OnPoll(uv_poll_t* handle, int status, int) {
    NativeLane* self = static_cast<Loop*>(handle->data)->owner;
    if (self == nullptr || status < 0) return;
    self->engine_->Run();
    self->Deliver();
  }

  static void OnTimer(uv_timer_t* handle) {
    NativeLane* self = static_cast<Loop*>(handle->data)->owner;
    if (self == nullptr) return;
    self->engine_->Sweep();
    self->Deliver();
  }

  Napi::Env env_;
  Napi::AsyncContext context_;
  std::unique_ptr<lane::Engine> engine_;
  Loop* loop_ = nullptr;
  Napi::FunctionReference callback_;
  uint64_t sweep_ms_ = 250;
  bool referenced_ = false;
  bool delivering_ = false;
};

}  // namespace

void RegisterNativeLane(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeLane", NativeLane::Define(env));
}

}  // namespace tableroll
