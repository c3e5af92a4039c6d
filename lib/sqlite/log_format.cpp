#include "sqlite/log_format.h"

#include <sqlite3.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <optional>
#include <random>
#include <utility>

#include "core/codec.h"
#include "core/logging.h"
#include "sqlite/log_file.h"
#include "sqlite/sqlite_connection.h"
#include "sqlite/sqlite_errors.h"
#include "xatm/xid.h"

namespace xatm::detail {

namespace {

// Version 2 added the incarnations and rm_identities tables; a version 1 log is upgraded in place
// by the first open (its incarnations 1..N are recorded as legacy_incarnations). Version 3 added
// the tcc_branches table; an older log gets it at its first open.
constexpr const char* schema_version = "3";
constexpr const char* schema_version_1 = "1";
constexpr const char* schema_version_2 = "2";
// The tables version 2 added, created by a new log and by the upgrade of a version 1 log.
constexpr const char* version_2_tables[] = {
    "CREATE TABLE incarnations(id TEXT PRIMARY KEY, number INTEGER NOT NULL, opened_unix_ms INTEGER NOT NULL)"
    " WITHOUT ROWID",
    "CREATE TABLE rm_identities(rm_name TEXT PRIMARY KEY, identity TEXT NOT NULL, description TEXT NOT NULL,"
    " pinned_unix_ms INTEGER NOT NULL) WITHOUT ROWID",
};
// The table version 3 added (TCC branches, recorded before their try), created by a new log and
// by the upgrade of an older one.
constexpr const char* version_3_table =
    "CREATE TABLE tcc_branches(gtrid TEXT NOT NULL, branch INTEGER NOT NULL, participant TEXT NOT NULL,"
    " payload BLOB NOT NULL, created_unix_ms INTEGER NOT NULL, PRIMARY KEY(gtrid, branch)) WITHOUT ROWID";
// The SQLite header's application_id: xatm's formatID, "xat1". It tells an xatm log from any
// other SQLite file before a single table is read.
constexpr int application_id = xatm_format_id;

// Runs one statement with text parameters ?1, ?2, ... bound; `what` describes a failure.
result<void> run(sqlite3* db, const char* sql, std::initializer_list<std::string_view> texts, const std::string& what) {
  auto statement = prepare(db, sql);
  if (!statement) return std::move(statement).error();
  int index = 0;
  for (const std::string_view text : texts) bind_text(statement.value().get(), ++index, text);
  if (const int code = sqlite3_step(statement.value().get()); code != SQLITE_DONE) {
    return sqlite_failure(db, code, what);
  }
  return {};
}

// Reads rows of `sql` and hands each to `row`; `what` describes a failure.
template <class Row>
result<void> for_each_row(sqlite3* db, const char* sql, const std::string& what, Row row) {
  auto statement = prepare(db, sql);
  if (!statement) return std::move(statement).error();
  int code = SQLITE_OK;
  while ((code = sqlite3_step(statement.value().get())) == SQLITE_ROW) {
    if (auto used = row(statement.value().get()); !used) return used;
  }
  if (code != SQLITE_DONE) return sqlite_failure(db, code, what);
  return {};
}

result<std::string> read_meta(sqlite3* db, const std::string& path, const char* key) {
  auto value = query_text(db, "SELECT value FROM meta WHERE key = ?1", key);
  if (!value) return std::move(value).error();
  if (!value.value()) {
    return make_failure(xa_code::rm_error, "decision log " + path + " has no '" + key +
                                               "' in its meta table: it is damaged; " + never_recreate_advice);
  }
  return std::move(*value.value());
}

// A count kept in the meta table ("incarnation", "legacy_incarnations"); nullopt when malformed.
std::optional<std::uint64_t> parse_count(const std::string& text) {
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

failure damaged_or_not_a_database(const std::string& path, const failure& cause) {
  return make_failure(xa_code::rm_error, "decision log " + path + " is damaged or not an SQLite database (" +
                                             cause.message + "): refusing to use it; " + never_recreate_advice);
}

// `PRAGMA quick_check` answers one row "ok", or rows describing the damage.
result<void> quick_check(sqlite3* db, const std::string& path) {
  std::string problems;
  auto checked = for_each_row(db, "PRAGMA quick_check(5)", "PRAGMA quick_check of " + path + " failed",
                              [&problems](sqlite3_stmt* row) -> result<void> {
                                const std::string_view text = column_text(row, 0);
                                if (text == "ok") return {};
                                problems += problems.empty() ? "" : "; ";
                                // One line per message.
                                for (const char c : text) problems.push_back(c == '\n' ? ' ' : c);
                                return {};
                              });
  if (!checked) return checked;
  if (!problems.empty()) {
    return make_failure(xa_code::rm_error, "decision log " + path + " is damaged: it fails PRAGMA quick_check (" +
                                               problems + "): refusing to use it; " + never_recreate_advice);
  }
  return {};
}

// 12 characters: a letter, then 11 of base32's [a-z2-7], from the kernel's random source.
std::string random_incarnation_id() {
  constexpr std::string_view letters = "abcdefghijklmnopqrstuvwxyz";
  constexpr std::string_view base32 = "abcdefghijklmnopqrstuvwxyz234567";
  std::random_device source;  // getrandom(2) on Linux
  const std::uint64_t bits = std::uint64_t(source()) << 32 | source();
  std::string id(1, letters[bits % 26]);
  std::uint64_t rest = bits / 26;
  while (id.size() < incarnation_id_size) {
    id += base32[rest & 31];
    rest >>= 5;
  }
  return id;
}

result<decision_state> parse_state(std::string_view text) {
  if (text == "commit") return decision_state::commit;
  if (text == "precommit") return decision_state::precommit;
  return make_failure(xa_code::rm_error, "unknown decision state '" + std::string(text) + "'");
}

// The first reads of an open: an xatm log (the header's application_id), undamaged (quick_check),
// of a schema version this xatm reads, of this tm_id. Answers the version found (1, 2 or 3): an
// older one is upgraded by the open.
open_result<int> check_identity(sqlite3* db, const std::string& path, const std::string& tm_id) {
  auto unusable = [](failure cause) { return store_refusal{open_refusal::unusable, std::move(cause)}; };
  auto misconfigured = [](failure cause) { return store_refusal{open_refusal::misconfigured, std::move(cause)}; };
  // The first read tells a database from garbage (SQLITE_NOTADB) and checks the header.
  auto app_id = query_text(db, "PRAGMA application_id");
  if (!app_id) {
    if (is_damage(app_id.error())) return unusable(damaged_or_not_a_database(path, app_id.error()));
    return unusable(std::move(app_id).error());
  }
  if (auto checked = quick_check(db, path); !checked) {
    failure cause = std::move(checked).error();
    if (is_damage(cause)) {
      cause.message =
          "decision log " + path + " is damaged (" + cause.message + "): refusing to use it; " + never_recreate_advice;
    }
    return unusable(std::move(cause));
  }
  if (app_id.value().value_or("") != std::to_string(application_id)) {
    return misconfigured(make_failure(xa_code::invalid, path +
                                                            " is an SQLite database but not an xatm decision log "
                                                            "(application_id " +
                                                            app_id.value().value_or("?") +
                                                            "); point the TM at its own log file"));
  }
  auto version = read_meta(db, path, "schema_version");
  if (!version) return unusable(std::move(version).error());
  const int found = version.value() == schema_version_1 ? 1 : version.value() == schema_version_2 ? 2 : 3;
  if (version.value() != schema_version && found == 3) {
    return misconfigured(make_failure(xa_code::invalid, "decision log " + path + " has schema version " +
                                                            version.value() + ", this xatm reads version " +
                                                            schema_version +
                                                            ": open it with the xatm version that wrote it"));
  }
  auto stored_tm_id = read_meta(db, path, "tm_id");
  if (!stored_tm_id) return unusable(std::move(stored_tm_id).error());
  if (stored_tm_id.value() != tm_id) {
    return misconfigured(make_failure(xa_code::invalid, "decision log " + path + " belongs to tm_id '" +
                                                            stored_tm_id.value() + "', not to the configured tm_id '" +
                                                            tm_id +
                                                            "': each TM instance needs its own log; configure "
                                                            "tm_id '" +
                                                            stored_tm_id.value() + "' or use another path"));
  }
  return found;
}

// Version 1 -> 2, inside the transaction that takes the new incarnation: the gtrids of
// incarnations 1..`last` carry their number and stay this log's own; from now on every open
// draws an incarnation id.
result<void> upgrade_from_version_1(sqlite3* db, const std::string& path, std::uint64_t last) {
  for (const char* sql : version_2_tables) {
    if (auto done = exec(db, sql); !done) return done;
  }
  const std::string legacy = std::to_string(last);
  if (auto done = run(db, "INSERT INTO meta(key, value) VALUES ('legacy_incarnations', ?1)", {legacy},
                      "cannot upgrade " + path);
      !done) {
    return done;
  }
  if (auto done = exec(db, "UPDATE meta SET value = '2' WHERE key = 'schema_version'"); !done) return done;
  XATM_LOG(log, info) << "decision log " << path << " upgraded to schema version 2";
  return {};
}

// Version 2 -> 3, inside the transaction that takes the new incarnation.
result<void> upgrade_from_version_2(sqlite3* db, const std::string& path) {
  if (auto done = exec(db, version_3_table); !done) return done;
  if (auto done = exec(db, "UPDATE meta SET value = '3' WHERE key = 'schema_version'"); !done) return done;
  XATM_LOG(log, info) << "decision log " << path << " upgraded to schema version 3";
  return {};
}

// The incarnations this log issued and the pins it holds, into `state`.
result<void> load_incarnations_and_pins(sqlite3* db, const std::string& path, log_state& state) {
  auto legacy = read_meta(db, path, "legacy_incarnations");
  if (!legacy) return std::move(legacy).error();
  const auto count = parse_count(legacy.value());
  if (!count) {
    return make_failure(xa_code::rm_error, "decision log " + path + " holds a malformed legacy_incarnations '" +
                                               legacy.value() + "'; " + never_recreate_advice);
  }
  state.legacy_incarnations = *count;
  if (auto ids = for_each_row(db, "SELECT id FROM incarnations", "reading the incarnations of " + path,
                              [&state](sqlite3_stmt* row) -> result<void> {
                                state.own_incarnations.emplace(column_text(row, 0));
                                return {};
                              });
      !ids) {
    return ids;
  }
  return for_each_row(db, "SELECT rm_name, identity, description, pinned_unix_ms FROM rm_identities",
                      "reading the RM identities of " + path, [&state](sqlite3_stmt* row) -> result<void> {
                        pinned_identity pin{std::string(column_text(row, 0)), std::string(column_text(row, 1)),
                                            std::string(column_text(row, 2)), sqlite3_column_int64(row, 3)};
                        state.pins.insert_or_assign(pin.rm_name, pin);
                        return {};
                      });
}

}  // namespace

const char* decision_state_name(decision_state state) noexcept {
  return state == decision_state::precommit ? "precommit" : "commit";
}

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool is_gtrid_of(std::string_view gtrid, std::string_view tm_id) noexcept {
  if (gtrid.size() > max_gtrid_size || gtrid.size() <= tm_id.size() + 1) return false;
  if (gtrid.substr(0, tm_id.size()) != tm_id || gtrid[tm_id.size()] != '.') return false;
  std::string_view rest = gtrid.substr(tm_id.size() + 1);
  if (rest.ends_with(".p3")) rest.remove_suffix(3);
  const auto dot = rest.find('.');
  if (dot == std::string_view::npos) return false;
  // The same rules as parse_gtrid (xatm/xid.h): canonical numbers, so the log stores nothing that
  // recovery would not call this TM's.
  const std::string_view incarnation = rest.substr(0, dot);
  return (is_legacy_incarnation(incarnation) || is_incarnation_id(incarnation)) &&
         detail::parse_uint64(rest.substr(dot + 1)).has_value();
}

bool log_state::is_own_incarnation(std::string_view part) const {
  if (auto number = detail::parse_uint64(part)) return *number >= 1 && *number <= legacy_incarnations;
  return own_incarnations.find(part) != own_incarnations.end();
}

result<void> write_new_log(const std::string& building, const std::string& tm_id, const std::string& vfs_name) {
  auto db = open_connection(building, vfs_name, false);
  if (!db) return std::move(db).error();
  sqlite3* raw = db.value().get();
  // Small pages, set before the first write: a decision's commit then writes about 1 KiB of WAL
  // frames instead of 4 KiB and more, and its fsync costs less (measured with
  // xatm-decision-log-bench on one committer: 4096-byte pages F + 28 us, 1024 F + 18 us, where
  // F is one fsync of a 4 KiB block). A log keeps the page size it was created with.
  if (auto sized = exec(raw, "PRAGMA page_size=1024"); !sized) return sized;
  auto mode = query_text(raw, "PRAGMA journal_mode=WAL");
  if (!mode) return std::move(mode).error();
  if (mode.value().value_or("") != "wal") {
    return make_failure(xa_code::rm_error, "SQLite refused WAL mode for " + building);
  }
  const std::string set_application_id = "PRAGMA application_id=" + std::to_string(application_id);
  for (const char* sql : {"PRAGMA synchronous=FULL", set_application_id.c_str(), "BEGIN IMMEDIATE",
                          "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
                          // WITHOUT ROWID: one b-tree keyed by gtrid, so an insert touches one tree, not two.
                          "CREATE TABLE decisions(gtrid TEXT PRIMARY KEY,"
                          " state TEXT NOT NULL CHECK(state IN ('commit','precommit')),"
                          " branches TEXT NOT NULL, created_unix_ms INTEGER NOT NULL) WITHOUT ROWID",
                          version_2_tables[0], version_2_tables[1], version_3_table}) {
    if (auto done = exec(raw, sql); !done) return done;
  }
  // incarnation 0: the open that follows makes it 1. clean_shutdown 1: closed, nothing in a WAL.
  const std::pair<const char*, std::string_view> rows[] = {{"schema_version", schema_version},
                                                           {"tm_id", tm_id},
                                                           {"incarnation", "0"},
                                                           {"clean_shutdown", "1"},
                                                           {"legacy_incarnations", "0"}};
  for (const auto& [key, value] : rows) {
    if (auto done =
            run(raw, "INSERT INTO meta(key, value) VALUES (?1, ?2)", {key, value}, "cannot initialise " + building);
        !done) {
      return done;
    }
  }
  if (auto done = exec(raw, "COMMIT"); !done) return done;
  // Closing the only connection checkpoints the WAL into the file and deletes the WAL.
  return close_connection(std::move(db).value(), true, "cannot close " + building);
}

open_result<log_state> take_incarnation(sqlite3* db, const std::string& path, const std::string& tm_id,
                                        bool wal_had_content) {
  auto unusable = [](failure cause) { return store_refusal{open_refusal::unusable, std::move(cause)}; };
  auto upgrade = check_identity(db, path, tm_id);
  if (!upgrade) return std::move(upgrade).refused();
  auto stored_incarnation = read_meta(db, path, "incarnation");
  if (!stored_incarnation) return unusable(std::move(stored_incarnation).error());
  const auto incarnation = parse_count(stored_incarnation.value());
  if (!incarnation || *incarnation == UINT64_MAX) {
    return unusable(make_failure(xa_code::rm_error, "decision log " + path + " holds a malformed incarnation '" +
                                                        stored_incarnation.value() + "'; " + never_recreate_advice));
  }
  // The log marks itself unclean at open (checkpointed into the main file) and clean at close. An
  // unclean log without its -wal lost the decisions written since the last checkpoint: SQLite
  // would silently start an empty WAL, and recovery would presume those commits aborted.
  auto clean = read_meta(db, path, "clean_shutdown");
  if (!clean) return unusable(std::move(clean).error());
  if (clean.value() != "1" && !wal_had_content) {
    return unusable(make_failure(xa_code::rm_error,
                                 "decision log " + path + " was not closed cleanly and its write-ahead log " + path +
                                     "-wal is missing (or empty): the decisions written since its last checkpoint "
                                     "are lost. Restore the -wal file (it must never be deleted); if it is gone, " +
                                     never_recreate_advice));
  }

  auto mode = query_text(db, "PRAGMA journal_mode=WAL");
  if (!mode) return unusable(std::move(mode).error());
  if (mode.value().value_or("") != "wal") {
    return unusable(make_failure(xa_code::rm_error, "SQLite refused WAL mode for " + path));
  }
  // FULL: in WAL mode every COMMIT fsyncs the WAL; NORMAL would acknowledge before the fsync.
  if (auto done = exec(db, "PRAGMA synchronous=FULL"); !done) return unusable(std::move(done).error());

  // A new incarnation, durably, before anything else is written: gtrids of this incarnation
  // must never have been used by an earlier one. The incarnation id is drawn at random, so that
  // no other log (a lost one, a restored copy, a second host with this tm_id) can ever have
  // drawn it; recorded so that recovery knows it.
  log_state state;
  state.incarnation = *incarnation + 1;
  state.incarnation_id = random_incarnation_id();
  const std::string number = std::to_string(state.incarnation);
  result<void> taken = [&]() -> result<void> {
    for (const char* sql : {"BEGIN IMMEDIATE", "UPDATE meta SET value = '0' WHERE key = 'clean_shutdown'"}) {
      if (auto done = exec(db, sql); !done) return done;
    }
    if (upgrade.value() == 1) {
      if (auto upgraded = upgrade_from_version_1(db, path, *incarnation); !upgraded) return upgraded;
    }
    if (upgrade.value() <= 2) {
      if (auto upgraded = upgrade_from_version_2(db, path); !upgraded) return upgraded;
    }
    if (auto done = run(db, "UPDATE meta SET value = ?1 WHERE key = 'incarnation'", {number},
                        "cannot write the incarnation into " + path);
        !done) {
      return done;
    }
    auto insert = prepare(db, "INSERT INTO incarnations(id, number, opened_unix_ms) VALUES (?1, ?2, ?3)");
    if (!insert) return std::move(insert).error();
    bind_text(insert.value().get(), 1, state.incarnation_id);
    sqlite3_bind_int64(insert.value().get(), 2, static_cast<sqlite3_int64>(state.incarnation));
    sqlite3_bind_int64(insert.value().get(), 3, now_unix_ms());
    if (const int code = sqlite3_step(insert.value().get()); code != SQLITE_DONE) {
      return sqlite_failure(db, code, "cannot record the incarnation in " + path);
    }
    if (auto done = exec(db, "COMMIT"); !done) return done;
    return load_incarnations_and_pins(db, path, state);
  }();
  if (!taken) return unusable(std::move(taken).error());
  // Into the main file with it, so that "unclean" and the new incarnation survive even the loss
  // of the -wal file (see the clean_shutdown check above).
  int wal_frames = 0;
  int checkpointed = 0;
  if (const int code = sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_FULL, &wal_frames, &checkpointed);
      code != SQLITE_OK || wal_frames != checkpointed) {
    return unusable(sqlite_failure(db, code, "cannot checkpoint " + path));
  }
  return state;
}

result<std::string> read_stored_tm_id(const std::string& path) {
  auto db = open_connection(path, {}, true);
  if (!db) return std::move(db).error();
  auto tm_id = read_meta(db.value().get(), path, "tm_id");
  if (!tm_id && is_damage(tm_id.error())) return damaged_or_not_a_database(path, tm_id.error());
  return tm_id;
}

result<std::vector<decision_record>> read_decisions(const std::string& path, const std::string& vfs_name) {
  auto db = open_connection(path, vfs_name, true);
  if (!db) return std::move(db).error();
  std::vector<decision_record> decisions;
  auto read = for_each_row(
      db.value().get(), "SELECT gtrid, state, branches, created_unix_ms FROM decisions ORDER BY created_unix_ms, gtrid",
      "reading decision log " + path + " failed", [&](sqlite3_stmt* row) -> result<void> {
        decision_record decision;
        decision.gtrid = column_text(row, 0);
        auto state = parse_state(column_text(row, 1));
        if (!state) {
          failure cause = std::move(state).error();
          cause.message = "decision log " + path + ", gtrid " + decision.gtrid + ": " + cause.message;
          return cause;
        }
        decision.state = state.value();
        const std::string_view branches = column_text(row, 2);
        for (std::size_t start = 0; !branches.empty() && start <= branches.size();) {
          const std::size_t end = std::min(branches.find(',', start), branches.size());
          decision.branch_rms.emplace_back(branches.substr(start, end - start));
          start = end + 1;
        }
        decision.created_unix_ms = sqlite3_column_int64(row, 3);
        decisions.push_back(std::move(decision));
        return {};
      });
  if (!read) return std::move(read).error();
  return decisions;
}

result<std::vector<tcc_branch_record>> read_tcc_branches(const std::string& path, const std::string& vfs_name) {
  auto db = open_connection(path, vfs_name, true);
  if (!db) return std::move(db).error();
  std::vector<tcc_branch_record> branches;
  auto read = for_each_row(db.value().get(),
                           "SELECT gtrid, branch, participant, payload, created_unix_ms FROM tcc_branches"
                           " ORDER BY created_unix_ms, gtrid, branch",
                           "reading decision log " + path + " failed", [&](sqlite3_stmt* row) -> result<void> {
                             tcc_branch_record branch;
                             branch.gtrid = column_text(row, 0);
                             branch.branch = static_cast<std::uint32_t>(sqlite3_column_int64(row, 1));
                             branch.participant = column_text(row, 2);
                             const auto* bytes = static_cast<const char*>(sqlite3_column_blob(row, 3));
                             branch.payload.assign(bytes != nullptr ? bytes : "",
                                                   static_cast<std::size_t>(sqlite3_column_bytes(row, 3)));
                             branch.created_unix_ms = sqlite3_column_int64(row, 4);
                             branches.push_back(std::move(branch));
                             return {};
                           });
  if (!read) return std::move(read).error();
  return branches;
}

}  // namespace xatm::detail
