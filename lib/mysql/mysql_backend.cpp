// The MariaDB and MySQL backends (mysql_backend.h): the SQL core runs on such an RM for itself.
// Either name may be registered for either server: the adapter connects alike and reports the
// dialect of the server it reached (mysql_rm.cpp), whose backend then answers for it.
//
// Durability (docs/design.md section 6, "durability preflight"), what is refused and why:
//   innodb_flush_log_at_trx_commit = 0 or 2: the redo log is written (2) or not even that (0) at
//     XA PREPARE and XA COMMIT, and fsynced about once a second. MariaDB's 3 flushes at prepare
//     and at commit ("1 and 3 guarantee that after a crash committed transactions will not be
//     lost", MariaDB's documentation): accepted on MariaDB.
//   sync_binlog != 1 while log_bin is ON: with the binary log on it is the server's internal 2PC
//     coordinator; at crash recovery InnoDB rolls back what the binlog does not hold, so a
//     commit whose binlog event was not fsynced is lost with it.
//   innodb_doublewrite: not refused, see core/preflight.cpp.
#include "mysql/mysql_backend.h"

#include <memory>
#include <string>
#include <utility>

#include "mysql/connection_options.h"
#include "mysql/mysql_errors.h"
#include "mysql/mysql.h"

namespace xatm::detail {
namespace {

bool is_on(const std::optional<std::string>& value) {
  return value && (*value == "1" || *value == "ON" || *value == "on");
}

// Lease names are made by core of [A-Za-z0-9_.-] (checked before they get here): quoting is safe.
std::string quoted(std::string_view lease_name) { return "'" + std::string(lease_name) + "'"; }

class mysql_sql final : public backend {
 public:
  // `own_session`: the session settings forced on the TM's own connections (docs/design.md
  // section 8, "Session settings"): read-only off (marker rows would fail with
  // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION), and on MariaDB max_statement_time = 0, as
  // PostgreSQL's statement_timeout (tm_options::rm_call_timeout bounds xatm's calls). autocommit
  // = 1 is forced on every connection by the adapter itself (mysql_rm.cpp).
  mysql_sql(std::string_view dialect, bool mariadb, std::string_view own_session)
      : dialect_(dialect), mariadb_(mariadb), own_session_(own_session) {}

  std::string_view dialect() const noexcept override { return dialect_; }

  result<void> check_keywords(const connection_settings& settings) const override {
    auto checked = mysql_detail::check(settings);
    if (!checked) return std::move(checked).error();
    return {};
  }

  result<std::unique_ptr<resource_manager>> connect(std::string rm_name,
                                                    const connection_settings& settings) const override {
    return mysql::connect(std::move(rm_name), settings);
  }

  bool is_missing_table(const failure& cause) const noexcept override { return mysql_detail::is_no_such_table(cause); }

  std::string identity_table_ddl() const override {
    return "CREATE TABLE IF NOT EXISTS xatm_identity (singleton tinyint PRIMARY KEY DEFAULT 1 CHECK (singleton = 1), "
           "database_id varchar(64) CHARACTER SET ascii NOT NULL, "
           "created timestamp(6) NOT NULL DEFAULT current_timestamp(6)) ENGINE=InnoDB";
  }

  // There is no PUBLIC to grant to: the DBA's grants decide who reads it.
  std::string identity_table_grant() const override { return {}; }

  std::string insert_identity_if_absent(std::string_view id_literal) const override {
    return "INSERT IGNORE INTO xatm_identity (singleton, database_id) VALUES (1, " + std::string(id_literal) + ")";
  }

  std::string_view current_database_query() const override { return "SELECT DATABASE()"; }

  result<bool> try_take_lease(resource_manager& rm, std::string_view lease_name) const override {
    auto rows = rm.exec("SELECT GET_LOCK(" + quoted(lease_name) + ", 0)");
    if (!rows) return std::move(rows).error();
    return first_value(rows.value()) == std::optional<std::string>("1");
  }

  result<bool> lease_held(resource_manager& rm, std::string_view lease_name) const override {
    auto rows = rm.exec("SELECT IS_USED_LOCK(" + quoted(lease_name) + ")");  // the holder's id, NULL when free
    if (!rows) return std::move(rows).error();
    return first_value(rows.value()).has_value();
  }

  std::string marker_table_ddl() const override {
    return "CREATE TABLE IF NOT EXISTS xatm_marker (gtrid varchar(64) CHARACTER SET ascii COLLATE ascii_bin "
           "PRIMARY KEY, state char(1) NOT NULL CHECK (state IN ('P', 'A')), branches varchar(1024) NOT NULL, "
           "created timestamp(6) NOT NULL DEFAULT current_timestamp(6)) ENGINE=InnoDB";
  }

  std::string barrier_table_ddl() const override {
    return "CREATE TABLE IF NOT EXISTS xatm_tcc_barrier (gtrid varchar(64) CHARACTER SET ascii COLLATE ascii_bin "
           "NOT NULL, branch int unsigned NOT NULL, step varchar(7) CHARACTER SET ascii NOT NULL CHECK (step IN "
           "('try', 'confirm', 'cancel')), origin varchar(7) CHARACTER SET ascii NOT NULL CHECK (origin IN ('try', "
           "'confirm', 'cancel')), created timestamp(6) NOT NULL DEFAULT current_timestamp(6), PRIMARY KEY (gtrid, branch, "
           "step)) ENGINE=InnoDB";
  }

