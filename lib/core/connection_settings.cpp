// libpq's keyword/value connection-string syntax, for every backend. Error messages name the key
// and the offset but never echo a value: the value being parsed may be a password. Nor do they
// echo a "keyword" that follows an unquoted password: in `password=my secret` the word `secret`
// is the rest of the password, not a keyword.
#include "xatm/connection_settings.h"

#include <cctype>
#include <optional>
#include <string>

namespace xatm {
namespace {

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }
bool is_key_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }
// password, sslpassword, ssl_passphrase, ...: any key that names a password is a secret.
bool is_secret_key(std::string_view key) {
  return key.find("password") != std::string_view::npos || key.find("passphrase") != std::string_view::npos;
}

constexpr std::string_view uri_schemes[] = {"postgresql://", "postgres://"};

// "%70assword" is "password" to libpq: a query keyword is judged decoded. Undecodable escapes stay.
std::string percent_decoded(std::string_view text) {
  std::string decoded;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && std::isxdigit(static_cast<unsigned char>(text[i + 1])) != 0 &&
        std::isxdigit(static_cast<unsigned char>(text[i + 2])) != 0) {
      decoded += static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      decoded += text[i];
    }
  }
  return decoded;
}

// A URI with its secrets replaced by ***: the password of the user information (libpq takes the
// text up to the first '@' before any '/' as `user[:password]`), and the value of every query
// parameter whose decoded keyword names a password. The rest is the caller's text, unchecked:
// libpq judges it (the PostgreSQL backend, before anything connects).
std::string redacted_uri(std::string_view uri) {
  std::size_t scheme_end = uri.find("://") + 3;
  std::string text(uri.substr(0, scheme_end));
  std::string_view rest = uri.substr(scheme_end);
  std::size_t credentials_end = rest.find_first_of("@/");
  if (credentials_end != std::string_view::npos && rest[credentials_end] == '@') {
    std::string_view credentials = rest.substr(0, credentials_end);
    std::size_t colon = credentials.find(':');
    text += colon == std::string_view::npos ? std::string(credentials)
                                            : std::string(credentials.substr(0, colon)) + ":***";
    text += '@';
    rest.remove_prefix(credentials_end + 1);
  }
  std::size_t query = rest.find('?');
  text += rest.substr(0, query);
  if (query == std::string_view::npos) return text;
  text += '?';
  rest.remove_prefix(query + 1);
  bool first = true;
  while (true) {
    std::size_t end = rest.find('&');
    std::string_view parameter = rest.substr(0, end);
    if (!first) text += '&';
    first = false;
    std::size_t equals = parameter.find('=');
    if (equals != std::string_view::npos && is_secret_key(percent_decoded(parameter.substr(0, equals)))) {
      text += std::string(parameter.substr(0, equals)) + "=***";
    } else {
      text += parameter;
    }
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end + 1);
  }
  return text;
}

// libpq ends a URI's user information at the first '@' before any '/'. Another '@' before the
// query means a password (or user name) with a raw '@' or '/': libpq accepts the URI but reads
// the rest of the password as the host (`app:p@ss@db` is host "ss@db") or the database
// (`app:12/ss@db` is host "app", port 12, database "ss@db"), and it would be printed as such. The
// offset of that '@', if any.
std::optional<std::size_t> stray_at_sign(std::string_view uri) {
  const std::size_t scheme_end = uri.find("://") + 3;
  std::size_t from = scheme_end;
  std::size_t credentials_end = uri.find_first_of("@/", scheme_end);
  if (credentials_end != std::string_view::npos && uri[credentials_end] == '@') from = credentials_end + 1;
  const std::size_t query = uri.find('?', from);
  const std::size_t stray = uri.substr(0, query).find('@', from);
  if (stray == std::string_view::npos) return std::nullopt;
  return stray;
}

failure syntax_error(std::string message, std::size_t offset) {
  return make_failure(xa_code::invalid,
                      "connection string: " + std::move(message) + " at offset " + std::to_string(offset));
}

