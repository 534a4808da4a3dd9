// HTTP/1.1 heads as liveroll's native lane reads them: strictly. A request head the lane does
// not fully understand is not refused here, it is left to Node's http.Server (the connection is
// handed over whole), so this parser only has to say "mine" or "not mine", never "bad request".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tableroll::lane {

// Largest head the lane reads (http.Server's default limit, after which it answers 431).
constexpr size_t kMaxHead = 16 * 1024;
// Largest request body the lane holds before it picks a child (so that a connection refused can
// be tried on the next one); a bigger body, or one the client holds back for `100 Continue`, is
// streamed to the child as it comes.
constexpr size_t kMaxBody = 64 * 1024;

struct Field {
  std::string_view name;
  std::string_view value;
};

// The parts of a request head the lane forwards.
struct RequestHead {
  size_t length = 0;  // bytes of the head, its blank line included
  std::string_view method;
  std::string_view target;
  std::vector<Field> fields;
  uint64_t body = 0;   // Content-Length, 0 when absent
  bool close = false;  // Connection: close
  bool expect_continue = false;  // Expect: 100-continue, which goes to the child
  bool idempotent = false;
};

enum class Parse { kMore, kMine, kNotMine };

// Reads a request head at the front of `data`. kMore: the head is not complete yet (and fits).
Parse ParseRequest(std::string_view data, RequestHead* head);

// The head sent to the child: the request line, the client's fields minus hop-by-hop ones and
// the X-Forwarded-* it could forge, then liveroll's own X-Forwarded-For, -Proto and -Host.
// The same rules as forward-headers.ts.
void ForwardRequest(const RequestHead& head, std::string_view client_ip, bool trust,
                    std::string* out);

// How a response's body is framed, as the child sent it.
enum class Framing { kNone, kLength, kChunked, kUntilClose };

struct ResponseHead {
  size_t length = 0;
  int status = 0;
  Framing framing = Framing::kNone;
  uint64_t content_length = 0;
  bool keep_alive = true;  // the child keeps the connection after this response
};

enum class ResponseParse { kMore, kDone, kBad };

// Reads a response head and writes the client's version of it to `out` (without its final
// blank line and connection fields, which the caller adds). `head_request` is true for HEAD.
ResponseParse ParseResponse(std::string_view data, bool head_request, ResponseHead* head,
                            std::string* out);

// Passes a chunked body through unchanged while finding where it ends: chunk sizes, data, and
// the trailer section after the last chunk.
class ChunkScanner {
 public:
  // Consumes up to `n` bytes; returns how many belong to the body (all of them, unless it
  // ended), or -1 when the framing is broken. done() tells whether it ended.
  long Scan(const char* data, size_t n);
  bool done() const { return state_ == State::kDone; }

 private:
  enum class State { kSize, kData, kDataEnd, kTrailer, kDone };
  State state_ = State::kSize;
  uint64_t remaining_ = 0;
  std::string line_;
  size_t trailer_bytes_ = 0;
};

}  // namespace tableroll::lane
