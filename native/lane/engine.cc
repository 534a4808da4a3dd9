// The native lane's engine; see engine.h. Level-triggered epoll: a descriptor is watched for
// reading unless its buffer is full, and for writing only while bytes wait to go out.
#include "engine.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace tableroll::lane {

namespace {

// Bytes a client may have read ahead (pipelined requests, or one head and body being read).
constexpr size_t kMaxQueued = kMaxHead + kMaxBody + 16 * 1024;
// A response waiting for a slow client: above this the child's connection is not read.
constexpr size_t kHighWater = 256 * 1024;
constexpr size_t kReadSize = 64 * 1024;
// An idle connection to a child is closed after this (the JavaScript pool's default too).
constexpr uint64_t kPoolIdleMs = 4000;
// A client that was sent its last response has this long to close its end.
constexpr uint64_t kLingerMs = 2000;

Event Notice(Event::Kind kind, const std::string& name = {}) {
  Event e;
  e.kind = kind;
  e.name = name;
  return e;
}

uint64_t NowMs() { return uv_hrtime() / 1000000; }

void CloseFd(int fd) {
  if (fd >= 0) close(fd);
}

const char* CodeOf(int err) {
  switch (err) {
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case EPIPE: return "EPIPE";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ENETUNREACH: return "ENETUNREACH";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    default: return "EIO";
  }
}

const char* StatusText(int status) {
  switch (status) {
    case 408: return "Request Timeout";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Error";
  }
}

}  // namespace

// What an epoll event points at.
struct Endpoint {
  bool upstream;
  int fd = -1;
  uint32_t events = 0;
  bool dead = false;
};

struct Backend {
  std::string name;
  sockaddr_storage address{};
  socklen_t address_length = 0;
  bool retired = false;
  int active = 0;
  std::vector<Upstream*> idle;
  std::unordered_set<Upstream*> all;
};

struct Upstream : Endpoint {
  Upstream() { upstream = true; }
  Backend* backend = nullptr;
  Client* client = nullptr;
  bool connecting = false;
  bool reused = false;
  bool wrote = false;     // a byte of the request went out
  bool received = false;  // a byte of the response came in
  bool paused = false;    // not read: the client's output is full
  std::string out;
  size_t out_at = 0;
  std::string head;       // response head bytes while it is incomplete
  bool head_done = false;
  ResponseHead response;
  uint64_t remaining = 0;
  ChunkScanner chunks;
  uint64_t since = 0;     // last progress, for the timeouts
};

struct Client : Endpoint {
  Client() { upstream = false; }
  std::string ip;
  std::string in;
  std::string out;
  size_t out_at = 0;
  bool in_flight = false;
  bool closing = false;  // the current or next response is the last
  bool lingering = false;
  bool cut = false;  // a response ended short: the connection closes once it is written
  bool reading = true;
  size_t served = 0;
  uint64_t quiet_since = 0;  // last read or answer
  uint64_t head_since = 0;   // first byte of the request being read; 0 when none
  // The request in flight.
  std::string request;
  bool idempotent = false;
  bool has_body = false;
  uint64_t body_left = 0;  // body bytes still to come from the client, streamed to the child
  bool expecting = false;  // the client waits for the child's 100 Continue before its body
  bool head_method = false;
  bool stale_retry = false;
  bool response_started = false;
  std::vector<Backend*> tried;
  Upstream* up = nullptr;
};

Engine::Engine(const Settings& settings)
    : settings_(settings), epoll_fd_(epoll_create1(EPOLL_CLOEXEC)) {
  read_buffer_.resize(kReadSize);
}

Engine::~Engine() {
  DestroyAll();
  for (auto& b : backends_) {
    for (Upstream* u : b->all) {
      CloseFd(u->fd);
      delete u;
    }
  }
  Bury();
  CloseFd(epoll_fd_);
}

void Engine::Watch(int fd, void* ptr, uint32_t events, bool add) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = ptr;
  epoll_ctl(epoll_fd_, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
}

void Engine::SetEvents(Client* c, uint32_t events) {
  if (c->events == events) return;
  c->events = events;
  Watch(c->fd, c, events, false);
}

