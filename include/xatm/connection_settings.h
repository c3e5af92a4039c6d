// xatm/connection_settings.h: connection strings for every RM, parsed once, printed redacted.
//
// Two forms (docs/connections.md lists what each backend accepts):
//  - libpq's keyword form, for both backends: `host=/run/db port=5432 user=app password='it\'s'`.
//    Values may be single-quoted; inside quotes `\'` and `\\` are escapes (as in libpq). Keys
//    are [a-z0-9_]+. Each backend refuses, at registration, a keyword it does not know and a
//    value it cannot use (a port that is no number, a boolean that is none), naming the keyword.
//  - a URI, `postgresql://` or `postgres://` (PostgreSQL only): kept verbatim here and expanded by
//    libpq itself (PQconninfoParse) before anything connects; MariaDB refuses it.
// Passwords may also come from elsewhere than the string: `password_file=PATH` (both backends,
// read by xatm at each connect), libpq's passfile, PGPASSWORD and service files, MariaDB option
// files (read_default_file, read_default_group). Passwords are kept out of every string this type
// produces for people: describe() prints `password=***` (and *** for any other key naming a
// password or a passphrase, e.g. sslpassword, and for the password of a URI, in its user
// information or its query). Plain value type: use from any thread.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "xatm/export.h"
#include "xatm/result.h"

namespace xatm {

class XATM_EXPORT connection_settings {
 public:
  connection_settings() = default;

  // Parses `key=value ...`, or keeps a URI as it is (uri()). Fails (xa_code::invalid) with a
  // message that names the position and the key, and never quotes a password's text.
  static result<connection_settings> parse(std::string_view conninfo);
  // True when `conninfo` starts with `postgresql://` or `postgres://`: parse() keeps it as a URI.
  static bool is_uri_text(std::string_view conninfo) noexcept;
  // True for a key whose value describe() prints as *** (one naming a password or passphrase).
  static bool is_secret(std::string_view key) noexcept;

  // The URI as given, empty for the keyword form. A URI form has no keywords (values() is empty)
  // until its backend expanded it.
  const std::string& uri() const noexcept { return uri_; }

  // The value of a key, if present.
  std::optional<std::string> get(std::string_view key) const;
  void set(std::string key, std::string value);
  const std::map<std::string, std::string, std::less<>>& values() const noexcept { return values_; }

  // The settings as a conninfo string again, values quoted where needed, or the URI (password
  // included: for drivers only, never for logs).
  std::string to_conninfo() const;
  // For logs and errors: like to_conninfo() with the passwords replaced by ***.
  std::string describe() const;

 private:
  std::map<std::string, std::string, std::less<>> values_;
  std::string uri_;
};

}  // namespace xatm