std::string quote_if_needed(const std::string& value) {
  bool needs_quotes = value.empty();
  for (char c : value) {
    if (is_space(c) || c == '\'' || c == '\\' || c == '=') needs_quotes = true;
  }
  if (!needs_quotes) return value;
  std::string quoted = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') quoted += '\\';
    quoted += c;
  }
  return quoted + "'";
}

}  // namespace

bool connection_settings::is_uri_text(std::string_view conninfo) noexcept {
  for (auto scheme : uri_schemes) {
    if (conninfo.starts_with(scheme)) return true;
  }
  return false;
}

result<connection_settings> connection_settings::parse(std::string_view conninfo) {
  connection_settings settings;
  // A URI is kept as the caller wrote it: the backend that takes URIs (PostgreSQL) has its
  // driver expand it (backend::expand), and any other refuses it before anything connects.
  if (is_uri_text(conninfo)) {
    if (auto stray = stray_at_sign(conninfo)) {
      return syntax_error(
          "the URI has an '@' after its user information (percent-encode an '@' or '/' of a user name, "
          "password or database name: %40, %2F; libpq would read the rest of a password as the host or "
          "the database)",
          *stray);
    }
    settings.uri_ = std::string(conninfo);
    return settings;
  }
  std::size_t pos = 0;
  auto skip_spaces = [&] {
    while (pos < conninfo.size() && is_space(conninfo[pos])) ++pos;
  };
  // True right after an unquoted password value: the next word may be the rest of a password
  // with a space in it, so errors must not quote it.
  bool after_bare_secret = false;
  while (true) {
    skip_spaces();
    if (pos == conninfo.size()) break;
    std::size_t key_start = pos;
    while (pos < conninfo.size() && is_key_char(conninfo[pos])) ++pos;
    std::string key(conninfo.substr(key_start, pos - key_start));
    if (key.empty()) return syntax_error("expected a keyword of [a-z0-9_]", key_start);
    const std::string named = after_bare_secret
                                  ? "the word after an unquoted password (quote a password that contains spaces)"
                                  : "keyword '" + key + "'";
    skip_spaces();
    if (pos == conninfo.size() || conninfo[pos] != '=') {
      return syntax_error("missing '=' after " + named, pos);
    }
    ++pos;
    skip_spaces();
    std::string value;
    if (pos < conninfo.size() && conninfo[pos] == '\'') {
      std::size_t quote_start = pos++;
      bool closed = false;
      while (pos < conninfo.size()) {
        char c = conninfo[pos++];
        if (c == '\'') {
          closed = true;
          break;
        }
        if (c == '\\') {
          if (pos == conninfo.size()) break;
          c = conninfo[pos++];
        }
        value += c;
      }
      if (!closed) return syntax_error("unterminated quoted value of " + named, quote_start);
      after_bare_secret = false;
    } else {
      while (pos < conninfo.size() && !is_space(conninfo[pos])) {
        char c = conninfo[pos++];
        if (c == '\\' && pos < conninfo.size()) c = conninfo[pos++];
        value += c;
      }
      after_bare_secret = is_secret_key(key);
    }
    if (settings.values_.contains(key)) return syntax_error(named + " given twice", key_start);
    settings.values_.emplace(std::move(key), std::move(value));
  }
  return settings;
}

std::optional<std::string> connection_settings::get(std::string_view key) const {
  auto found = values_.find(key);
  if (found == values_.end()) return std::nullopt;
  return found->second;
}

void connection_settings::set(std::string key, std::string value) { values_[std::move(key)] = std::move(value); }

std::string connection_settings::to_conninfo() const {
  if (!uri_.empty()) return uri_;
  std::string text;
  for (const auto& [key, value] : values_) {
    if (!text.empty()) text += ' ';
    text += key + "=" + quote_if_needed(value);
  }
  return text;
}

bool connection_settings::is_secret(std::string_view key) noexcept { return is_secret_key(key); }

std::string connection_settings::describe() const {
  if (!uri_.empty()) return redacted_uri(uri_);
  std::string text;
  for (const auto& [key, value] : values_) {
    if (!text.empty()) text += ' ';
    text += key + "=" + (is_secret_key(key) ? std::string("***") : quote_if_needed(value));
  }
  return text;
}

}  // namespace xatm