void Engine::SetEvents(Upstream* u, uint32_t events) {
  if (u->events == events) return;
  u->events = events;
  Watch(u->fd, u, events, false);
}

int Engine::Adopt(int fd, const std::string& client_ip) {
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return errno;
  int flags = fcntl(own, F_GETFL);
  fcntl(own, F_SETFL, flags | O_NONBLOCK);
  int one = 1;
  setsockopt(own, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  auto* c = new Client;
  c->fd = own;
  c->ip = client_ip;
  c->quiet_since = NowMs();
  c->events = EPOLLIN | EPOLLRDHUP;
  Watch(own, c, c->events, true);
  clients_.insert(c);
  return 0;
}

bool Engine::AddBackend(const std::string& name, const std::string& host, int port) {
  if (Find(name) != nullptr) return true;
  auto b = std::make_unique<Backend>();
  b->name = name;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&b->address);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&b->address);
  std::string numeric = host == "localhost" ? "127.0.0.1" : host;
  if (inet_pton(AF_INET, numeric.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    b->address_length = sizeof *v4;
  } else if (inet_pton(AF_INET6, numeric.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    b->address_length = sizeof *v6;
  } else {
    return false;
  }
  backends_.push_back(std::move(b));
  return true;
}

Backend* Engine::Find(const std::string& name) const {
  for (auto& b : backends_)
    if (b->name == name) return b.get();
  return nullptr;
}

int Engine::Active(const std::string& name) const {
  Backend* b = Find(name);
  return b == nullptr ? 0 : b->active;
}

void Engine::RetireBackend(const std::string& name) {
  Backend* b = Find(name);
  if (b == nullptr || b->retired) return;
  b->retired = true;
  for (Upstream* u : std::vector<Upstream*>(b->idle)) CloseUpstream(u);
  Bury();
}

void Engine::ForgetBackend(const std::string& name) {
  Backend* b = Find(name);
  if (b == nullptr) return;
  b->retired = true;
  // Its child has stopped: what is still in flight there failed.
  for (Upstream* u : std::vector<Upstream*>(b->all.begin(), b->all.end())) {
    if (u->dead) continue;
    if (u->client != nullptr) {
      Client* c = u->client;
      UpstreamFailed(u, false, "ECONNRESET");
      Progress(c);
    } else {
      CloseUpstream(u);
    }
  }
  Bury();
  for (auto it = backends_.begin(); it != backends_.end(); ++it) {
    if (it->get() != b) continue;
    backends_.erase(it);
    break;
  }
}

void Engine::Drain() {
  draining_ = true;
  // Idle connections end at their keep-alive timeout, or after one more request.
  if (clients_.empty()) events_.push_back(Notice(Event::Kind::kEmpty));
}

void Engine::DestroyAll() {
  for (Client* c : std::vector<Client*>(clients_.begin(), clients_.end())) CloseClient(c);
  Bury();
}

std::vector<Event> Engine::TakeEvents() {
  std::vector<Event> out;
  out.swap(events_);
  return out;
}

void Engine::Run() {
  epoll_event ready[128];
  for (int round = 0; round < 8; round++) {
    int n = epoll_wait(epoll_fd_, ready, 128, 0);
    if (n <= 0) break;
    for (int i = 0; i < n; i++) {
      auto* e = static_cast<Endpoint*>(ready[i].data.ptr);
      if (e->dead) continue;
      if (e->upstream) OnUpstream(static_cast<Upstream*>(e), ready[i].events);
      else OnClient(static_cast<Client*>(e), ready[i].events);
    }
    Bury();
    if (n < 128) break;
  }
}

void Engine::Bury() {
  for (Client* c : dead_clients_) delete c;
  dead_clients_.clear();
  for (Upstream* u : dead_upstreams_) {
    if (u->backend != nullptr) u->backend->all.erase(u);
    delete u;
  }
  dead_upstreams_.clear();
}

// ---- clients ----

void Engine::OnClient(Client* c, uint32_t events) {
  if (events & (EPOLLERR | EPOLLHUP)) {
    // Broken, or closed both ways: nothing can reach the client any more.
    if (c->up != nullptr) ClientGone(c);
    CloseClient(c);
    return;
  }
  if (events & EPOLLOUT) {
    Progress(c);
    if (c->dead) return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ReadClient(c);
}

void Engine::ReadClient(Client* c) {
  for (;;) {
    if (c->in.size() >= kMaxQueued) {
      c->reading = false;  // Progress() reads again once the queue shrinks
      SetEvents(c, c->events & ~static_cast<uint32_t>(EPOLLIN | EPOLLRDHUP));
      break;
    }
    ssize_t n = read(c->fd, read_buffer_.data(), kReadSize);
    if (n > 0) {
      c->quiet_since = NowMs();
      if (c->lingering) continue;  // the last response went out: what comes now is dropped
      if (c->in.empty() && !c->in_flight && c->head_since == 0) c->head_since = c->quiet_since;
      c->in.append(read_buffer_.data(), static_cast<size_t>(n));
      if (c->body_left > 0) {
        c->expecting = false;  // the client did not wait (or waited long enough)
        PumpBody(c);
        if (c->dead) return;
      }
      if (static_cast<size_t>(n) < kReadSize) break;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    if (n < 0) {
      CloseClient(c);
      return;
    }
    // The client's end. As in http.Server (no half-open connections), it ends the exchange.
    if (c->lingering) {
      CloseClient(c);
      return;
    }
    ClientGone(c);
    return;
  }
  Progress(c);
}

// Writes what waits for the client; true when nothing is left.
bool Engine::FlushClient(Client* c) {
  while (c->out_at < c->out.size()) {
    ssize_t n = write(c->fd, c->out.data() + c->out_at, c->out.size() - c->out_at);
    if (n > 0) {
      c->out_at += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      SetEvents(c, c->events | EPOLLOUT);
      return false;
    }
    CloseClient(c);
    return false;
  }
  c->out.clear();
  c->out_at = 0;
  SetEvents(c, c->events & ~static_cast<uint32_t>(EPOLLOUT));
  // A response held back by a full output can be read on.
  if (c->up != nullptr && c->up->paused) {
    c->up->paused = false;
    SetEvents(c->up, c->up->events | EPOLLIN);
  }
  return true;
}

// Moves a client's connection on: writes what waits, then ends it or starts the next request.
void Engine::Progress(Client* c) {
  for (;;) {
    if (c->dead) return;
    if (!FlushClient(c)) return;
    if (c->in_flight) return;
    if (c->closing && c->cut) {
      CloseClient(c);
      return;
    }
    if (c->closing) {
      if (!c->lingering) {
        c->lingering = true;
        c->quiet_since = NowMs();
        c->in.clear();
        shutdown(c->fd, SHUT_WR);
        if (!c->reading) {
          c->reading = true;
          SetEvents(c, c->events | EPOLLIN | EPOLLRDHUP);
        }
      }
      return;
    }
    if (!c->reading && c->in.size() < kMaxQueued) {
      c->reading = true;
      SetEvents(c, c->events | EPOLLIN | EPOLLRDHUP);
    }
    if (c->in.empty()) return;
    RequestHead head;
    Parse parsed = ParseRequest(c->in, &head);
    if (parsed == Parse::kMore) return;
    if (parsed == Parse::kNotMine) {
      HandOver(c);
      return;
    }
    // A small body is read whole first; a large one, or one held back for 100 Continue, streams.
    bool stream = head.body > kMaxBody || head.expect_continue;
    if (!stream && c->in.size() < head.length + head.body) return;  // the body is still coming
    StartRequest(c, head);
  }
}

void Engine::StartRequest(Client* c, const RequestHead& head) {
  c->request.clear();
  ForwardRequest(head, c->ip, settings_.trust_forward_headers, &c->request);
  size_t take = static_cast<size_t>(std::min<uint64_t>(head.body, c->in.size() - head.length));
  c->request.append(c->in, head.length, take);
  c->idempotent = head.idempotent;
  c->has_body = head.body > 0;
  c->body_left = head.body - take;
  c->expecting = head.expect_continue && c->body_left > 0 && take == 0;
  c->head_method = head.method == "HEAD";
  // `head` points into `in`: nothing of it is read past this line.
  c->in.erase(0, head.length + take);
  c->head_since = c->in.empty() ? 0 : NowMs();
  if (head.close) c->closing = true;
  c->stale_retry = false;
  c->response_started = false;
  c->tried.clear();
  c->in_flight = true;
  c->served++;
  Dispatch(c);
}

Backend* Engine::Pick(const std::vector<Backend*>& tried) {
  size_t count = backends_.size();
  for (size_t i = 0; i < count; i++) {
    Backend* b = backends_[(cursor_ + i) % count].get();
    if (b->retired || std::find(tried.begin(), tried.end(), b) != tried.end()) continue;
    cursor_ = (cursor_ + i + 1) % count;
    return b;
  }
  return nullptr;
}

void Engine::Dispatch(Client* c) {
  for (;;) {
    Backend* b = Pick(c->tried);
    if (b == nullptr) {
      if (c->tried.empty()) Reject(c, 503, "liveroll: no healthy child");
      else Reject(c, 502, "liveroll: no child could be reached");
      return;
    }
    c->tried.push_back(b);
    Upstream* u = nullptr;
    if (!b->idle.empty()) {
      u = b->idle.back();
      b->idle.pop_back();
      u->reused = true;
    } else {
      int err = 0;
      u = Connect(b, &err);
      if (u == nullptr) continue;  // never sent: the next child
    }
    if (b->active++ == 0) events_.push_back(Notice(Event::Kind::kBusy, b->name));
    u->client = c;
    c->up = u;
    u->out = c->request;
    u->out_at = 0;
    u->wrote = false;
    u->received = false;
    u->head.clear();
    u->head_done = false;
    u->chunks = ChunkScanner();
    u->since = NowMs();
    if (!u->connecting) FlushUpstream(u);
    return;
  }
}

void Engine::Reject(Client* c, int status, const std::string& message) {
  if (c->response_started) {
    CloseClient(c);
    return;
  }
  std::string text = message + "\n";
  std::string& out = c->out;
  // The rest of a body that was streaming is not read: the connection ends with this answer.
  bool last = c->closing || draining_ || c->body_left > 0;
  c->body_left = 0;
  c->expecting = false;
  out.append("HTTP/1.1 ").append(std::to_string(status)).append(" ").append(StatusText(status));
  out.append("\r\ncontent-type: text/plain; charset=utf-8\r\n");
  if (status == 503)
    out.append("retry-after: ").append(std::to_string(settings_.retry_after_seconds)).append("\r\n");
  out.append("content-length: ").append(std::to_string(text.size())).append("\r\n");
  out.append(last ? "connection: close\r\n\r\n"
                  : "connection: keep-alive\r\nkeep-alive: timeout=5\r\n\r\n");
  out.append(text);
  if (last) c->closing = true;
  c->in_flight = false;
  c->quiet_since = NowMs();
}

void Engine::HandOver(Client* c) {
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->fd, nullptr);
  // The copy stays close-on-exec: Node's socket on it must not leak into children either.
  Event e = Notice(Event::Kind::kHandOver);
  e.fd = c->fd;
  e.bytes = std::move(c->in);
  events_.push_back(std::move(e));
  c->fd = -1;
  CloseClient(c);
}

// The client closed its end (or broke the connection): its exchange ends, as in http.Server.
void Engine::ClientGone(Client* c) {
  if (c->up != nullptr) {
    Upstream* u = c->up;
    Detach(u);
    CloseUpstream(u);
  }
  c->in_flight = false;
  c->in.clear();
  c->body_left = 0;
  c->closing = true;
  if (c->out_at >= c->out.size()) {
    CloseClient(c);
    return;
  }
  Progress(c);
}

void Engine::CloseClient(Client* c) {
  if (c->dead) return;
  if (c->up != nullptr) {
    Upstream* u = c->up;
    Detach(u);
    CloseUpstream(u);
  }
  c->dead = true;
  if (c->fd >= 0) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->fd, nullptr);
    close(c->fd);
  }
  c->fd = -1;
  clients_.erase(c);
  dead_clients_.push_back(c);
  if (draining_ && clients_.empty()) events_.push_back(Notice(Event::Kind::kEmpty));
}

