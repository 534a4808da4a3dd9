// Strict HTTP/1.1 head parsing for the native lane; see http-head.h.
#include "http-head.h"

#include <cstring>
#include <ctime>

namespace tableroll::lane {

namespace {

// RFC 9110 5.6.2 token characters.
bool IsTchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return c != 0 && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

// A field value byte: visible, space, tab or obs-text; never CR, LF, NUL or another control.
bool IsValueByte(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool Is(std::string_view name, std::string_view lower) {
  if (name.size() != lower.size()) return false;
  for (size_t i = 0; i < name.size(); i++)
    if (Lower(name[i]) != lower[i]) return false;
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Headers that describe one connection, never the message (RFC 9110 7.6.1).
bool IsHopByHop(std::string_view name) {
  return Is(name, "connection") || Is(name, "keep-alive") || Is(name, "proxy-connection") ||
         Is(name, "proxy-authenticate") || Is(name, "proxy-authorization") || Is(name, "te") ||
         Is(name, "trailer") || Is(name, "transfer-encoding") || Is(name, "upgrade");
}

bool IsForwarded(std::string_view name) {
  return Is(name, "x-forwarded-for") || Is(name, "x-forwarded-proto") ||
         Is(name, "x-forwarded-host") || Is(name, "forwarded");
}

// Calls `each` with every non-empty comma-separated token of `value`.
template <typename Each>
void Tokens(std::string_view value, Each each) {
  while (!value.empty()) {
    size_t comma = value.find(',');
    std::string_view token = Trim(value.substr(0, comma));
    if (!token.empty()) each(token);
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
}

// Whether `name` is listed in any Connection field of `fields`.
bool NamedByConnection(const std::vector<Field>& fields, std::string_view name) {
  for (const Field& f : fields) {
    if (!Is(f.name, "connection")) continue;
    bool found = false;
    Tokens(f.value, [&](std::string_view token) {
      if (token.size() != name.size()) return;
      bool same = true;
      for (size_t i = 0; i < token.size(); i++)
        if (Lower(token[i]) != Lower(name[i])) same = false;
      if (same) found = true;
    });
    if (found) return true;
  }
  return false;
}

// Splits the field lines between `start` and the head's end into `fields`; false when a line is
// not `token ":" value` (an obs-fold included).
bool ReadFields(std::string_view head, size_t start, std::vector<Field>* fields) {
  size_t at = start;
  while (at < head.size()) {
    size_t eol = head.find("\r\n", at);
    if (eol == std::string_view::npos) return false;
    if (eol == at) return true;  // the blank line
    std::string_view line = head.substr(at, eol - at);
    size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) return false;
    std::string_view name = line.substr(0, colon);
    for (unsigned char c : name)
      if (!IsTchar(c)) return false;
    std::string_view value = line.substr(colon + 1);
    for (unsigned char c : value)
      if (!IsValueByte(c)) return false;
    fields->push_back({name, Trim(value)});
    at = eol + 2;
  }
  return false;
}

bool Digits(std::string_view s, size_t max_digits, uint64_t* out) {
  if (s.empty() || s.size() > max_digits) return false;
  uint64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = n;
  return true;
}

void Append(std::string* out, std::string_view a, std::string_view b) {
  out->append(a);
  out->append(": ");
  out->append(b);
  out->append("\r\n");
}

}  // namespace

// Whether a line of `text` ends in a bare LF, which llhttp reads leniently and the lane not at all.
static bool BareLf(std::string_view text) {
  for (size_t i = text.find('\n'); i != std::string_view::npos; i = text.find('\n', i + 1))
    if (i == 0 || text[i - 1] != '\r') return true;
  return false;
}

Parse ParseRequest(std::string_view data, RequestHead* head) {
  size_t end = data.find("\r\n\r\n");
  if (BareLf(data.substr(0, end == std::string_view::npos ? kMaxHead : end + 4)))
    return Parse::kNotMine;
  if (end == std::string_view::npos) return data.size() > kMaxHead ? Parse::kNotMine : Parse::kMore;
  if (end + 4 > kMaxHead) return Parse::kNotMine;
  std::string_view text = data.substr(0, end + 4);
  size_t eol = text.find("\r\n");
  std::string_view line = text.substr(0, eol);
  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) return Parse::kNotMine;
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return Parse::kNotMine;
  head->method = line.substr(0, sp1);
  head->target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (line.substr(sp2 + 1) != "HTTP/1.1") return Parse::kNotMine;
  for (char c : head->method)
    if (c < 'A' || c > 'Z') return Parse::kNotMine;
  if (head->method == "CONNECT") return Parse::kNotMine;
  // Origin form only; anything else is http.Server's to answer.
  if (head->target.empty() || head->target[0] != '/') return Parse::kNotMine;
  for (unsigned char c : head->target)
    if (c <= 0x20 || c >= 0x7f) return Parse::kNotMine;
  head->fields.clear();
  if (!ReadFields(text, eol + 2, &head->fields)) return Parse::kNotMine;
  int hosts = 0;
  bool length_seen = false;
  head->body = 0;
  head->close = false;
  head->expect_continue = false;
  for (const Field& f : head->fields) {
    std::string_view n = f.name;
    if (Is(n, "transfer-encoding") || Is(n, "upgrade")) return Parse::kNotMine;
    if (Is(n, "expect")) {
      // Any other expectation, or two, is http.Server's to refuse (417).
      if (head->expect_continue || !Is(f.value, "100-continue")) return Parse::kNotMine;
      head->expect_continue = true;
    } else if (Is(n, "host")) {
      hosts++;
    } else if (Is(n, "content-length")) {
      uint64_t length;
      if (length_seen || !Digits(f.value, 18, &length)) return Parse::kNotMine;
      length_seen = true;
      head->body = length;
    } else if (Is(n, "connection")) {
      Tokens(f.value, [&](std::string_view token) {
        if (Is(token, "close")) head->close = true;
      });
    }
  }
  if (hosts != 1) return Parse::kNotMine;
  std::string_view m = head->method;
  head->idempotent = m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE" || m == "PUT" ||
                     m == "DELETE";
  head->length = end + 4;
  return Parse::kMine;
}

void ForwardRequest(const RequestHead& head, std::string_view client_ip, bool trust,
                    std::string* out) {
  out->append(head.method);
  out->push_back(' ');
  out->append(head.target);
  out->append(" HTTP/1.1\r\n");
  std::string prior_for, prior_proto, prior_host, standard;
  std::string_view host;
  bool any_connection_tokens = false;
  auto join = [](std::string* to, std::string_view value) {
    if (!to->empty()) to->append(", ");
    to->append(value);
  };
  for (const Field& f : head.fields) {
    if (Is(f.name, "host")) host = f.value;
    if (Is(f.name, "x-forwarded-for")) join(&prior_for, f.value);
    if (Is(f.name, "x-forwarded-proto")) join(&prior_proto, f.value);
    if (Is(f.name, "x-forwarded-host")) join(&prior_host, f.value);
    if (Is(f.name, "forwarded")) join(&standard, f.value);
    if (Is(f.name, "connection")) {
      Tokens(f.value, [&](std::string_view token) {
        if (!Is(token, "close") && !Is(token, "keep-alive")) any_connection_tokens = true;
      });
    }
  }
  for (const Field& f : head.fields) {
    if (IsHopByHop(f.name) || IsForwarded(f.name)) continue;
    if (any_connection_tokens && NamedByConnection(head.fields, f.name)) continue;
    Append(out, f.name, f.value);
  }
  std::string ip(client_ip);
  if (trust && !prior_for.empty()) ip = prior_for + ", " + ip;
  Append(out, "x-forwarded-for", ip);
  // Node joins repeated values with ", "; a trusted proxy's empty value still counts as set.
  Append(out, "x-forwarded-proto", trust && !prior_proto.empty() ? prior_proto : "http");
  Append(out, "x-forwarded-host", trust && !prior_host.empty() ? prior_host : host);
  if (trust && !standard.empty()) Append(out, "forwarded", standard);
  out->append("\r\n");
}

ResponseParse ParseResponse(std::string_view data, bool head_request, ResponseHead* head,
                            std::string* out) {
  size_t end = data.find("\r\n\r\n");
  if (BareLf(data.substr(0, end == std::string_view::npos ? data.size() : end + 4)))
    return ResponseParse::kBad;
  if (end == std::string_view::npos)
    return data.size() > 64 * 1024 ? ResponseParse::kBad : ResponseParse::kMore;
  std::string_view text = data.substr(0, end + 4);
  size_t eol = text.find("\r\n");
  std::string_view line = text.substr(0, eol);
  // "HTTP/1.x SSS reason"
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ' ||
      (line.size() > 12 && line[12] != ' '))
    return ResponseParse::kBad;
  bool http10 = line[7] == '0';
  if (!http10 && line[7] != '1') return ResponseParse::kBad;
  uint64_t status;
  if (!Digits(line.substr(9, 3), 3, &status) || status < 100) return ResponseParse::kBad;
  std::string_view reason = line.size() > 13 ? line.substr(13) : std::string_view();
  std::vector<Field> fields;
  if (!ReadFields(text, eol + 2, &fields)) return ResponseParse::kBad;
  head->length = end + 4;
  head->status = static_cast<int>(status);
  if (status == 101) return ResponseParse::kBad;  // never asked for: no Upgrade is forwarded
  if (status < 200) return ResponseParse::kDone;  // interim: the caller skips it

