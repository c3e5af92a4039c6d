// libFuzzer target for every parser that reads text from outside: the XID parsers (gids from
// pg_prepared_xacts, XA RECOVER rows), the gtrid parser and the connection-string parser. Each
// accepted input must round-trip, and nothing may crash, hang or read out of bounds (ASan).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "xatm/connection_settings.h"
#include "xatm/xid.h"

namespace {

void require(bool condition) {
  if (!condition) std::abort();  // libFuzzer reports the input that got here
}

void check_xid(const xatm::result<xatm::xid>& parsed) {
  if (!parsed) return;
  const xatm::xid& id = parsed.value();
  require(!id.gtrid().empty() && id.gtrid().size() <= xatm::max_gtrid_size);
  require(!id.bqual().empty() && id.bqual().size() <= xatm::max_bqual_size);
  require(xatm::xid::from_postgresql_gid(id.postgresql_gid()).value() == id);
  require(xatm::xid::from_mysql_sql_literal(id.mysql_literal()).value() == id);
  require(id.postgresql_gid().size() < 200);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  check_xid(xatm::xid::from_postgresql_gid(text));
  check_xid(xatm::xid::from_mysql_sql_literal(text));
  if (size >= 2) {
    check_xid(xatm::xid::from_mysql_hex(static_cast<std::int32_t>(data[0]) - 1, data[0] % 70, data[1] % 70,
                                        text.substr(2)));
  }

  if (auto parts = xatm::parse_gtrid(text); parts) {
    require(xatm::format_gtrid(parts.value()).value() == text);
  }

  if (auto settings = xatm::connection_settings::parse(text); settings) {
    auto again = xatm::connection_settings::parse(settings.value().to_conninfo());
    require(again.ok() && again.value().values() == settings.value().values());
  }

  // A password never shows: not in describe(), not in any refusal, whatever follows it.
  const std::string secret = "\x01S3CR\x02";
  std::string quoted;
  for (char c : text) {
    if (c == '\'' || c == '\\') quoted += '\\';
    quoted += c;
  }
  if (text.find(secret[0]) != std::string_view::npos) return 0;  // the secret elsewhere may show
  auto with_password = xatm::connection_settings::parse("password='" + secret + quoted + "' " + std::string(text));
  if (with_password) {
    require(with_password.value().describe().find(secret) == std::string::npos);
  } else {
    require(with_password.error().message.find(secret) == std::string::npos);
  }
  return 0;
}
