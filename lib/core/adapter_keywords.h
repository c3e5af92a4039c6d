// Internal: the connection keywords each adapter understands, asked by make_connector() so that
// register_rm() and xatm-recover refuse an unknown keyword at once, before any connection, and
// by the adapter's own connect(). Messages name the keyword, never a value.
#pragma once

#include "xatm/connection_settings.h"
#include "xatm/result.h"

namespace xatm::detail {

// Fail (xa_code::invalid) naming the first keyword of `settings` that libpq does not know
// (defined in postgresql/postgresql_rm.cpp).
result<void> check_postgresql_keywords(const connection_settings& settings);
// The same for the MariaDB/MySQL adapter's keywords, see mysql.h (mysql/mysql_rm.cpp).
result<void> check_mysql_keywords(const connection_settings& settings);

}  // namespace xatm::detail
