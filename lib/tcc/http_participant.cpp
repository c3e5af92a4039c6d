// A TCC participant over HTTP(S) with cpp-httplib (xatm/tcc.h: make_http_participant).
//
// Why it looks like this: call() is made from any thread of the coordinator, each time with the
// timeout its caller chose, and must never throw. So every call builds its own httplib client,
// sets that call's timeouts on it and drops it afterwards: no state is shared between threads,
// no lock serialises the calls to one participant, and a connection broken by one call cannot
// poison the next. The price is a TCP (and, for https, a TLS) handshake per call, and for https
// loading the system's CA certificates per call; a TCC step is one call per branch and
// transaction, so the simpler design wins. The URL is checked once, in make_http_participant(),
// so that a typo fails at registration and not at the first try; it is never echoed back, since
// a URL may carry secrets (userinfo is refused outright).
#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "xatm/error.h"
#include "xatm/tcc.h"

namespace xatm {
namespace {

// How much of a participant's answer goes into tcc_reply::detail: enough for "insufficient
// funds" or an exception's message, not a whole error page.
constexpr std::size_t detail_limit = 200;

// Where make_http_participant() sends the steps.
struct http_endpoint {
  bool https = false;
  std::string host;  // a name, an IPv4 address, or an IPv6 address without its brackets
  int port = 0;
  std::string path_prefix;  // "" or "/..." without a trailing slash
};

[[noreturn]] void bad_url(const std::string& why) {
  throw invalid_argument_error(make_failure(xa_code::invalid, "TCC participant URL: " + why));
}

bool starts_with_ignoring_case(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), text.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
         });
}

bool is_host_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-' || c == '_';
}

// A path byte we pass through as it is: RFC 3986's unreserved and sub-delims, ':' '@' '/' and
// '%' (an escape the user wrote). No '?' or '#': the steps' names are appended to the path.
bool is_path_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
         std::string_view("-._~!$&'()*+,;=:@/%").find(c) != std::string_view::npos;
}

// http[s]://host[:port][/path]. Every message says what is wrong, never what the URL was.
http_endpoint parse_url(std::string_view url) {
  http_endpoint endpoint;
  if (starts_with_ignoring_case(url, "https://")) {
    endpoint.https = true;
    url.remove_prefix(8);
  } else if (starts_with_ignoring_case(url, "http://")) {
    url.remove_prefix(7);
  } else {
    bad_url("must start with http:// or https://");
  }
  const std::size_t authority_end = url.find('/');
  std::string_view authority = url.substr(0, authority_end);
  std::string_view path = authority_end == std::string_view::npos ? std::string_view() : url.substr(authority_end);
  if (authority.find('@') != std::string_view::npos) {
    bad_url("user information (user:password@) is not accepted; authenticate the participant otherwise");
  }

  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {  // [IPv6]
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) bad_url("an IPv6 address needs its closing ']'");
    endpoint.host = std::string(authority.substr(1, close - 1));
    const bool hex_and_colons = std::all_of(endpoint.host.begin(), endpoint.host.end(), [](char c) {
      return std::isxdigit(static_cast<unsigned char>(c)) != 0 || c == ':' || c == '.';
    });
    if (endpoint.host.empty() || !hex_and_colons) bad_url("malformed IPv6 address");
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') bad_url("unexpected characters after the IPv6 address");
    if (!rest.empty()) port_text = rest.substr(1);
    if (!rest.empty() && port_text.empty()) bad_url("empty port");
  } else {
    const std::size_t colon = authority.find(':');
    endpoint.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) bad_url("empty port");
    }
    if (endpoint.host.empty()) bad_url("no host");
    if (!std::all_of(endpoint.host.begin(), endpoint.host.end(), is_host_name_char)) {
      bad_url("the host may hold only letters, digits, '.', '-' and '_'");
    }
  }

  endpoint.port = endpoint.https ? 443 : 80;
  if (!port_text.empty()) {
    int port = 0;
    const auto [end, error] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (error != std::errc() || end != port_text.data() + port_text.size() || port < 1 || port > 65535) {
      bad_url("the port must be a number from 1 to 65535");
    }
    endpoint.port = port;
  }

  if (!std::all_of(path.begin(), path.end(), is_path_char)) {
    bad_url("the path may not hold a query, a fragment, spaces or control characters");
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);  // ".../" + "/try"
  endpoint.path_prefix = std::string(path);
  return endpoint;
}

