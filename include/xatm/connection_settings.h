// xatm/connection_settings.h: connection strings for every RM, parsed once, printed redacted.
//
// Both backends take libpq's keyword form: `host=/run/db port=5432 user=app password='it''s'`.
// Values may be single-quoted; inside quotes `\'` and `\\` are escapes (as in libpq). Keys are
// [a-z_]+. Passwords are kept out of every string this type produces: describe() prints
// `password=***` (and *** for any other key containing "password", e.g. sslpassword). Plain value type: use from any
// thread.
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

  // Parses `key=value ...`. Fails (xa_code::invalid) with a message that names the position and
  // the key, and never quotes a password's text.
  static result<connection_settings> parse(std::string_view conninfo);

  // The value of a key, if present.
  std::optional<std::string> get(std::string_view key) const;
  void set(std::string key, std::string value);
  const std::map<std::string, std::string, std::less<>>& values() const noexcept { return values_; }

  // The settings as a conninfo string again, values quoted where needed (password included:
  // for drivers only, never for logs).
  std::string to_conninfo() const;
  // For logs and errors: like to_conninfo() with the password replaced by ***.
  std::string describe() const;

 private:
  std::map<std::string, std::string, std::less<>> values_;
};

}  // namespace xatm
