// The native lane's engine: client connections, the children's connection pools and the
// exchanges between them, on one epoll instance that Node's loop watches (binding.cc). It runs
// on the main thread and calls no JavaScript: what JavaScript must learn (a connection handed
// back, a child busy or idle, the last connection gone) is queued as an Event.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "http-head.h"

namespace tableroll::lane {

struct Settings {
  bool trust_forward_headers = false;
  int retry_after_seconds = 1;
  uint64_t headers_timeout_ms = 30000;        // a client's head (then 408 or close)
  uint64_t keep_alive_ms = 5000;              // idle between requests
  uint64_t connect_timeout_ms = 5000;         // to a child
  uint64_t child_headers_timeout_ms = 0;      // a child's response head (then 504); 0: none
  uint64_t child_idle_timeout_ms = 0;         // silence inside a response body; 0: none
};

struct Event {
  enum class Kind { kHandOver, kBusy, kIdle, kEmpty } kind = Kind::kEmpty;
  int fd = -1;        // kHandOver: the client connection, now JavaScript's
  std::string bytes;  // kHandOver: what was read from it and not served
  std::string name;   // kBusy, kIdle: the child
};

struct Backend;
struct Client;
struct Upstream;

class Engine {
 public:
  explicit Engine(const Settings& settings);
  ~Engine();
  // -1 (errno set) when epoll_create1 failed.
  int fd() const { return epoll_fd_; }

  // Takes a copy of `fd` (a connected TCP socket); the caller closes its own. Returns errno.
  int Adopt(int fd, const std::string& client_ip);
  // Returns false for an address that is not numeric.
  bool AddBackend(const std::string& name, const std::string& host, int port);
  void RetireBackend(const std::string& name);
  void ForgetBackend(const std::string& name);
  void Drain();
  void DestroyAll();
  // Handles every ready descriptor without blocking.
  void Run();
  // Timeouts; call every few hundred ms.
  void Sweep();
  size_t connections() const { return clients_.size(); }
  int Active(const std::string& name) const;
  std::vector<Event> TakeEvents();

 private:
  friend struct Client;
  Backend* Find(const std::string& name) const;
  Backend* Pick(const std::vector<Backend*>& tried);
  Upstream* Connect(Backend* b, int* err);
  void Watch(int fd, void* ptr, uint32_t events, bool add);
  void SetEvents(Client* c, uint32_t events);
  void SetEvents(Upstream* u, uint32_t events);

  void OnClient(Client* c, uint32_t events);
  void ReadClient(Client* c);
  void Progress(Client* c);
  bool FlushClient(Client* c);
  void StartRequest(Client* c, const RequestHead& head);
  void Dispatch(Client* c);
  void Reject(Client* c, int status, const std::string& message);
  void HandOver(Client* c);
  void ClientGone(Client* c);
  void CloseClient(Client* c);

  void OnUpstream(Upstream* u, uint32_t events);
  void FlushUpstream(Upstream* u);
  void PumpBody(Client* c);
  void ReadUpstream(Upstream* u, bool hung_up);
  bool Feed(Upstream* u, const char* data, size_t n);
  void ResponseDone(Upstream* u, bool reusable);
  void UpstreamFailed(Upstream* u, bool never_sent, const char* code);
  void Detach(Upstream* u);
  void CloseUpstream(Upstream* u);
  void Bury();

  Settings settings_;
  int epoll_fd_;
  bool draining_ = false;
  size_t cursor_ = 0;
  std::vector<std::unique_ptr<Backend>> backends_;  // in rotation order, retired ones included
  std::unordered_set<Client*> clients_;
  std::vector<Client*> dead_clients_;
  std::vector<Upstream*> dead_upstreams_;
  std::vector<Event> events_;
  std::string read_buffer_;
};

}  // namespace tableroll::lane