// ---- children ----

Upstream* Engine::Connect(Backend* b, int* err) {
  int fd = socket(b->address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = errno;
    return nullptr;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&b->address), b->address_length);
  if (rc < 0 && errno != EINPROGRESS) {
    *err = errno;
    close(fd);
    return nullptr;
  }
  auto* u = new Upstream;
  u->fd = fd;
  u->backend = b;
  u->connecting = rc < 0;
  u->events = EPOLLIN | EPOLLRDHUP;
  if (u->connecting) u->events |= EPOLLOUT;
  Watch(fd, u, u->events, true);
  b->all.insert(u);
  return u;
}

void Engine::OnUpstream(Upstream* u, uint32_t events) {
  if (u->client == nullptr) {
    // An idle pooled connection spoke or closed: the child ended it (or broke the protocol).
    CloseUpstream(u);
    return;
  }
  if (u->connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      Client* c = u->client;
      UpstreamFailed(u, true, CodeOf(err));
      Progress(c);
      return;
    }
    if (!(events & EPOLLOUT)) return;
    u->connecting = false;
  }
  if ((events & EPOLLOUT) && u->out_at < u->out.size()) {
    FlushUpstream(u);
    if (u->dead || u->client == nullptr) return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
    ReadUpstream(u, (events & (EPOLLHUP | EPOLLERR)) != 0);
}

