// Internal: how MariaDB and MySQL spell an XID: the literal of XA statements, and the two forms
// XA RECOVER lists (MariaDB's FORMAT='SQL' literal, MySQL 8's CONVERT XID hex).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "xatm/result.h"
#include "xatm/xid.h"

namespace xatm::mysql {

// The XID literal for XA statements: `X'<hex gtrid>',X'<hex bqual>',<formatID>`. Nothing in it
// can break out of the SQL.
std::string xid_literal(const xid& branch);
// Parses the `data` column of MariaDB's `XA RECOVER FORMAT='SQL'` (the literal above).
result<xid> parse_sql_literal(std::string_view data);
// Parses a row of MySQL 8's `XA RECOVER CONVERT XID`: data is `0x<hex of gtrid then bqual>`.
result<xid> parse_hex(std::int32_t format_id, std::size_t gtrid_length, std::size_t bqual_length,
                      std::string_view data);

}  // namespace xatm::mysql
