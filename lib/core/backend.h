// Internal: the seam between lib/core and the database backends (docs/design.md section 2). A
// backend is what core needs to know about one SQL dialect: the connection keywords its driver
// takes, how to open a connection, and the statements behind RM identities, incarnation leases,
// three-phase markers and the durability preflight; core runs them, the backend only writes
// and reads them. Each backend folder defines its objects, the wiring layer registers them
// (lib/builtin_backends.cpp, asked by the registry before its first lookup), and core finds one
// by dialect name (register_rm(), xatm-recover's --rm) or asks a connection for its own
// (backend_of()). Backends are immutable objects that
// live as long as the program: any thread may use one. The registry is thread-safe.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "xatm/connection_settings.h"
#include "core/resource_manager.h"
#include "xatm/result.h"

namespace xatm::detail {

// What a durability verdict found unsafe; core words the refusal (preflight.h).
struct unsafe_setting {
  std::string setting;               // "fsync", "innodb_flush_log_at_trx_commit", ...
  std::optional<std::string> value;  // as the server printed it; nullopt for NULL
  std::string why;                   // loses_commits, or what else it breaks
  std::string remedy;                // "set fsync = on"
};

// What a server that takes no writes is (a standby, a read-only replica), and what to do about it;
// core words the refusal (preflight.h).
struct read_only_server {
  std::string what;    // "is a standby (pg_is_in_recovery() is true): ..."
  std::string remedy;  // "point the connection string at the primary; ..."
};

// Why most unsafe settings are refused (unsafe_setting::why).
inline constexpr std::string_view loses_commits = "can lose a committed XA transaction on a host crash";

// A query of server settings: one row of `values` values.
struct settings_query {
  std::string_view sql;
  std::size_t values = 0;
};

class backend {
 public:
  backend() = default;
  backend(const backend&) = delete;
  backend& operator=(const backend&) = delete;
  virtual ~backend() = default;

  // ---- choosing and connecting ----------------------------------------------------------------
  // The dialect name the backend is registered and chosen by ("postgresql", "mariadb", "mysql").
  [[nodiscard]] virtual std::string_view dialect() const noexcept = 0;
  // The settings in keyword form: a URI (connection_settings::uri()) expanded by the driver, or
  // refused (xa_code::invalid) by a backend that takes none; keyword settings as they are. Asked
  // before check_keywords() and before anything connects; a refusal never quotes a password.
  [[nodiscard]] virtual result<connection_settings> expand(const connection_settings& settings) const {
    if (settings.uri().empty()) return settings;
    return make_failure(xa_code::invalid, "the " + std::string(dialect()) +
                                              " backend takes no URI: give the connection string as keywords "
                                              "(host=... port=... user=...)");
  }
  // Fails (xa_code::invalid) naming the first keyword of `settings` the driver does not know, or
  // whose value it cannot use (a port that is no number, a boolean that is none). Asked before
  // anything connects; the message names the keyword, never a value.
  [[nodiscard]] virtual result<void> check_keywords(const connection_settings& settings) const = 0;
  // Opens a connection: the adapter's connect() (include/xatm/postgresql.h, mysql.h).
  [[nodiscard]] virtual result<std::unique_ptr<resource_manager>> connect(
      std::string rm_name, const connection_settings& settings) const = 0;
  // True when `cause` says that a statement named a table that does not exist.
  [[nodiscard]] virtual bool is_missing_table(const failure& cause) const noexcept = 0;

  // ---- RM identity (identity.h) -----------------------------------------------------------------
  // The identity table's DDL (also what `xatm-recover --install-schema` creates).
  [[nodiscard]] virtual std::string identity_table_ddl() const = 0;
  // The statement run right after that DDL created the table, or empty when there is none.
  [[nodiscard]] virtual std::string identity_table_grant() const = 0;
  // Inserts the identity row with `id_literal` (an SQL string literal core checked) unless the
  // table has its row already: of two first meetings, one row wins.
  [[nodiscard]] virtual std::string insert_identity_if_absent(std::string_view id_literal) const = 0;
  // A query answering one value: the name of the database the session works in.
  [[nodiscard]] virtual std::string_view current_database_query() const = 0;

  // ---- incarnation leases (identity.h) ----------------------------------------------------------
  // `lease_name` is made by core of [A-Za-z0-9_.-] and checked before it gets here.
  // Tries to take the lease for the session of `rm`, without waiting: false when another session
  // holds it. The server drops it when the session ends.
  [[nodiscard]] virtual result<bool> try_take_lease(resource_manager& rm, std::string_view lease_name) const = 0;
  // Whether some session other than rm's own holds the lease. Reads, never takes: trying it
  // could make a TM's own attempt fail.
  [[nodiscard]] virtual result<bool> lease_held(resource_manager& rm, std::string_view lease_name) const = 0;

  // ---- three-phase markers (markers.h) ------------------------------------------------------------
  // The marker table's DDL, documented for DBAs in docs/three-phase.md.
  [[nodiscard]] virtual std::string marker_table_ddl() const = 0;
  // Inserts `row` into (gtrid, state, branches) unless its gtrid has a row: the primary key
  // decides between P and A. `row` is core's checked row value, `(<gtrid>, '<state>', <branches>)`.
  [[nodiscard]] virtual std::string insert_marker_if_absent(std::string_view row) const = 0;
  // A query listing every marker row: gtrid, state, branches, age in whole seconds.
  [[nodiscard]] virtual std::string_view list_markers_query() const = 0;
  // Deletes the marker rows whose gtrid is in `gtrid_list`, core's checked `'g1', 'g2', ...`.
  [[nodiscard]] virtual std::string delete_markers(std::string_view gtrid_list) const = 0;

