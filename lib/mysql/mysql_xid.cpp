// MariaDB's and MySQL's spellings of an XID (mysql_xid.h).
#include "mysql/mysql_xid.h"

#include "core/codec.h"

namespace xatm::mysql {

using detail::hex_decode;
using detail::hex_encode;
using detail::parse_int32;

namespace {

failure invalid(std::string message) { return make_failure(xa_code::invalid, std::move(message)); }

// Reads `X'<hex>'` at the front of `text` and removes it.
std::optional<std::string> take_hex_literal(std::string_view& text) {
  if (text.size() < 3 || (text[0] != 'X' && text[0] != 'x') || text[1] != '\'') return std::nullopt;
  auto close = text.find('\'', 2);
  if (close == std::string_view::npos) return std::nullopt;
  auto bytes = hex_decode(text.substr(2, close - 2));
  text.remove_prefix(close + 1);
  return bytes;
}

}  // namespace

std::string xid_literal(const xid& branch) {
  return "X'" + hex_encode(branch.gtrid()) + "',X'" + hex_encode(branch.bqual()) + "'," +
         std::to_string(branch.format_id());
}

result<xid> parse_sql_literal(std::string_view data) {
  auto rest = data;
  auto gtrid = take_hex_literal(rest);
  if (!gtrid || rest.empty() || rest.front() != ',') return invalid("not an XA RECOVER FORMAT='SQL' literal");
  rest.remove_prefix(1);
  auto bqual = take_hex_literal(rest);
  if (!bqual || rest.empty() || rest.front() != ',') return invalid("not an XA RECOVER FORMAT='SQL' literal");
  rest.remove_prefix(1);
  auto format_id = parse_int32(rest);
  if (!format_id) return invalid("not an XA RECOVER FORMAT='SQL' literal");
  return xid::make(*format_id, *gtrid, *bqual);
}

result<xid> parse_hex(std::int32_t format_id, std::size_t gtrid_length, std::size_t bqual_length,
                      std::string_view data) {
  if (data.size() < 2 || data[0] != '0' || (data[1] != 'x' && data[1] != 'X')) {
    return invalid("not an XA RECOVER CONVERT XID value (0x...)");
  }
  auto bytes = hex_decode(data.substr(2));
  if (!bytes || bytes->size() != gtrid_length + bqual_length) {
    return invalid("XA RECOVER CONVERT XID value does not match gtrid_length + bqual_length");
  }
  return xid::make(format_id, std::string_view(*bytes).substr(0, gtrid_length),
                   std::string_view(*bytes).substr(gtrid_length));
}

}  // namespace xatm::mysql
