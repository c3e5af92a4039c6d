// Internal: opening a PostgreSQL resource manager (libpq).
//
// The connection string is libpq's keyword form (see connection_settings.h). The server needs
// max_prepared_transactions > 0; the first prepare says so clearly when it is 0.
// The returned object is used by one thread at a time.
#pragma once

#include <memory>
#include <string>

#include "xatm/connection_settings.h"
#include "core/resource_manager.h"

extern "C" {
struct pg_conn;  // libpq's PGconn, so that libpq's headers stay out of xatm's
}

namespace xatm::postgresql {

// Connects. Fails with xa_code::invalid (bad RM name, a keyword libpq does not know) or
// rm_failure (server unreachable, authentication refused, a value libpq rejects); messages name
// the settings with the password redacted. `dbname` is taken as a name, never expanded as a URI.
// Without application_name, the session shows up as "xatm" in pg_stat_activity.
result<std::unique_ptr<resource_manager>> connect(std::string rm_name, const connection_settings& settings);

// The PGconn* of a PostgreSQL resource manager (nullptr for another kind or when disconnected).
// The connection is in libpq's non-blocking mode: PQexec works as usual; code that uses
// PQsendQuery must PQflush. Run no transaction control (BEGIN, COMMIT, PREPARE ...) on it.
pg_conn* handle(resource_manager& rm) noexcept;

}  // namespace xatm::postgresql
