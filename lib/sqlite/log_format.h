// Internal: what the decision log's SQLite file holds and how an open reads it (docs/design.md
// section 5): the schema, creating a new log's tables, the checks that refuse a foreign, damaged
// or unclean log, the upgrades from versions 1 and 2, taking a new incarnation, and the SQL of the
// writer's statements (log_writer.h). File custody (locks, modes, renames) is log_file.h's.
// Pure functions over a connection the caller owns: one thread per connection at a time.
//
// File format (schema_version 3; SQLite header application_id = xatm_format_id):
//   meta(key TEXT PRIMARY KEY, value TEXT): schema_version, tm_id, incarnation, clean_shutdown
//     ("0" from open to close, checkpointed into the main file, so that a lost -wal is detected),
//     legacy_incarnations (a log upgraded from version 1: its incarnations 1..N had no id, and
//     their gtrids carry the number).
//   incarnations(id TEXT PRIMARY KEY, number, opened_unix_ms): the random incarnation id each open
//     drew; gtrids carry it. A gtrid of this tm_id whose incarnation is not here is not this log's.
//   rm_identities(rm_name TEXT PRIMARY KEY, identity, description, pinned_unix_ms): the database
//     each RM name reached when it was first used (docs/design.md, RM identity).
//   decisions(gtrid TEXT PRIMARY KEY, state 'commit'|'precommit', branches TEXT (RM names of
//     branches 1, 2, ... joined by ','), created_unix_ms INTEGER) WITHOUT ROWID.
//   tcc_branches(gtrid, branch INTEGER, participant TEXT, payload BLOB, created_unix_ms; PRIMARY
//     KEY(gtrid, branch)) WITHOUT ROWID: TCC branches, written before their try, deleted with
//     their gtrid's completion (version 3).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/decision_store.h"
#include "xatm/result.h"

struct sqlite3;

namespace xatm::detail {

// The writer's statements (log_writer.h). A batch is one transaction: BEGIN IMMEDIATE, the
// completions' deletes, the decisions' inserts, COMMIT.
namespace log_sql {
inline constexpr const char* begin = "BEGIN IMMEDIATE";
inline constexpr const char* commit = "COMMIT";
inline constexpr const char* insert_decision =
    "INSERT INTO decisions(gtrid, state, branches, created_unix_ms) VALUES (?1, ?2, ?3, ?4)";
inline constexpr const char* delete_decision = "DELETE FROM decisions WHERE gtrid = ?1";
inline constexpr const char* delete_tcc_branches = "DELETE FROM tcc_branches WHERE gtrid = ?1";
inline constexpr const char* insert_tcc_branch =
    "INSERT INTO tcc_branches(gtrid, branch, participant, payload, created_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5)";
inline constexpr const char* pin_identity =
    "INSERT OR REPLACE INTO rm_identities(rm_name, identity, description, pinned_unix_ms) VALUES (?1, ?2, ?3, ?4)";
inline constexpr const char* mark_clean = "UPDATE meta SET value = '1' WHERE key = 'clean_shutdown'";
}  // namespace log_sql

// "commit" / "precommit": the spelling stored in the file.
[[nodiscard]] const char* decision_state_name(decision_state state) noexcept;

// Milliseconds since the epoch, as the log stamps decisions, incarnations and pins.
[[nodiscard]] std::int64_t now_unix_ms();

// Whether `gtrid` is `<tm_id>.<incarnation>.<seq>[.p3]` with this tm_id (a legacy or a random
// incarnation), checked without allocating: record() runs it for every decision. It also keeps
// '\n' and ',' (the log's separators) out of the file.
[[nodiscard]] bool is_gtrid_of(std::string_view gtrid, std::string_view tm_id) noexcept;

// Fills `building` (an empty file, log_file.h's create_by_rename) with a new log of version 3
// for `tm_id`: small pages, WAL mode, the tables, and the meta rows of incarnation 0.
[[nodiscard]] result<void> write_new_log(const std::string& building, const std::string& tm_id,
                                         const std::string& vfs_name);

// What an open learned from the file and took for itself. Written at open only.
struct log_state {
  std::uint64_t incarnation = 0;                        // this open's: one more than the file held
  std::string incarnation_id;                           // this open's, drawn at random
  std::set<std::string, std::less<>> own_incarnations;  // every id this log issued, this one's included
  std::uint64_t legacy_incarnations = 0;                // numbered incarnations 1..N of a version 1 log
  std::map<std::string, pinned_identity, std::less<>> pins;

  // Whether a gtrid's incarnation part (an id, or a legacy number) was issued by this log.
  [[nodiscard]] bool is_own_incarnation(std::string_view part) const;
};

// Checks that `db` (a read-write connection to `path`) holds an xatm decision log of `tm_id`
// that can be trusted, upgrades a version 1 log, and takes a new incarnation durably: marked
// unclean and checkpointed into the main file before this returns. Refusals: a file that is
// not an xatm log, an unknown schema version or another tm_id (misconfigured); damage, a log
// that was not closed cleanly and whose -wal had no content (`wal_had_content`), and any read
// or write failure (unusable). A refusal may leave the connection inside a transaction: close
// it without a checkpoint.
[[nodiscard]] open_result<log_state> take_incarnation(sqlite3* db, const std::string& path, const std::string& tm_id,
                                                      bool wal_had_content);

// The tm_id in a log's meta table, through a read-only connection of its own.
[[nodiscard]] result<std::string> read_stored_tm_id(const std::string& path);

// The decisions in the file, oldest first, through a read-only connection of its own (WAL
// readers never block the writer).
[[nodiscard]] result<std::vector<decision_record>> read_decisions(const std::string& path, const std::string& vfs_name);
// The TCC branch records, oldest first, read the same way.
[[nodiscard]] result<std::vector<tcc_branch_record>> read_tcc_branches(const std::string& path,
                                                                       const std::string& vfs_name);

}  // namespace xatm::detail