void Engine::FlushUpstream(Upstream* u) {
  while (u->out_at < u->out.size()) {
    ssize_t n = send(u->fd, u->out.data() + u->out_at, u->out.size() - u->out_at, MSG_NOSIGNAL);
    if (n > 0) {
      u->wrote = true;
      u->out_at += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      SetEvents(u, u->events | EPOLLOUT);
      return;
    }
    Client* c = u->client;
    UpstreamFailed(u, false, CodeOf(errno));
    Progress(c);
    return;
  }
  u->out.clear();
  u->out_at = 0;
  u->since = NowMs();  // the child's headers timeout counts from the end of the request
  SetEvents(u, u->events & ~static_cast<uint32_t>(EPOLLOUT));
  if (u->client->body_left > 0) PumpBody(u->client);
}

// Moves the body bytes a client sent on to its child, as far as the child takes them; reads the
// client again once its queue has room.
void Engine::PumpBody(Client* c) {
  Upstream* u = c->up;
  if (u == nullptr || u->connecting) return;  // a connection refused can still go elsewhere
  if (!c->in.empty() && u->out.size() - u->out_at < kHighWater) {
    size_t take = static_cast<size_t>(std::min<uint64_t>(c->body_left, c->in.size()));
    if (u->out_at > 0) {
      u->out.erase(0, u->out_at);
      u->out_at = 0;
    }
    u->out.append(c->in, 0, take);
    c->in.erase(0, take);
    c->body_left -= take;
    FlushUpstream(u);
    if (c->dead) return;
  }
  if (!c->reading && c->in.size() < kMaxQueued && !c->lingering) {
    c->reading = true;
    SetEvents(c, c->events | EPOLLIN | EPOLLRDHUP);
  }
}

