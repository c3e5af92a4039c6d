// Internal: the MariaDB and MySQL backends (core/backend.h): the adapter's connection keywords
// and connect(), and the statements of xatm's identity table, incarnation leases, marker table
// and durability preflight. The two dialects share one implementation and differ in a few
// statements and verdicts; a connection reports the one its server turned out to be. Immutable
// objects: use them from any thread.
#pragma once

#include "core/backend.h"

namespace xatm::detail {

// The backend of dialect "mariadb"; registered by the wiring layer (builtin_backends.cpp).
[[nodiscard]] const backend& mariadb_backend() noexcept;
// The backend of dialect "mysql" (MySQL 8).
[[nodiscard]] const backend& mysql_backend() noexcept;

}  // namespace xatm::detail