// Header values come from the caller; a CR or LF in one would let it forge headers or requests.
bool safe_header_value(std::string_view value) {
  return std::none_of(value.begin(), value.end(),
                      [](char c) { return std::iscntrl(static_cast<unsigned char>(c)) != 0; });
}

std::string truncated(std::string_view text) {
  if (text.size() <= detail_limit) return std::string(text);
  return std::string(text.substr(0, detail_limit)) + "...";
}

class http_participant final : public tcc_participant {
 public:
  explicit http_participant(http_endpoint endpoint) : endpoint_(std::move(endpoint)) {}

  tcc_reply call(tcc_step step, const tcc_request& request, std::chrono::milliseconds timeout) override {
    try {
      return post(step, request, timeout);
    } catch (const std::exception& e) {  // httplib and the standard library may throw (bad_alloc, ...)
      return {tcc_answer::failed, std::string(tcc_step_name(step)) + ": " + e.what(), {}};
    } catch (...) {
      return {tcc_answer::failed, std::string(tcc_step_name(step)) + ": unknown exception", {}};
    }
  }

  std::string identify(std::chrono::milliseconds timeout) override {
    try {
      auto client = make_client(timeout);
      const httplib::Result response = client->Get(endpoint_.path_prefix + "/identity");
      if (!response || response->status != 200 || !safe_header_value(response->body)) return {};
      return response->body;
    } catch (...) {
      return {};
    }
  }

 private:
  // One client per call: nothing shared between threads, and each call's own timeouts.
  std::unique_ptr<httplib::ClientImpl> make_client(std::chrono::milliseconds timeout) const {
    std::unique_ptr<httplib::ClientImpl> client;
    if (endpoint_.https) {
      auto tls = std::make_unique<httplib::SSLClient>(endpoint_.host, endpoint_.port);
      tls->enable_server_certificate_verification(true);
      client = std::move(tls);
    } else {
      client = std::make_unique<httplib::ClientImpl>(endpoint_.host, endpoint_.port);
    }
    // Each phase is bounded by the caller's timeout. A peer that stalls in one phase costs at
    // most that; one that trickles bytes could stretch it, which "about `timeout`" allows.
    client->set_connection_timeout(timeout);
    client->set_read_timeout(timeout);
    client->set_write_timeout(timeout);
    client->set_keep_alive(false);
    client->set_follow_location(false);  // a redirect is not an answer: failed, ask again later
    return client;
  }

  tcc_reply post(tcc_step step, const tcc_request& request, std::chrono::milliseconds timeout) const {
    const std::string path = endpoint_.path_prefix + "/" + tcc_step_name(step);
    const std::string what = "POST " + path;
    if (!safe_header_value(request.gtrid) || !safe_header_value(request.participant) ||
        !safe_header_value(request.identity)) {
      return {tcc_answer::failed, what + ": the gtrid, participant name or identity holds control characters; not sent", {}};
    }
    auto client = make_client(timeout);
    httplib::Headers headers{
        {"Xatm-Gtrid", request.gtrid},
        {"Xatm-Branch", std::to_string(request.branch)},
        {"Xatm-Participant", request.participant},
    };
    if (!request.identity.empty()) headers.emplace("Xatm-Expect-Identity", request.identity);
    const httplib::Result response = client->Post(path, headers, request.payload, "application/octet-stream");
    if (!response) {
      return {tcc_answer::failed, what + ": no answer (" + httplib::to_string(response.error()) + ")", {}};
    }
    const std::string identity = response->get_header_value("Xatm-Identity");
    switch (response->status) {
      case 200: return {tcc_answer::done, truncated(response->body), identity};  // what the barrier did
      case 409: return {tcc_answer::refused, truncated(response->body), identity};
      default: {
        std::string detail = what + ": HTTP " + std::to_string(response->status);
        if (!response->body.empty()) detail += ": " + truncated(response->body);
        return {tcc_answer::failed, std::move(detail), identity};
      }
    }
  }

  const http_endpoint endpoint_;
};

}  // namespace

std::shared_ptr<tcc_participant> make_http_participant(std::string_view base_url) {
  return std::make_shared<http_participant>(parse_url(base_url));
}

}  // namespace xatm
