// The MariaDB/MySQL connection keywords (connection_options.h).
//
// TLS: any of the certificate, key, cipher, CRL or version keywords asks for TLS (Connector/C's
// MYSQL_OPT_SSL_ENFORCE: refused when the server offers none) unless ssl=0 says otherwise; ssl=1
// asks for it alone. Connector/C 3.3 checks the server's chain against ssl_ca (or ssl_capath)
// whenever one is given, even with ssl_verify_server_cert=0; ssl_verify_server_cert=1 adds the
// host-name check. Without a CA nothing is checked (tls_connection_test pins this). A CA given
// means "check who I am talking to", as libpq's sslrootcert does: xatm then turns the host-name
// check on too, unless ssl_verify_server_cert=0 says otherwise.
//
// Option files (read_default_file, read_default_group): Connector/C reads them inside
// mysql_real_connect, so they may hold anything its [client] options do, the password included.
#include "mysql/connection_options.h"

#include <mysql.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <charconv>
#include <string_view>

#include "core/password_file.h"

namespace xatm::mysql_detail {
namespace {

enum class kind : std::uint8_t { argument, text, seconds, boolean };

struct keyword {
  std::string_view name;
  kind type;
  mysql_option option;  // for text, seconds and boolean
  bool asks_for_tls;     // giving it turns TLS on (see above)
};

// MYSQL_OPT_NONBLOCK is a placeholder for the arguments: they are no option.
constexpr std::array<keyword, 23> keywords = {{
    {"host", kind::argument, MYSQL_OPT_NONBLOCK, false},
    {"port", kind::argument, MYSQL_OPT_NONBLOCK, false},
    {"user", kind::argument, MYSQL_OPT_NONBLOCK, false},
    {"password", kind::argument, MYSQL_OPT_NONBLOCK, false},
    {"dbname", kind::argument, MYSQL_OPT_NONBLOCK, false},
    {"database", kind::argument, MYSQL_OPT_NONBLOCK, false},
    {"unix_socket", kind::argument, MYSQL_OPT_NONBLOCK, false},
    {"connect_timeout", kind::seconds, MYSQL_OPT_CONNECT_TIMEOUT, false},
    {"read_timeout", kind::seconds, MYSQL_OPT_READ_TIMEOUT, false},
    {"write_timeout", kind::seconds, MYSQL_OPT_WRITE_TIMEOUT, false},
    {"ssl", kind::boolean, MYSQL_OPT_SSL_ENFORCE, false},
    {"ssl_ca", kind::text, MYSQL_OPT_SSL_CA, true},
    {"ssl_capath", kind::text, MYSQL_OPT_SSL_CAPATH, true},
    {"ssl_cert", kind::text, MYSQL_OPT_SSL_CERT, true},
    {"ssl_key", kind::text, MYSQL_OPT_SSL_KEY, true},
    {"ssl_cipher", kind::text, MYSQL_OPT_SSL_CIPHER, true},
    {"ssl_crl", kind::text, MYSQL_OPT_SSL_CRL, true},
    {"ssl_crlpath", kind::text, MYSQL_OPT_SSL_CRLPATH, true},
    {"ssl_passphrase", kind::text, MARIADB_OPT_TLS_PASSPHRASE, false},
    {"ssl_verify_server_cert", kind::boolean, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, false},
    {"tls_version", kind::text, MARIADB_OPT_TLS_VERSION, true},
    {"read_default_file", kind::text, MYSQL_READ_DEFAULT_FILE, false},
    {"read_default_group", kind::text, MYSQL_READ_DEFAULT_GROUP, false},
}};

const keyword* find_keyword(std::string_view name) {
  auto found = std::find_if(keywords.begin(), keywords.end(), [&](const keyword& k) { return k.name == name; });
  return found == keywords.end() ? nullptr : &*found;
}

std::optional<unsigned int> parse_unsigned(std::string_view text) {
  unsigned int value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<bool> parse_boolean(std::string_view text) {
  std::string lower;
  for (char c : text) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "1" || lower == "true" || lower == "on" || lower == "yes") return true;
  if (lower == "0" || lower == "false" || lower == "off" || lower == "no") return false;
  return std::nullopt;
}

failure invalid(std::string message) { return make_failure(xa_code::invalid, std::move(message)); }

}  // namespace

result<connect_arguments> check(const connection_settings& settings) {
  connect_arguments arguments;
  for (const auto& [key, value] : settings.values()) {
    if (key == detail::password_file_keyword) continue;  // read by core (password_file.h)
    const keyword* known = find_keyword(key);
    if (known == nullptr) {
      return invalid("unknown connection keyword '" + key + "' (MariaDB/MySQL keywords: " +
                     std::string(keyword_list) + ")");
    }
    switch (known->type) {
      case kind::seconds:
        if (!parse_unsigned(value)) return invalid(key + " must be a number of seconds");
        break;
      case kind::boolean:
        if (!parse_boolean(value)) return invalid(key + " must be 1 or 0 (true/false, on/off, yes/no)");
        break;
      case kind::text:
        if (value.empty()) return invalid(key + " is empty");
        break;
      case kind::argument: break;
    }
  }
  arguments.host = settings.get("host");
  arguments.user = settings.get("user");
  arguments.password = settings.get("password");
  arguments.unix_socket = settings.get("unix_socket");
  arguments.database = settings.get("dbname");
  if (auto database = settings.get("database")) {
    if (arguments.database) return invalid("give dbname or database, not both");
    arguments.database = std::move(database);
  }
  if (auto text = settings.get("port")) {
    auto port = parse_unsigned(*text);
    if (!port || *port > 65535) return invalid("port must be a number 0..65535");
    arguments.port = *port;
  }
  if (auto text = settings.get("connect_timeout")) arguments.connect_timeout = parse_unsigned(*text);
  return arguments;
}

result<connect_arguments> apply(MYSQL* conn, const connection_settings& settings) {
  auto arguments = check(settings);
  if (!arguments) return arguments;
  bool tls_asked = false;
  for (const auto& [key, value] : settings.values()) {
    const keyword* known = find_keyword(key);
    if (known == nullptr || known->type == kind::argument) continue;
    tls_asked = tls_asked || known->asks_for_tls;
    int refused = 0;
    switch (known->type) {
      case kind::seconds: {
        unsigned int seconds = *parse_unsigned(value);
        refused = mysql_optionsv(conn, known->option, &seconds);
        break;
      }
      case kind::boolean: {
        my_bool on = *parse_boolean(value) ? 1 : 0;
        refused = mysql_optionsv(conn, known->option, &on);
        break;
      }
      case kind::text: refused = mysql_optionsv(conn, known->option, value.c_str()); break;
      case kind::argument: break;
    }
    if (refused != 0) return invalid("Connector/C refused " + key);
  }
  if (tls_asked && !settings.get("ssl")) {
    my_bool on = 1;
    if (mysql_optionsv(conn, MYSQL_OPT_SSL_ENFORCE, &on) != 0) return invalid("Connector/C cannot enforce TLS");
  }
  if ((settings.get("ssl_ca") || settings.get("ssl_capath")) && !settings.get("ssl_verify_server_cert")) {
    my_bool on = 1;
    if (mysql_optionsv(conn, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &on) != 0) {
      return invalid("Connector/C cannot verify the server's certificate");
    }
  }
  return arguments;
}

}  // namespace xatm::mysql_detail
