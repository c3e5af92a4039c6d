// libpq's keyword/value connection-string syntax, for every backend. Error messages name the key
// and the offset but never echo a value: the value being parsed may be a password. Nor do they
// echo a "keyword" that follows an unquoted password: in `password=my secret` the word `secret`
// is the rest of the password, not a keyword.
#include "xatm/connection_settings.h"

#include <cctype>
#include <string>

namespace xatm {
namespace {

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }
bool is_key_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }
// password, sslpassword, ...: any key that names a password is a secret.
bool is_secret_key(std::string_view key) { return key.find("password") != std::string_view::npos; }

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

result<connection_settings> connection_settings::parse(std::string_view conninfo) {
  connection_settings settings;
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
  std::string text;
  for (const auto& [key, value] : values_) {
    if (!text.empty()) text += ' ';
    text += key + "=" + quote_if_needed(value);
  }
  return text;
}

std::string connection_settings::describe() const {
  std::string text;
  for (const auto& [key, value] : values_) {
    if (!text.empty()) text += ' ';
    text += key + "=" + (is_secret_key(key) ? std::string("***") : quote_if_needed(value));
  }
  return text;
}

}  // namespace xatm