  // ---- TCC participants' barrier (docs/tcc.md) ---------------------------------------------------
  // CREATE TABLE IF NOT EXISTS of xatm_tcc_barrier: (gtrid, branch, step) primary key, origin
  // (the step that wrote the row: a try row written by a cancel fences off a late try),
  // created. Transactional: a barrier row commits or rolls back with the business change.
  [[nodiscard]] virtual std::string barrier_table_ddl() const = 0;

  // ---- the commit-marker protocol's decision row (docs/commit-marker.md) -----------------------
  // A query answering one row of three values, run on a TM's own (identity-verified) connection:
  // the marker table and the identity table, each qualified with its schema or database and
  // quoted, so that the decision insert on the application's connection cannot reach another
  // table whatever that session's search_path or current database is; and 'true' when the
  // marker table is sound: the one this session reaches unqualified (as terminators do), with
  // gtrid alone as its immediate primary key, transactional.
  [[nodiscard]] virtual std::string_view decision_tables_query() const = 0;
  // The decision insert, run inside the decision branch on the application's connection just
  // before its one-phase commit. A plain insert of `(gtrid, 'P', branches)`, so that it fails on a
  // terminator's A row, whose gtrid value is a scalar subquery on the identity table that answers
  // NULL (a NOT NULL violation: an error) unless the database's identity is `identity_literal`.
  // It must make the branch's commit durable whatever the session's settings, and report its
  // insert's affected rows last. It may insert nothing (0 rows, no error) when the RM can tell
  // that the transaction has written nothing so far: the branch is then read-only and core
  // writes the row elsewhere. Arguments are core's checked SQL literals and the qualified names
  // decision_tables_query() answered.
  [[nodiscard]] virtual std::string decision_insert(std::string_view marker_table, std::string_view identity_table,
                                                    std::string_view gtrid_literal, std::string_view identity_literal,
                                                    std::string_view branches_literal) const = 0;

  // ---- server preflight and the TM's own sessions (preflight.h, markers.h) --------------------
  // The query of the server settings and state judge_durability() and judge_writable() read: one
  // row, run once per connection xatm opens for itself (and on the first application connection
  // to each RM name).
  [[nodiscard]] virtual settings_query preflight_query() const = 0;
  // Judges the values of preflight_query()'s row (core checked there are as many as it
  // selects): nullopt when the server keeps what it acknowledges across a host crash.
  [[nodiscard]] virtual std::optional<unsafe_setting> judge_durability(
      std::span<const std::optional<std::string>> settings) const = 0;
  // Judges the same row: nullopt when the server takes writes (a primary). A standby or a
  // read-only replica of the right database passes the identity check (the identity row is
  // replicated) but may lack branches its primary has prepared: recovery must not read "no
  // branch" there, and the TM cannot commit there. Never skipped (allow_unsafe_durability
  // does not cover it).
  [[nodiscard]] virtual std::optional<read_only_server> judge_writable(
      std::span<const std::optional<std::string>> settings) const = 0;
  // The statement a new control connection (markers, termination) runs first, so that a marker
  // row is committed and durable when its insert returns, and so that an insert-if-absent that
  // waits behind a coordinator's uncommitted decision row gives up after a few seconds (the
  // terminator retries on its next run) instead of stalling a recovery run.
  [[nodiscard]] virtual std::string_view control_session_statement() const = 0;
  // The session settings forced on every connection the TM opens for itself.
  [[nodiscard]] virtual std::string_view own_session_statement() const = 0;
  // True when one exec() runs several statements separated by ';' and answers the last one's
  // rows: the TM's own connections then get their settings and the durability check in one
  // round trip.
  [[nodiscard]] virtual bool runs_statement_lists() const noexcept = 0;
};

// Makes `chosen` findable by its dialect name; one registered before under that name is replaced
// (the built-in ones are registered at the first lookup). `chosen` must outlive every use
// (backends are static objects of their folders).
void register_backend(const backend& chosen);
// The backend registered under `dialect`, nullptr when none is.
[[nodiscard]] const backend* find_backend(std::string_view dialect) noexcept;
// The registered dialect names in registration order, for messages: "postgresql, mysql or
// mariadb", each followed by `suffix` ("postgresql:, mysql: or mariadb:").
[[nodiscard]] std::string dialect_list(std::string_view suffix = {});

// The backend of a connection: an SQL adapter's own (sql_adapter::sql_backend()); for another
// kind of RM, the one registered under the dialect it reports (an RM wrapping an adapter reports
// the adapter's). nullptr for test doubles, whose connections then skip identity, leases, markers
// and the durability check.
[[nodiscard]] const backend* backend_of(const resource_manager& rm) noexcept;

// The first value of the first row, if any (for queries answering one value).
[[nodiscard]] std::optional<std::string> first_value(const query_result& rows);

// For backends' check_keywords(): fails (xa_code::invalid) naming the first key of `settings`
// for which `known` answers false, with `known_keywords` (a short list for the user) in the message.
template <class keyword_check>
[[nodiscard]] result<void> refuse_unknown_keywords(const connection_settings& settings, const keyword_check& known,
                                                   std::string_view known_keywords) {
  for (const auto& [key, value] : settings.values()) {
    if (!known(key)) {
      return make_failure(xa_code::invalid,
                          "unknown connection keyword '" + key + "' (" + std::string(known_keywords) + ")");
    }
  }
  return {};
}

}  // namespace xatm::detail