void Engine::ReadUpstream(Upstream* u, bool hung_up) {
  Client* c = u->client;
  for (;;) {
    // A hung-up connection is read to its end (what its buffer holds), or epoll would report
    // it again and again.
    if (!hung_up && c->out.size() - c->out_at > kHighWater) {
      u->paused = true;
      SetEvents(u, u->events & ~static_cast<uint32_t>(EPOLLIN | EPOLLRDHUP));
      break;
    }
    if (c->out_at > 0 && c->out_at >= c->out.size() / 2) {
      // What went out is dropped now and then, or a client that never quite catches up would
      // make this buffer grow with the whole response.
      c->out.erase(0, c->out_at);
      c->out_at = 0;
    }
    ssize_t n = read(u->fd, read_buffer_.data(), kReadSize);
    if (n > 0) {
      u->received = true;
      u->since = NowMs();
      if (Feed(u, read_buffer_.data(), static_cast<size_t>(n))) break;  // the response ended
      if (c->dead) return;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    if (n == 0 && u->head_done && u->response.framing == Framing::kUntilClose) {
      c->out.append("0\r\n\r\n");
      ResponseDone(u, false);
      break;
    }
    UpstreamFailed(u, false, n == 0 ? "ECONNRESET" : CodeOf(errno));
    break;
  }
  Progress(c);
}

// Passes response bytes to the client; true when the response ended.
bool Engine::Feed(Upstream* u, const char* data, size_t n) {
  Client* c = u->client;
  if (!u->head_done) {
    u->head.append(data, n);
    for (;;) {
      std::string head_out;
      ResponseParse r = ParseResponse(u->head, c->head_method, &u->response, &head_out);
      if (r == ResponseParse::kMore) return false;
      if (r == ResponseParse::kBad) {
        UpstreamFailed(u, false, "HPE_INVALID_RESPONSE");
        return true;
      }
      if (u->response.status < 200) {
        // 100 Continue goes to a client that waits for it; other 1xx are skipped, as the
        // JavaScript client does.
        if (u->response.status == 100 && c->expecting) {
          c->out.append("HTTP/1.1 100 Continue\r\n\r\n");
          c->expecting = false;
        }
        u->head.erase(0, u->response.length);
        continue;
      }
      u->head_done = true;
      c->response_started = true;
      // A response that starts before the body has all gone (a refusal, or a child that echoes
      // as it reads) is the connection's last: the body's end would be needed to find the next
      // request, and the child may stop reading it.
      bool last = c->closing || draining_ || c->body_left > 0;
      if (last) c->closing = true;
      c->out.append(head_out);
      c->out.append(last ? "connection: close\r\n\r\n"
                         : "connection: keep-alive\r\nkeep-alive: timeout=5\r\n\r\n");
      u->remaining = u->response.content_length;
      std::string rest = u->head.substr(u->response.length);
      u->head.clear();
      u->head.shrink_to_fit();
      if (u->response.framing == Framing::kNone ||
          (u->response.framing == Framing::kLength && u->remaining == 0)) {
        ResponseDone(u, u->response.keep_alive && rest.empty());
        return true;
      }
      if (rest.empty()) return false;
      return Feed(u, rest.data(), rest.size());
    }
  }
  switch (u->response.framing) {
    case Framing::kNone:
      ResponseDone(u, false);  // bytes after a bodiless response: not a connection to reuse
      return true;
    case Framing::kLength: {
      size_t take = static_cast<size_t>(std::min<uint64_t>(u->remaining, n));
      c->out.append(data, take);
      u->remaining -= take;
      if (u->remaining > 0) return false;
      ResponseDone(u, u->response.keep_alive && take == n);
      return true;
    }
    case Framing::kChunked: {
      long take = u->chunks.Scan(data, n);
      if (take < 0) {
        UpstreamFailed(u, false, "HPE_INVALID_CHUNK_SIZE");
        return true;
      }
      c->out.append(data, static_cast<size_t>(take));
      if (!u->chunks.done()) return false;
      ResponseDone(u, u->response.keep_alive && static_cast<size_t>(take) == n);
      return true;
    }
    case Framing::kUntilClose: {
      char size[24];
      snprintf(size, sizeof size, "%zx\r\n", n);
      c->out.append(size).append(data, n).append("\r\n");
      return false;
    }
  }
  return false;
}

// Ends the exchange on `u`: it goes back to its pool if it may carry another.
void Engine::ResponseDone(Upstream* u, bool reusable) {
  Client* c = u->client;
  Backend* b = u->backend;
  Detach(u);
  c->in_flight = false;
  c->quiet_since = NowMs();
  if (c->body_left > 0) {
    // The child answered without the rest of the body: it is not read (the response said close).
    reusable = false;
    c->body_left = 0;
    c->expecting = false;
  }
  if (!reusable || b->retired || u->paused) {
    CloseUpstream(u);
    return;
  }
  u->since = NowMs();
  u->head.clear();
  b->idle.push_back(u);
}

// Takes `u` off its client and out of its child's count.
void Engine::Detach(Upstream* u) {
  Client* c = u->client;
  if (c == nullptr) return;
  c->up = nullptr;
  u->client = nullptr;
  Backend* b = u->backend;
  if (--b->active == 0) events_.push_back(Notice(Event::Kind::kIdle, b->name));
}

// The attempt on `u` failed before or during the response: retry, answer 502/504, or cut.
void Engine::UpstreamFailed(Upstream* u, bool never_sent, const char* code) {
  Client* c = u->client;
  Backend* b = u->backend;
  bool stale = u->reused && !u->received && !c->stale_retry;
  bool started = c->response_started;
  Detach(u);
  CloseUpstream(u);
  if (c->dead) return;
  if (started) {
    // What came of the response goes out, then the connection ends: the client sees it cut.
    c->body_left = 0;
    c->closing = true;
    c->cut = true;
    c->in_flight = false;
    return;
  }
  bool timed_out = std::strcmp(code, "UPSTREAM_HEADERS_TIMEOUT") == 0;
  // A pooled connection the child had closed: the request never ran there, whatever its method,
  // unless bytes came back. Once per request, on a new connection to the same child.
  if (stale && !timed_out && !b->retired && !c->has_body) {
    c->stale_retry = true;
    c->tried.pop_back();
    Dispatch(c);
    return;
  }
  // A request cut by the stop of a child we retired is not run a second time (see proxy.ts).
  bool retry = never_sent || (!timed_out && c->idempotent && !c->has_body && !b->retired);
  if (retry) {
    Dispatch(c);
    return;
  }
  Reject(c, timed_out ? 504 : 502, std::string("liveroll: the child failed (") + code + ")");
}

void Engine::CloseUpstream(Upstream* u) {
  if (u->dead) return;
  u->dead = true;
  Backend* b = u->backend;
  auto idle = std::find(b->idle.begin(), b->idle.end(), u);
  if (idle != b->idle.end()) b->idle.erase(idle);
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, u->fd, nullptr);
  close(u->fd);
  u->fd = -1;
  dead_upstreams_.push_back(u);
}

