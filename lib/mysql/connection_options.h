// Internal: the connection keywords of the MariaDB/MySQL adapter and what each becomes in
// Connector/C (docs/connections.md lists them for users). check() is asked at registration and
// at every connect, before anything is sent: it refuses an unknown keyword, a number that is none,
// a boolean that is none, naming the keyword. apply() sets the options on a handle before
// mysql_real_connect. Functions of no state: any thread.
#pragma once

#include <optional>
#include <string>

#include "xatm/connection_settings.h"
#include "xatm/result.h"

extern "C" {
struct st_mysql;
}

namespace xatm::mysql_detail {

// What mysql_real_connect takes as arguments rather than options.
struct connect_arguments {
  std::optional<std::string> host;
  std::optional<std::string> user;
  std::optional<std::string> password;
  std::optional<std::string> database;  // dbname or database
  unsigned int port = 0;                // 0: Connector/C's default (or the option file's)
  std::optional<std::string> unix_socket;
  std::optional<unsigned int> connect_timeout;  // seconds, also bounding xatm's session setup
};

// Fails (xa_code::invalid) naming the first keyword Connector/C is not given through xatm, or
// whose value is unusable (port, timeouts, booleans), or dbname and database both given.
[[nodiscard]] result<connect_arguments> check(const connection_settings& settings);

// The options of `settings` set on `conn` (TLS, timeouts, option files); the arguments for
// mysql_real_connect. Fails (xa_code::invalid) as check(), or when Connector/C refuses an option.
[[nodiscard]] result<connect_arguments> apply(st_mysql* conn, const connection_settings& settings);

// The keywords for a refusal's message.
inline constexpr std::string_view keyword_list =
    "host, port, user, password, password_file, dbname or database, unix_socket, connect_timeout, read_timeout, "
    "write_timeout, ssl, ssl_ca, ssl_capath, ssl_cert, ssl_key, ssl_cipher, ssl_crl, ssl_crlpath, ssl_passphrase, "
    "ssl_verify_server_cert, tls_version, read_default_file, read_default_group";

}  // namespace xatm::mysql_detail
