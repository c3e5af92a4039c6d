// The PostgreSQL backend (postgresql_backend.h): the SQL core runs on a PostgreSQL RM for itself.
//
// Durability (docs/design.md section 6, "durability preflight"), what is refused and why:
//   fsync = off: no WAL flush reaches the disk (xlog.c issue_xlog_fsync() returns at once when
//     !enableFsync), so PREPARE TRANSACTION and COMMIT PREPARED can both vanish.
//   max_prepared_transactions = 0: every PREPARE TRANSACTION fails ("prepared transactions are
//     disabled"); refused here so that connect() says so, not the first commit.
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
//     (own_session below, and control_session_statement()).
//   full_page_writes: see core/preflight.cpp.
#include "postgresql/postgresql_backend.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <memory>
#include <string>
#include <utility>

#include "core/c_handle.h"
#include "core/password_file.h"
#include "postgresql/postgresql_errors.h"
#include "postgresql/postgresql.h"

namespace xatm::detail {
namespace {

// The PostgreSQL advisory lock key of a lease name: FNV-1a, 64 bits.
std::uint64_t advisory_key(std::string_view name) {
  std::uint64_t hash = 14695981039346656037ULL;
  for (char c : name) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  return hash;
}

// Session settings of the TM's own connections (statements run in autocommit, resolutions,
// marker rows), forced because a server default could break them. What was considered is in
// docs/design.md section 8 ("Session settings"): synchronous_commit = on (marker rows must be
// durable when the insert returns), default_transaction_read_only = off (marker
// INSERT/DELETE/CREATE would fail; COMMIT PREPARED is allowed read-only),
// default_transaction_isolation = read committed (under serializable a P/A insert race can fail
// with 40001 instead of reading the winner), statement_timeout = 0 (tm_options::rm_call_timeout
// bounds xatm's calls).
constexpr std::string_view own_session =
    "SET synchronous_commit = on; SET default_transaction_read_only = off; "
    "SET default_transaction_isolation = 'read committed'; SET statement_timeout = 0";

// libpq's refusal of a URI without the text it quotes: libpq quotes the whole URI (password
// included) or a piece of it ("invalid percent-encoded token: \"...\""). What it says before
// the first quote is the reason.
std::string without_quoted_text(std::string_view message) {
  std::size_t quote = message.find('"');
  std::string reason(message.substr(0, quote));
  while (!reason.empty() && (reason.back() == ' ' || reason.back() == ':' || reason.back() == '\n')) reason.pop_back();
  if (quote != std::string_view::npos) reason += " (libpq's quote of the text is left out: it may hold a password)";
  return reason;
}

class postgresql_sql final : public backend {
 public:
  std::string_view dialect() const noexcept override { return "postgresql"; }

  // libpq parses the URI itself (PQconninfoParse): every form libpq accepts is accepted, with
  // libpq's meaning (several hosts, percent-encoding, query parameters).
  result<connection_settings> expand(const connection_settings& settings) const override {
    if (settings.uri().empty()) return settings;
    char* raw_message = nullptr;
    c_handle<PQconninfoOption, &PQconninfoFree> parsed(PQconninfoParse(settings.uri().c_str(), &raw_message));
    c_handle<char, &PQfreemem> message(raw_message);
    if (!parsed) {
      if (!message) return make_failure(xa_code::rm_error, "libpq is out of memory");
      return make_failure(xa_code::invalid, "PostgreSQL connection URI: " + without_quoted_text(message.get()));
    }
    connection_settings expanded;
    for (const PQconninfoOption* option = parsed.get(); option->keyword != nullptr; ++option) {
      if (option->val != nullptr) expanded.set(option->keyword, option->val);
    }
    return expanded;
  }

