// The durability preflight and the session settings of the TM's own connections (preflight.h).
//
// What is refused, and why (a host crash is a power loss or kernel crash, not a server crash):
//
//   PostgreSQL fsync = off: no WAL flush reaches the disk (xlog.c issue_xlog_fsync() returns at
//     once when !enableFsync), so PREPARE TRANSACTION and COMMIT PREPARED can both vanish.
//   PostgreSQL max_prepared_transactions = 0: every PREPARE TRANSACTION fails ("prepared
//     transactions are disabled"); refused here so that connect() says so, not the first commit.
//   MariaDB/MySQL innodb_flush_log_at_trx_commit = 0 or 2: the redo log is written (2) or not
//     even that (0) at XA PREPARE and XA COMMIT, and fsynced about once a second. MariaDB's 3
//     flushes at prepare and at commit ("1 and 3 guarantee that after a crash committed
//     transactions will not be lost", MariaDB's documentation): accepted.
//   MariaDB/MySQL sync_binlog != 1 while log_bin is ON: with the binary log on it is the
//     server's internal 2PC coordinator; at crash recovery InnoDB rolls back what the binlog
//     does not hold, so a commit whose binlog event was not fsynced is lost with it.
//
// Not refused, after reading PostgreSQL 15's source (15.18, src/backend/access/transam):
//   synchronous_commit. twophase.c EndPrepare() calls XLogFlush(gxact->prepare_end_lsn)
//     unconditionally before the prepare is reported ("If we crash now, we have prepared: WAL
//     replay will fix things"); RecordTransactionCommitPrepared() and
//     RecordTransactionAbortPrepared() call XLogFlush(recptr) unconditionally ("nor is there any
//     support for async commit of a prepared xact (the very idea is probably a contradiction)").
//     Only xact.c RecordTransactionCommit(), the ordinary COMMIT, looks at it: with
//     synchronous_commit = off it takes the XLogSetAsyncXactLSN() path and the flush happens
//     later. synchronous_commit below `on` only skips SyncRepWaitForLSN() (SyncRepRequested():
//     synchronous_commit > SYNCHRONOUS_COMMIT_LOCAL_FLUSH), i.e. waiting for standbys, never the
//     local flush. So prepared branches are durable whatever it says. It does matter for
//     (a) a one-phase COMMIT (one writing branch): that commit is exactly as durable as the
//     application's own local commits on that server, and no other RM can disagree with it, so
//     xatm leaves the application's choice alone; (b) the three-phase mode's marker rows, written
//     in autocommit on xatm's own connections: xatm forces synchronous_commit = on there
//     (prepare_own_connection below, and markers.cpp prepare_control_connection()).
//   full_page_writes (PostgreSQL) and innodb_doublewrite (MariaDB). Both protect data pages
//     against torn writes. Turning them off is a legitimate configuration on storage that never
//     tears a page (ZFS and other copy-on-write file systems, devices with atomic writes; MariaDB
//     even turns the doublewrite buffer off by itself on such devices), and xatm cannot see the
//     storage. A torn page is page corruption that hits local transactions alike, not an
//     acknowledged XA outcome silently reversed, so xatm does not refuse them.
#include "core/preflight.h"

#include <algorithm>
#include <string>
#include <utility>

#include "xatm/error.h"