void Engine::Sweep() {
  uint64_t now = NowMs();
  for (Client* c : std::vector<Client*>(clients_.begin(), clients_.end())) {
    if (c->dead) continue;
    Upstream* u = c->up;
    if (u != nullptr) {
      uint64_t quiet = now - u->since;
      if (u->connecting && settings_.connect_timeout_ms > 0 &&
          quiet >= settings_.connect_timeout_ms) {
        UpstreamFailed(u, true, "ETIMEDOUT");
        Progress(c);
      } else if (!u->head_done && !u->out.empty()) {
        // The request is still being written: the child's pace, not a timeout of ours.
      } else if (c->body_left > 0 && !c->expecting) {
        // The client's pace: a silence of the idle timeout ends it, as http.Server's would.
        if (settings_.child_idle_timeout_ms > 0 &&
            now - c->quiet_since >= settings_.child_idle_timeout_ms)
          CloseClient(c);
      } else if (!u->head_done && settings_.child_headers_timeout_ms > 0 &&
                 quiet >= settings_.child_headers_timeout_ms) {
        UpstreamFailed(u, false, "UPSTREAM_HEADERS_TIMEOUT");
        Progress(c);
      } else if (u->head_done && !u->paused && settings_.child_idle_timeout_ms > 0 &&
                 quiet >= settings_.child_idle_timeout_ms) {
        CloseClient(c);
      }
      continue;
    }
    if (c->in_flight) continue;
    if (c->lingering) {
      if (now - c->quiet_since >= kLingerMs) CloseClient(c);
      continue;
    }
    if (c->out_at < c->out.size()) continue;  // a slow reader: its own pace
    // Bytes read while the last request was in flight start the next head's clock now.
    if (c->head_since == 0 && !c->in.empty()) c->head_since = now;
    // A head that takes too long, whether the client is silent or trickles bytes; else the
    // silence before a first request, or between two.
    bool in_head = c->head_since != 0;
    uint64_t since = in_head ? c->head_since : c->quiet_since;
    uint64_t limit =
        in_head || c->served == 0 ? settings_.headers_timeout_ms : settings_.keep_alive_ms;
    if (limit == 0 || now - since < limit) continue;
    if (c->served > 0) {
      CloseClient(c);
      continue;
    }
    // No request within the headers timeout: what http.Server answers too.
    c->out.append("HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n");
    c->closing = true;
    Progress(c);
  }
  for (auto& b : backends_) {
    for (Upstream* u : std::vector<Upstream*>(b->idle)) {
      if (now - u->since >= kPoolIdleMs) CloseUpstream(u);
    }
  }
  Bury();
}

}  // namespace tableroll::lane