  result<void> check_keywords(const connection_settings& settings) const override {
    // libpq refuses unknown keywords with a generic message; its own list says which are known.
    c_handle<PQconninfoOption, &PQconninfoFree> known(PQconndefaults());
    if (!known) return make_failure(xa_code::rm_error, "libpq is out of memory");
    auto libpq_knows = [&](std::string_view key) {
      if (key == password_file_keyword) return true;  // xatm's own: read by xatm, never given to libpq
      for (const PQconninfoOption* option = known.get(); option->keyword != nullptr; ++option) {
        if (key == option->keyword) return true;
      }
      return false;
    };
    if (auto understood = refuse_unknown_keywords(settings, libpq_knows,
                                                  "libpq's keywords: host, port, dbname, user, password, sslmode, "
                                                  "sslrootcert, passfile, service, ... and xatm's password_file");
        !understood) {
      return understood;
    }
    // libpq checks these only when it connects, which may be recovery's, in the background.
    if (auto mode = settings.get("sslmode")) {
      constexpr std::string_view modes[] = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"};
      if (std::find(std::begin(modes), std::end(modes), *mode) == std::end(modes)) {
        return make_failure(xa_code::invalid,
                            "sslmode must be disable, allow, prefer, require, verify-ca or verify-full");
      }
    }
    if (auto ports = settings.get("port")) {
      // One port, or one per host separated by commas; an empty one means the default.
      bool numbers = std::all_of(ports->begin(), ports->end(), [](char c) { return (c >= '0' && c <= '9') || c == ','; });
      if (!numbers) return make_failure(xa_code::invalid, "port must be a number (or numbers separated by commas)");
    }
    return {};
  }

  result<std::unique_ptr<resource_manager>> connect(std::string rm_name,
                                                    const connection_settings& settings) const override {
    return postgresql::connect(std::move(rm_name), settings);
  }

  bool is_missing_table(const failure& cause) const noexcept override {
    return postgresql_detail::is_undefined_table(cause);
  }

  std::string identity_table_ddl() const override {
    return "CREATE TABLE IF NOT EXISTS xatm_identity (singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), "
           "database_id varchar(64) NOT NULL, created timestamptz NOT NULL DEFAULT now())";
  }

  // Every role xatm runs as on this database must read it, whichever created it; it holds
  // nothing secret.
  std::string identity_table_grant() const override { return "GRANT SELECT ON xatm_identity TO PUBLIC"; }

  std::string insert_identity_if_absent(std::string_view id_literal) const override {
    return "INSERT INTO xatm_identity (singleton, database_id) VALUES (true, " + std::string(id_literal) +
           ") ON CONFLICT (singleton) DO NOTHING";
  }

  std::string_view current_database_query() const override { return "SELECT current_database()"; }

  result<bool> try_take_lease(resource_manager& rm, std::string_view lease_name) const override {
    auto key = static_cast<std::int64_t>(advisory_key(lease_name));
    auto rows = rm.exec("SELECT pg_try_advisory_lock(" + std::to_string(key) + ")");
    if (!rows) return std::move(rows).error();
    return first_value(rows.value()) == std::optional<std::string>("t");
  }

  result<bool> lease_held(resource_manager& rm, std::string_view lease_name) const override {
    // pg_locks shows a bigint advisory key as classid (high 32 bits), objid (low 32 bits),
    // objsubid 1.
    const std::uint64_t key = advisory_key(lease_name);
    auto rows = rm.exec(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND classid::bigint = " +
        std::to_string(key >> 32) + " AND objid::bigint = " + std::to_string(key & 0xffffffffULL));
    if (!rows) return std::move(rows).error();
    return first_value(rows.value()).value_or("0") != "0";
  }

  std::string marker_table_ddl() const override {
    return "CREATE TABLE IF NOT EXISTS xatm_marker (gtrid varchar(64) PRIMARY KEY, "
           "state char(1) NOT NULL CHECK (state IN ('P', 'A')), branches varchar(1024) NOT NULL, "
           "created timestamptz NOT NULL DEFAULT now())";
  }

  std::string barrier_table_ddl() const override {
    return "CREATE TABLE IF NOT EXISTS xatm_tcc_barrier (gtrid varchar(64) NOT NULL, branch integer NOT NULL, "
           "step varchar(7) NOT NULL CHECK (step IN ('try', 'confirm', 'cancel')), "
           "origin varchar(7) NOT NULL CHECK (origin IN ('try', 'confirm', 'cancel')), "
           "created timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (gtrid, branch, step))";
  }

  std::string insert_marker_if_absent(std::string_view row) const override {
    return "INSERT INTO xatm_marker (gtrid, state, branches) VALUES " + std::string(row) +
           " ON CONFLICT (gtrid) DO NOTHING";
  }

