// Internal: opening a MariaDB or MySQL resource manager (libmysqlclient API).
//
// Connection string keys: connection_options.h (host, port, user, password, dbname, unix_socket,
// timeouts, TLS, option files; docs/connections.md). The dialect (MariaDB or MySQL 8) is detected
// from the server version. The returned object is used by one thread at a time.
//
// The session runs with autocommit=1 whatever the server's global default (with autocommit=0,
// resolving a prepared branch from a session that ran any statement fails with XAER_OUTSIDE),
// and with session_track_transaction_info=STATE, and xatm installs Connector/C's
// status callback (MARIADB_OPT_STATUS_CALLBACK) on the handle to see every transaction-state
// report, also for SQL the application runs on handle(): that is how end() learns that a
// branch wrote nothing. So mysql_session_track_get_first/_next report nothing on this handle,
// and the application must leave session_track_transaction_info alone. Never turn on
// MYSQL_OPT_RECONNECT: a silent reconnect would lose the branch.
#pragma once

#include <memory>
#include <string>

#include "xatm/connection_settings.h"
#include "core/resource_manager.h"

extern "C" {
struct st_mysql;  // the client library's MYSQL, so that its headers stay out of xatm's
}

namespace xatm::mysql {

// Connects. Fails with xa_code::rm_failure (server unreachable, credentials or database
// refused, as for PostgreSQL) or invalid (bad settings: an unknown keyword, a value that is not
// a number, a server too old for the session settings xatm needs).
//
// What the verbs answer beyond resource_manager.h: commit/rollback of a branch another session
// prepared answers xa_code::retry while that session is still connected (MariaDB then says
// XAER_NOTA although XA RECOVER lists the branch), and while FLUSH TABLES WITH READ LOCK holds
// off commits (lock_wait_timeout). For a branch left prepared behind a connection this process
// closed or lost, it also answers retry until InnoDB has let go of the ended session's
// transaction (docs/design.md section 6), read from SHOW ENGINE INNODB STATUS: give the user the
// PROCESS privilege, or each such branch waits a further second after its session ended. A deadlock in the branch's SQL
// (exec() or handle()) makes the branch rollback-only, and so does a lock wait timeout answered to exec(): end() then
// answers XA_RBDEADLOCK / XA_RBTIMEOUT (XA_RBROLLBACK for a deadlock only the handle saw).
result<std::unique_ptr<resource_manager>> connect(std::string rm_name, const connection_settings& settings);

// The MYSQL* of a MariaDB/MySQL resource manager (nullptr for another kind or when disconnected).
st_mysql* handle(resource_manager& rm) noexcept;

}  // namespace xatm::mysql