namespace xatm::detail {
namespace {

constexpr const char* opt_out = " (or, on a throwaway server for tests, tm_options::allow_unsafe_durability / "
                                "xatm-recover --allow-unsafe-durability)";

// The durability query of a dialect, empty for dialects xatm does not know (test doubles).
std::string_view durability_query(std::string_view dialect) {
  if (dialect == "postgresql") return "SELECT current_setting('fsync'), current_setting('max_prepared_transactions')";
  if (dialect == "mariadb" || dialect == "mysql") {
    return "SELECT @@GLOBAL.innodb_flush_log_at_trx_commit, @@GLOBAL.log_bin, @@GLOBAL.sync_binlog";
  }
  return {};
}

// A value as the server printed it, shortened: it goes into a message.
std::string shown(const std::optional<std::string>& value) {
  if (!value) return "NULL";
  return value->size() <= 32 ? *value : value->substr(0, 32) + "...";
}

failure unsafe(const resource_manager& rm, const std::string& setting, const std::optional<std::string>& value,
               const std::string& why, const std::string& remedy) {
  return make_failure(xa_code::invalid,
                      "RM '" + rm.name() + "': " + setting + " = " + shown(value) + " " + why + ": " + remedy + opt_out,
                      rm.name());
}

bool is_on(const std::optional<std::string>& value) {
  return value && (*value == "1" || *value == "ON" || *value == "on");
}

constexpr const char* loses_commits = "can lose a committed XA transaction on a host crash";

// Judges the row the durability query answered.
result<void> judge(const resource_manager& rm, const query_result& answer) {
  if (answer.rows.size() != 1 || answer.rows.front().size() < 2) {
    return make_failure(xa_code::rm_error, "RM '" + rm.name() + "': the durability check got no settings back",
                        rm.name());
  }
  const auto& row = answer.rows.front();
  if (rm.dialect() == "postgresql") {
    if (row[0] != "on") return unsafe(rm, "fsync", row[0], loses_commits, "set fsync = on");
    if (!row[1] || *row[1] == "0") {
      return unsafe(rm, "max_prepared_transactions", row[1], "makes every prepare fail",
                    "set it > 0 in postgresql.conf and restart the server");
    }
    return {};
  }
  if (row.size() < 3) {
    return make_failure(xa_code::rm_error, "RM '" + rm.name() + "': the durability check got no settings back",
                        rm.name());
  }
  const auto& flush = row[0];
  bool flush_ok = flush && (*flush == "1" || (*flush == "3" && rm.dialect() == "mariadb"));
  if (!flush_ok) return unsafe(rm, "innodb_flush_log_at_trx_commit", flush, loses_commits, "set it to 1");
  if (is_on(row[1]) && row[2] != "1") {
    return unsafe(rm, "sync_binlog", row[2], std::string("with log_bin ON ") + loses_commits, "set it to 1");
  }
  return {};
}

// Session settings of the TM's own connections (statements run in autocommit, resolutions,
// marker rows), forced because a server default could break them. What was considered is in
// docs/design.md section 8 ("Session settings"):
//   PostgreSQL: synchronous_commit = on (marker rows must be durable when the insert returns),
//     default_transaction_read_only = off (marker INSERT/DELETE/CREATE would fail; COMMIT
//     PREPARED is allowed read-only), default_transaction_isolation = read committed (under
//     serializable a P/A insert race can fail with 40001 instead of reading the winner),
//     statement_timeout = 0 (tm_options::rm_call_timeout bounds xatm's calls).
//   MariaDB: tx_read_only = 0 (ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION on marker rows),
//     max_statement_time = 0 (as statement_timeout); MySQL 8: transaction_read_only = 0.
//     autocommit = 1 is forced on every connection by the adapter itself (mysql_rm.cpp).
constexpr const char* postgresql_own_session =
    "SET synchronous_commit = on; SET default_transaction_read_only = off; "
    "SET default_transaction_isolation = 'read committed'; SET statement_timeout = 0";

std::string_view own_session_statement(std::string_view dialect) {
  if (dialect == "postgresql") return postgresql_own_session;
  if (dialect == "mariadb") return "SET SESSION tx_read_only = 0, max_statement_time = 0";
  if (dialect == "mysql") return "SET SESSION transaction_read_only = 0";
  return {};
}

}  // namespace

result<void> check_durability(resource_manager& rm) {
  std::string_view query = durability_query(rm.dialect());
  if (query.empty()) return {};
  auto answer = rm.exec(query);
  if (!answer) return std::move(answer).error();
  return judge(rm, answer.value());
}

result<void> prepare_own_connection(resource_manager& rm, bool allow_unsafe_durability) {
  std::string_view session = own_session_statement(rm.dialect());
  if (session.empty()) return {};
  if (rm.dialect() == "postgresql") {
    // One round trip: the SETs and the check's SELECT in one simple query (exec() answers the
    // last statement's rows).
    if (allow_unsafe_durability) {
      auto done = rm.exec(session);
      if (!done) return std::move(done).error();
      return {};
    }
    auto answer = rm.exec(std::string(session) + "; " + std::string(durability_query(rm.dialect())));
    if (!answer) return std::move(answer).error();
    return judge(rm, answer.value());
  }
  // Connector/C runs one statement per query (no CLIENT_MULTI_STATEMENTS): check first, so that
  // an unsafe server costs one round trip.
  if (!allow_unsafe_durability) {
    if (auto safe = check_durability(rm); !safe) return safe;
  }
  auto done = rm.exec(session);
  if (!done) return std::move(done).error();
  return {};
}

result<std::unique_ptr<resource_manager>> own_connection(result<std::unique_ptr<resource_manager>> connection,
                                                         bool allow_unsafe_durability) {
  if (!connection) return connection;
  if (auto ready = prepare_own_connection(*connection.value(), allow_unsafe_durability); !ready) {
    return std::move(ready).error();
  }
  return connection;
}

void durability_checks::require_first(resource_manager& rm, const tm_options& options) {
  if (options.allow_unsafe_durability) return;
  {
    std::lock_guard lock(mutex_);
    if (passed_.contains(rm.name())) return;
  }
  const auto own_timeout = rm.call_timeout();
  if (!own_timeout) rm.set_call_timeout(options.rm_call_timeout);
  auto safe = check_durability(rm);
  rm.set_call_timeout(own_timeout);
  if (!safe) {
    failure cause = std::move(safe).error();
    if (cause.code == xa_code::invalid) throw configuration_error(std::move(cause));
    throw_failure(cause);
  }
  std::lock_guard lock(mutex_);
  passed_.insert(rm.name());
}

}  // namespace xatm::detail