  std::string_view list_markers_query() const override {
    return "SELECT gtrid, state, branches, CAST(EXTRACT(EPOCH FROM now() - created) AS bigint) FROM xatm_marker";
  }

  std::string delete_markers(std::string_view gtrid_list) const override {
    return "DELETE FROM xatm_marker WHERE gtrid IN (" + std::string(gtrid_list) + ")";
  }

  // Both tables in the schema where the session finds xatm_identity (the verified one); sound
  // when the session's unqualified xatm_marker is that very table (terminators use it so) and
  // its primary key is gtrid alone, not deferrable.
  std::string_view decision_tables_query() const override {
    return "SELECT quote_ident(n.nspname) || '.xatm_marker', quote_ident(n.nspname) || '.xatm_identity', "
           "(to_regclass('xatm_marker') = to_regclass(quote_ident(n.nspname) || '.xatm_marker') AND EXISTS ("
           "SELECT 1 FROM pg_constraint k WHERE k.conrelid = to_regclass('xatm_marker') AND k.contype = 'p' AND "
           "NOT k.condeferrable AND k.conkey = ARRAY[(SELECT a.attnum FROM pg_attribute a WHERE a.attrelid = "
           "k.conrelid AND a.attname = 'gtrid')]))::text "
           "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass('xatm_identity')";
  }

  // SET LOCAL: the decision's commit is the commit point, so it must be flushed even when the
  // application's session runs with synchronous_commit = off; the setting in force at COMMIT counts.
  // PostgreSQL says nothing of a transaction's writes before the read-only probe, so the insert
  // itself asks: no row (0 affected) while the transaction has written nothing, and the
  // coordinator then treats the branch as read-only (backend::decision_insert()).
  std::string decision_insert(std::string_view marker_table, std::string_view identity_table,
                              std::string_view gtrid_literal, std::string_view identity_literal,
                              std::string_view branches_literal) const override {
    return "SET LOCAL synchronous_commit = on; INSERT INTO " + std::string(marker_table) +
           " (gtrid, state, branches) SELECT (SELECT " + std::string(gtrid_literal) + " FROM " +
           std::string(identity_table) + " WHERE database_id = " + std::string(identity_literal) + "), 'P', " +
           std::string(branches_literal) + " WHERE pg_current_xact_id_if_assigned() IS NOT NULL";
  }

  settings_query preflight_query() const override {
    return {"SELECT current_setting('fsync'), current_setting('max_prepared_transactions'), pg_is_in_recovery()", 3};
  }

  std::optional<unsafe_setting> judge_durability(std::span<const std::optional<std::string>> settings) const override {
    if (settings[0] != "on") return unsafe_setting{"fsync", settings[0], std::string(loses_commits), "set fsync = on"};
    const auto& max_prepared = settings[1];
    if (!max_prepared || *max_prepared == "0") {
      return unsafe_setting{"max_prepared_transactions", max_prepared, "makes every prepare fail",
                            "set it > 0 in postgresql.conf and restart the server"};
    }
    return std::nullopt;
  }

  // A hot standby answers queries, identity included, but lists only the prepared transactions
  // it has replayed so far. libpq's default target_session_attrs=any lets a host list land on it.
  std::optional<read_only_server> judge_writable(std::span<const std::optional<std::string>> settings) const override {
    if (settings[2] != "t") return std::nullopt;
    return read_only_server{
        "is a standby (pg_is_in_recovery() is true): it takes no writes, and its pg_prepared_xacts may "
        "lack branches the primary has prepared",
        "point the connection string at the primary; with several hosts (host=a,b, a multi-host URI, a "
        "service) add target_session_attrs=read-write"};
  }

  std::string_view control_session_statement() const override {
    return "SET synchronous_commit TO on; SET lock_timeout = '5s'";
  }

  std::string_view own_session_statement() const override { return own_session; }

  // The simple query protocol runs a ';'-separated list and answers the last statement's rows.
  bool runs_statement_lists() const noexcept override { return true; }
};

}  // namespace

const backend& postgresql_backend() noexcept {
  static const auto* const the_backend = new postgresql_sql;  // NOLINT: immortal, as the registry (backend.cpp)
  return *the_backend;
}

}  // namespace xatm::detail