  std::string insert_marker_if_absent(std::string_view row) const override {
    return "INSERT IGNORE INTO xatm_marker (gtrid, state, branches) VALUES " + std::string(row);
  }

  std::string_view list_markers_query() const override {
    return "SELECT gtrid, state, branches, TIMESTAMPDIFF(SECOND, created, NOW(6)) FROM xatm_marker";
  }

  std::string delete_markers(std::string_view gtrid_list) const override {
    return "DELETE FROM xatm_marker WHERE gtrid IN (" + std::string(gtrid_list) + ")";
  }

  // Both tables live in the database the TM's own session uses (its connection string's); sound
  // when xatm_marker is transactional (InnoDB: a row of a rolled-back transaction must vanish)
  // and its primary key is gtrid alone.
  std::string_view decision_tables_query() const override {
    return "SELECT CONCAT('`', REPLACE(DATABASE(), '`', '``'), '`.xatm_marker'), "
           "CONCAT('`', REPLACE(DATABASE(), '`', '``'), '`.xatm_identity'), "
           "IF((SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND "
           "TABLE_NAME = 'xatm_marker') = 'InnoDB' AND (SELECT GROUP_CONCAT(COLUMN_NAME) FROM "
           "information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'xatm_marker' AND "
           "INDEX_NAME = 'PRIMARY') = 'gtrid', 'true', 'false')";
  }

  // A single-row VALUES insert of NULL into a NOT NULL column fails whatever the sql_mode. The
  // row is refused outside a transaction too (@@in_transaction is 0 in autocommit): an
  // application that ended the XA branch behind xatm's back must not get a row committed alone.
  std::string decision_insert(std::string_view marker_table, std::string_view identity_table,
                              std::string_view gtrid_literal, std::string_view identity_literal,
                              std::string_view branches_literal) const override {
    return "INSERT INTO " + std::string(marker_table) + " (gtrid, state, branches) VALUES ((SELECT " +
           std::string(gtrid_literal) + " FROM " + std::string(identity_table) +
           " WHERE database_id = " + std::string(identity_literal) + " AND @@in_transaction = 1), 'P', " +
           std::string(branches_literal) + ")";
  }

  settings_query preflight_query() const override {
    return {"SELECT @@GLOBAL.innodb_flush_log_at_trx_commit, @@GLOBAL.log_bin, @@GLOBAL.sync_binlog, "
            "@@GLOBAL.read_only, @@GLOBAL.innodb_read_only",
            5};
  }

  std::optional<unsafe_setting> judge_durability(std::span<const std::optional<std::string>> settings) const override {
    const auto& flush = settings[0];
    const auto& log_bin = settings[1];
    const auto& sync_binlog = settings[2];
    bool flush_ok = flush && (*flush == "1" || (*flush == "3" && mariadb_));
    if (!flush_ok) {
      return unsafe_setting{"innodb_flush_log_at_trx_commit", flush, std::string(loses_commits), "set it to 1"};
    }
    if (is_on(log_bin) && sync_binlog != "1") {
      return unsafe_setting{"sync_binlog", sync_binlog, "with log_bin ON " + std::string(loses_commits), "set it to 1"};
    }
    return std::nullopt;
  }

  // A replica is normally read_only: it applies its primary's XA PREPAREs from the binary log and
  // may not have applied them all yet. Users with SUPER (or READ_ONLY ADMIN) could still write
  // there, so the setting is judged, not a write's failure. read_only is 0/1, or OFF/ON/NO_LOCK...
  // where it is an enum.
  std::optional<read_only_server> judge_writable(std::span<const std::optional<std::string>> settings) const override {
    const auto& read_only = settings[3];
    if (read_only && *read_only != "0" && *read_only != "OFF") {
      return read_only_server{"is read-only (read_only = " + *read_only +
                                  ", as on a replica): a replica may not have applied branches its primary has "
                                  "prepared",
                              "point the connection string at the primary (if this is the primary, SET GLOBAL "
                              "read_only = 0)"};
    }
    if (is_on(settings[4])) {
      return read_only_server{"is read-only (innodb_read_only = ON): it cannot commit or roll back a branch",
                              "point the connection string at a server that takes writes"};
    }
    return std::nullopt;
  }

  // A server may default to autocommit=0, which would leave a P uncommitted.
  std::string_view control_session_statement() const override {
    return "SET SESSION autocommit = 1, innodb_lock_wait_timeout = 5";
  }

  std::string_view own_session_statement() const override { return own_session_; }

  // Connector/C runs one statement per query (no CLIENT_MULTI_STATEMENTS).
  bool runs_statement_lists() const noexcept override { return false; }

 private:
  std::string_view dialect_;
  bool mariadb_;
  std::string_view own_session_;
};

}  // namespace

const backend& mariadb_backend() noexcept {
  // Immortal, as the registry (core/backend.cpp): used by recovery threads until the very end.
  static const auto* const the_backend =
      new mysql_sql("mariadb", true,
                    "SET SESSION tx_read_only = 0, max_statement_time = 0, tx_isolation = 'READ-COMMITTED'");  // NOLINT
  return *the_backend;
}

const backend& mysql_backend() noexcept {
  static const auto* const the_backend =
      new mysql_sql("mysql", false,
                    "SET SESSION transaction_read_only = 0, transaction_isolation = 'READ-COMMITTED'");  // NOLINT
  return *the_backend;
}

}  // namespace xatm::detail
