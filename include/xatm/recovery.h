// xatm/recovery.h: resolving the prepared branches a crash left behind (docs/design.md section 6).
//
// One algorithm serves the transaction manager (at start, periodically, and recover_now()) and
// the xatm-recover tool (recover_offline()). It lists every registered RM's prepared branches,
// commits those whose decision log holds COMMIT, rolls back xatm's own branches with no record
// (presumed abort), confirms or cancels the log's TCC branches the same way, never touches
// anything foreign, and reports what it found and did. An RM it
// cannot reach is reported unresolved, never guessed about. Running it twice, or crashing inside
// it, converges. The report types are plain data; recover_offline() is safe from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "xatm/export.h"
#include "xatm/xid.h"

namespace xatm {

// What recovery did with one prepared branch (or one decision).
enum class recovery_result : std::uint8_t {
  committed,        // committed now, following a COMMIT decision
  rolled_back,      // rolled back now: xatm's branch with no decision (presumed abort)
  already_done,     // the RM no longer had it: an earlier run or the TM finished it
  would_commit,     // dry run: would commit
  would_roll_back,  // dry run: would roll back
  skipped_live,     // belongs to the running TM's current incarnation and is in flight
  foreign,          // another formatID or another tm_id: listed, never touched
  unresolved,       // could not be resolved now (RM unreachable, branch still attached, ...)
  heuristic,        // the RM did the opposite of the decision
  would_forget,     // dry run: a decision none of whose branches remain; the real run forgets it
};
// For people (the table view): "rolled back", "would commit (dry run)", ...
XATM_EXPORT const char* recovery_result_name(recovery_result result) noexcept;
// For programs (xatm-recover --json): the enumerator's own name, "rolled_back", "would_commit", ...
XATM_EXPORT const char* recovery_result_code(recovery_result result) noexcept;

// What a branch's fate was decided by.
enum class recovery_decision : std::uint8_t {
  none,            // nothing decides it here: foreign, or left unresolved before a decision was read
  commit,          // the decision log holds COMMIT
  presumed_abort,  // xatm's branch with no COMMIT record
  marker_rule,     // decided by markers (three-phase, commit-marker), not read yet
  marker_commit,   // a P marker (on the branch's RM or at the arbiter): commit
  marker_abort,    // an A marker at the arbiter: roll back
  no_marker,       // no marker at the arbiter: the real run inserts A (unless the coordinator's P wins)
};
XATM_EXPORT const char* recovery_decision_code(recovery_decision decision) noexcept;  // "presumed_abort", ...

struct recovery_item {
  std::string rm_name;      // the RM, or the TCC participant
  std::string xid;          // xid::to_string(), or the RM's raw text for undecodable XIDs; TCC: "tcc <n>"
  std::string gtrid;        // empty for undecodable XIDs
  std::string state_found;  // "prepared", or "gone" for a decision none of whose branches remain
  std::string decision;     // "commit", "none (presumed abort)", or "-" (foreign)
  std::string action;       // "commit", "rollback", "none"; TCC branches: "confirm", "cancel"
  recovery_result result = recovery_result::unresolved;
  std::string detail;                       // why, for unresolved / heuristic / foreign results
  std::optional<std::int64_t> age_seconds;  // how long it has been prepared, when the RM says
  std::optional<xatm::xid> branch;          // the XID's parts, when it decodes (not for TCC branches)
  recovery_decision decided = recovery_decision::none;  // what `decision` says, for programs
};

struct XATM_EXPORT recovery_report {
  std::vector<recovery_item> items;
  std::vector<std::string> unreachable_rms;  // "name: why"
  std::size_t decisions_pending_before = 0;
  std::vector<std::string> completed;  // decisions forgotten because every branch is done
  // RMs whose connection reaches another database than the one the log pinned for that name
  // (or that cannot be verified): nothing was done on them. "name: what differs, what to do".
  std::vector<std::string> identity_mismatches;
  // RM names re-pinned before this run (offline_recovery_options::repin): "name: old -> new".
  std::vector<std::string> repinned;
  // Marker rows of finished three-phase transactions deleted by this run (would be, in a dry run).
  std::size_t markers_deleted = 0;

  // Something of ours is left in doubt (exit code 1 of xatm-recover).
  bool unresolved() const noexcept;
  // A branch did the opposite of the decision (exit code 3).
  bool heuristic() const noexcept;
};

struct offline_recovery_options {
  std::string tm_id;                                     // the tm_id of the log's owner
  std::string log_path;                                  // its decision log
  std::vector<std::pair<std::string, std::string>> rms;  // name -> "<dialect>:<conninfo>"
  // TCC participants over HTTP (xatm/tcc.h): name -> base URL. The log's TCC branches are
  // confirmed or cancelled through them; a branch whose participant is not given stays
  // unresolved (and its gtrid's decision is kept).
  std::vector<std::pair<std::string, std::string>> tcc;
  bool dry_run = false;                                  // report only; change nothing on any RM and in the log
  // RM names to re-pin to the database their connection reaches now, after a deliberate move:
  // the decision log records the new identity before recovery runs.
  std::vector<std::string> repin;
  // Also terminate OTHER TMs' three-phase branches (docs/design.md section 7): scan, wait
  // precommit_timeout, scan again, and resolve what stayed prepared by the marker rule.
  bool terminate = false;
  std::chrono::milliseconds precommit_timeout{std::chrono::seconds(30)};
  // As tm_options::allow_unsafe_durability: false (the default) refuses an RM whose server can
  // lose a committed transaction on a host crash (fsync = off, innodb_flush_log_at_trx_commit
  // != 1, ...); it is reported unreachable, with the setting, and nothing is done there.
  bool allow_unsafe_durability = false;
};

// Recovery without a running TM, as xatm-recover does it: takes the log's lock (throws
// log_in_use_error while a TM or another recovery holds it: a live TM recovers by itself),
// resolves, and releases the lock. Throws configuration_error for bad settings and
// log_failure_error for a damaged log (never presumes abort over a log it cannot read).
// An RM entry's dialect prefix is "postgresql:", "mysql:" or "mariadb:".
XATM_EXPORT recovery_report recover_offline(const offline_recovery_options& options);

// Creates xatm's tables on each RM ("<dialect>:<conninfo>") that lacks them: the identity row
// (xatm_identity), the marker table of three-phase and commit-marker modes (xatm_marker) and TCC
// participants' barrier (xatm_tcc_barrier); answers the RM names done. Throws configuration_error / rm_error.
XATM_EXPORT std::vector<std::string> install_marker_schema(const std::vector<std::pair<std::string, std::string>>& rms);

}  // namespace xatm