  bool chunked = false, length_seen = false, has_date = false, close = http10;
  bool any_connection_tokens = false;
  for (const Field& f : fields) {
    if (Is(f.name, "transfer-encoding")) {
      if (chunked || !Is(f.value, "chunked")) return ResponseParse::kBad;
      chunked = true;
    } else if (Is(f.name, "content-length")) {
      uint64_t length;
      if (!Digits(f.value, 18, &length)) return ResponseParse::kBad;
      if (length_seen && length != head->content_length) return ResponseParse::kBad;
      length_seen = true;
      head->content_length = length;
    } else if (Is(f.name, "date")) {
      has_date = true;
    } else if (Is(f.name, "connection")) {
      Tokens(f.value, [&](std::string_view token) {
        if (Is(token, "close")) close = true;
        else if (!Is(token, "keep-alive")) any_connection_tokens = true;
      });
    }
  }
  bool bodyless = head_request || status == 204 || status == 304;
  if (bodyless) head->framing = Framing::kNone;
  else if (chunked) head->framing = Framing::kChunked;
  else if (length_seen) head->framing = Framing::kLength;
  else head->framing = Framing::kUntilClose;
  head->keep_alive = !close && head->framing != Framing::kUntilClose;

  out->append("HTTP/1.1 ");
  out->append(line.substr(9, 3));
  out->push_back(' ');
  out->append(reason.empty() ? std::string_view("unknown") : reason);
  out->append("\r\n");
  for (const Field& f : fields) {
    if (IsHopByHop(f.name) && !Is(f.name, "trailer")) continue;
    // With chunked framing the length, if any, is not the body's on this hop.
    if (chunked && Is(f.name, "content-length")) continue;
    if (any_connection_tokens && NamedByConnection(fields, f.name)) continue;
    Append(out, f.name, f.value);
  }
  if (!has_date) {
    // A proxy adds the Date a response lacks (RFC 9110 6.6.1), as http.Server does.
    thread_local char date[64];
    thread_local time_t date_at = 0;
    time_t now = time(nullptr);
    if (now != date_at) {
      struct tm tm;
      gmtime_r(&now, &tm);
      strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
      date_at = now;
    }
    Append(out, "date", date);
  }
  if (head->framing == Framing::kChunked || head->framing == Framing::kUntilClose)
    out->append("transfer-encoding: chunked\r\n");
  return ResponseParse::kDone;
}

long ChunkScanner::Scan(const char* data, size_t n) {
  size_t i = 0;
  while (i < n && state_ != State::kDone) {
    switch (state_) {
      case State::kData: {
        size_t take = remaining_ < n - i ? static_cast<size_t>(remaining_) : n - i;
        i += take;
        remaining_ -= take;
        if (remaining_ == 0) state_ = State::kDataEnd;
        break;
      }
      case State::kSize:
      case State::kDataEnd:
      case State::kTrailer: {
        char c = data[i++];
        line_.push_back(c);
        if (line_.size() > 4096) return -1;
        if (c != '\n') break;
        if (line_.size() < 2 || line_[line_.size() - 2] != '\r') return -1;
        std::string_view text(line_.data(), line_.size() - 2);
        if (state_ == State::kDataEnd) {
          if (!text.empty()) return -1;
          state_ = State::kSize;
        } else if (state_ == State::kTrailer) {
          trailer_bytes_ += line_.size();
          if (trailer_bytes_ > kMaxHead) return -1;
          if (text.empty()) state_ = State::kDone;
        } else {
          size_t semi = text.find(';');
          std::string_view hex = Trim(text.substr(0, semi));
          if (hex.empty() || hex.size() > 15) return -1;
          uint64_t size = 0;
          for (char h : hex) {
            int v = (h >= '0' && h <= '9')   ? h - '0'
                    : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                    : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                             : -1;
            if (v < 0) return -1;
            size = size * 16 + static_cast<uint64_t>(v);
          }
          remaining_ = size;
          state_ = size == 0 ? State::kTrailer : State::kData;
        }
        line_.clear();
        break;
      }
      case State::kDone:
        break;
    }
  }
  return static_cast<long>(i);
}

}  // namespace tableroll::lane
