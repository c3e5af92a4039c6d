// The recovery algorithm: docs/design.md section 6's table, top to bottom.
//
//   1. read the pending decisions from the log;
//   2. connect to every registered RM and verify it reaches the database the log pinned for its
//      name (an RM that fails this is left alone: nothing done there, no decision forgotten);
//   3. list the marker rows of every verified RM, then scan each for prepared branches (in that
//      order: a P row seen before a scan that finds no branch of its gtrid is finished);
//   4. resolve each of xatm's branches: COMMIT record -> commit; no record -> roll back
//      (presumed abort) unless the incarnation's TM still holds its lease; live incarnation and
//      not handed over -> skip; another log's incarnation or foreign -> report only;
//   5. forget a decision once every RM it names was verified, scanned and holds none of its
//      branches; delete the marker rows of three-phase transactions that are finished.
// Each action is idempotent ("does not exist" after a decision means already done), so a run
// that crashes half-way is simply run again. A dry run reads exactly what the real run reads
// (markers and leases included) and writes nothing.
#include "core/recovery.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <thread>
#include <set>

#include "core/backend.h"
#include "core/crash_point.h"
#include "core/identity.h"
#include "core/logging.h"
#include "core/markers.h"
#include "core/preflight.h"
#include "core/tcc_branches.h"
#include "core/tm_core.h"
#include "xatm/error.h"

namespace xatm {

const char* recovery_result_name(recovery_result result) noexcept {
  switch (result) {
    case recovery_result::committed: return "committed";
    case recovery_result::rolled_back: return "rolled back";
    case recovery_result::already_done: return "already done";
    case recovery_result::would_commit: return "would commit (dry run)";
    case recovery_result::would_roll_back: return "would roll back (dry run)";
    case recovery_result::skipped_live: return "skipped: in flight in the running TM";
    case recovery_result::foreign: return "foreign: never touched";
    case recovery_result::unresolved: return "UNRESOLVED";
    case recovery_result::heuristic: return "HEURISTIC";
    case recovery_result::would_forget: return "would forget the decision (dry run)";
  }
  return "unknown";
}

const char* recovery_result_code(recovery_result result) noexcept {
  switch (result) {
    case recovery_result::committed: return "committed";
    case recovery_result::rolled_back: return "rolled_back";
    case recovery_result::already_done: return "already_done";
    case recovery_result::would_commit: return "would_commit";
    case recovery_result::would_roll_back: return "would_roll_back";
    case recovery_result::skipped_live: return "skipped_live";
    case recovery_result::foreign: return "foreign";
    case recovery_result::unresolved: return "unresolved";
    case recovery_result::heuristic: return "heuristic";
    case recovery_result::would_forget: return "would_forget";
  }
  return "unknown";
}

const char* recovery_decision_code(recovery_decision decision) noexcept {
  switch (decision) {
    case recovery_decision::none: return "none";
    case recovery_decision::commit: return "commit";
    case recovery_decision::presumed_abort: return "presumed_abort";
    case recovery_decision::marker_rule: return "marker_rule";
    case recovery_decision::marker_commit: return "marker_commit";
    case recovery_decision::marker_abort: return "marker_abort";
    case recovery_decision::no_marker: return "no_marker";
  }
  return "unknown";
}

bool recovery_report::unresolved() const noexcept {
  if (!unreachable_rms.empty() || !identity_mismatches.empty()) return true;
  for (const auto& item : items) {
    if (item.result == recovery_result::unresolved || item.result == recovery_result::would_commit ||
        item.result == recovery_result::would_roll_back || item.result == recovery_result::would_forget) {
      return true;
    }
  }
  return false;
}

bool recovery_report::heuristic() const noexcept {
  for (const auto& item : items) {
    if (item.result == recovery_result::heuristic) return true;
  }
  return false;
}

namespace detail {
namespace {

// A connection of recovery's own. Every call on it is bounded: a silent RM must not stall the run
// (or the TM's recovery thread); it is reported unreachable, or its branch unresolved.
result<std::unique_ptr<resource_manager>> open_bounded(const rm_connector& connector,
                                                       std::chrono::milliseconds call_timeout,
                                                       bool allow_unsafe_durability) {
  auto connection = connector();
  if (connection) connection.value()->set_call_timeout(call_timeout);
  return own_connection(std::move(connection), allow_unsafe_durability);  // preflight.h
}

struct scanned_rm {
  std::string name;
  std::unique_ptr<resource_manager> connection;
  recovered_branches found;
  std::vector<marker_row> markers;
  std::string identity;  // the database's identity row, "" when it has none (or a scripted RM)
};

// The names of the RMs that pending decisions have branches on.
std::set<std::string, std::less<>> rms_with_decisions(const std::vector<decision_record>& pending) {
  std::set<std::string, std::less<>> names;
  for (const auto& record : pending) names.insert(record.branch_rms.begin(), record.branch_rms.end());
  return names;
}

// Opens an RM for recovery and checks that it reaches the database the log pinned for its name.
// Answers the connection, or nothing after recording in the report why the RM is left alone.
std::unique_ptr<resource_manager> open_verified(const recovery_context& context, const std::string& name,
                                                const rm_connector& connector,
                                                const std::set<std::string, std::less<>>& named_by_decisions,
                                                recovery_report& report) {
  auto connection = open_bounded(connector, context.call_timeout, context.allow_unsafe_durability);
  if (!connection) {
    report.unreachable_rms.push_back(name + ": " + connection.error().describe());
    XATM_LOG(recovery, warning) << "RM " << name << " cannot be reached: " << connection.error().describe();
    return nullptr;
  }
  if (context.log == nullptr) return std::move(connection).value();  // a terminator with no log: nothing pinned
  // The tool must not take a mistyped connection's word for a database that decisions name.
  const bool may_pin = context.pin_unpinned ? !context.never_pin.contains(name) : !named_by_decisions.contains(name);
  const unpinned_rule rule = !may_pin          ? unpinned_rule::refuse
                             : context.dry_run ? unpinned_rule::report_only
                                               : unpinned_rule::pin;
  auto verdict = verify_identity(*connection.value(), *context.log, rule);
  if (!verdict) {
    report.unreachable_rms.push_back(name + ": its identity cannot be read: " + verdict.error().describe());
    XATM_LOG(recovery, warning) << "RM " << name << ": identity cannot be read: " << verdict.error().describe();
    return nullptr;
  }
  if (!verdict.value().verified) {
    report.identity_mismatches.push_back(verdict.value().problem);
    XATM_LOG(recovery, error) << verdict.value().problem;
    return nullptr;
  }
  return std::move(connection).value();
}

// Commits or rolls back one of our prepared branches and says what came of it.
void resolve(resource_manager& rm, const xid& branch, bool commit, recovery_item& item) {
  auto done = commit ? rm.commit(branch, false) : rm.rollback(branch);
  if (done.ok()) {
    item.result = commit ? recovery_result::committed : recovery_result::rolled_back;
    return;
  }
  const failure& cause = done.error();
  item.detail = cause.describe();
  if (cause.code == xa_code::not_found) {
    item.result = recovery_result::already_done;
  } else if (commit && is_rollback_code(cause.code)) {
    item.result = recovery_result::heuristic;  // decided commit, the RM rolled it back
  } else if (!commit && cause.code == xa_code::heuristic_commit) {
    item.result = recovery_result::heuristic;
  } else {
    // xa_code::retry (still attached to a live session), a lost connection, ...: try later.
    item.result = recovery_result::unresolved;
  }
}

// Resolves (or, in a dry run, says what the real run would do).
void act(const recovery_context& context, resource_manager& rm, const xid& branch, bool commit, recovery_item& item) {
  item.action = commit ? "commit" : "rollback";
  if (context.dry_run) {
    item.result = commit ? recovery_result::would_commit : recovery_result::would_roll_back;
    return;
  }
  resolve(rm, branch, commit, item);
}

// The three-phase termination rule (docs/design.md section 7) for one prepared `.p3` branch: a local
// P -> commit; else the arbiter's row: P -> commit, A -> roll back, none -> insert A (the primary
// key lets exactly one of P and A win) and follow the winner. A dry run reads the same rows and
// says what the real run would do; where no row exists it would insert A and roll back.
void terminate(const recovery_context& context, scanned_rm& rm, const xid& branch, recovery_item& item,
               const std::map<std::string, resource_manager*, std::less<>>& verified) {
  // `<n>@<arbiter>[@<tag of the arbiter's identity>]`
  auto at = branch.bqual().find('@');
  std::string arbiter = at == std::string::npos ? std::string() : branch.bqual().substr(at + 1);
  std::string arbiter_tag;
  if (auto second = arbiter.find('@'); second != std::string::npos) {
    arbiter_tag = arbiter.substr(second + 1);
    arbiter.resize(second);
  }
  // A commit-marker branch is decided at the very database its coordinator writes its row in:
  // without the tag naming it, "no row" could be read at the wrong one.
  auto parts = parse_gtrid(branch.gtrid());
  if (parts && parts.value().protocol == commit_protocol::commit_marker && arbiter_tag.empty()) {
    item.result = recovery_result::unresolved;
    item.detail = "commit-marker branch whose bqual names no identity of its decision RM: it cannot be decided here";
    return;
  }
  auto local = read_marker(*rm.connection, branch.gtrid());
  if (local.ok() && local.value() == marker_state::precommitted) {
    item.decision = "P marker on " + rm.name;
    item.decided = recovery_decision::marker_commit;
    act(context, *rm.connection, branch, true, item);
    return;
  }
  auto connector = context.rms.find(arbiter);
  if (arbiter.empty() || connector == context.rms.end()) {
    item.result = recovery_result::unresolved;
    item.detail = "three-phase branch whose arbiter RM '" + arbiter + "' is not configured here";
    return;
  }
  if (context.log != nullptr && !verified.contains(arbiter)) {
    item.result = recovery_result::unresolved;
    item.detail = "the arbiter " + arbiter + " was not verified in this run (see the RMs reported above)";
    return;
  }
  auto control = open_bounded(connector->second, context.call_timeout, context.allow_unsafe_durability);
  result<std::optional<marker_state>> found = std::optional<marker_state>();
  if (!control) {
    found = control.error();
  } else if (context.log != nullptr) {
    // The arbiter's control connection is a new one: it must reach the verified database too.
    auto verdict = verify_identity(*control.value(), *context.log, unpinned_rule::report_only);
    if (!verdict) {
      found = verdict.error();
    } else if (!verdict.value().verified) {
      found = make_failure(xa_code::invalid, verdict.value().problem);
    }
  }
  if (found && !arbiter_tag.empty()) {
    // The coordinator named its arbiter's database: this connection must reach that one.
    auto identity = read_identity(*control.value());
    if (!identity) {
      found = identity.error();
    } else if (!identity.value() || identity.value()->id.size() < 3 ||
               identity.value()->id.compare(3, arbiter_tag.size(), arbiter_tag) != 0) {
      found = make_failure(xa_code::invalid, "the RM named " + arbiter +
                                                 " here is not the coordinator's arbiter "
                                                 "database (identity db-" +
                                                 arbiter_tag + "...): it cannot decide");
    }
  }
  if (found) {
    // No marker table at the arbiter: no coordinator ever pre-committed there, so this is not
    // the arbiter the coordinator meant (an RM name that means another database here) or it
    // never got that far; either way this terminator cannot decide. Never create it here.
    auto ready = prepare_control_connection(*control.value());
    if (ready && parts && parts.value().protocol == commit_protocol::commit_marker) {
      // The coordinator wrote its row in the marker table next to the identity table: this
      // session must reach that one, and it must be able to decide (one row per gtrid).
      if (auto tables = find_decision_tables(*control.value()); !tables) ready = std::move(tables).error();
    }
    found = ready ? read_marker(*control.value(), branch.gtrid()) : result<std::optional<marker_state>>(ready.error());
  }
  if (!found) {
    item.result = recovery_result::unresolved;
    item.detail = "the arbiter " + arbiter + " could not be read: " + found.error().describe();
    return;
  }
  marker_state winner = marker_state::aborted;
  if (found.value()) {
    winner = *found.value();
    item.decision = std::string(winner == marker_state::precommitted ? "P" : "A") + " marker at arbiter " + arbiter;
    item.decided = winner == marker_state::precommitted ? recovery_decision::marker_commit : recovery_decision::marker_abort;
  } else if (context.dry_run) {
    item.decision = "no marker at arbiter " + arbiter + ": the real run inserts A (unless the coordinator's P wins)";
    item.decided = recovery_decision::no_marker;
  } else {
    // No marker: a P is deleted only once every branch is final, so if this branch is still
    // prepared now, after the read, nobody decided and its P (if it ever comes) cannot have been
    // deleted. If it is gone, the transaction finished meanwhile (another recovery committed it
    // and deleted its P after this run's scan): write no A for a transaction that is over.
    auto listed = rm.connection->recover();
    if (!listed) {
      item.result = recovery_result::unresolved;
      item.detail = "could not list the prepared branches again: " + listed.error().describe();
      return;
    }
    const auto& ours = listed.value().ours;
    if (std::find(ours.begin(), ours.end(), branch) == ours.end()) {
      item.decision = "no marker at arbiter " + arbiter;
      item.decided = recovery_decision::no_marker;
      item.action = "none";
      item.result = recovery_result::already_done;
      item.detail = "no longer prepared: finished meanwhile";
      return;
    }
    // Nobody decided: abort it. If the coordinator's P got there first, follow the P.
    auto inserted = insert_marker(*control.value(), branch.gtrid(), marker_state::aborted,
                                  rm.identity.empty() ? rm.name : rm.name + "=" + rm.identity);
    if (!inserted) {
      item.result = recovery_result::unresolved;
      item.detail = "the arbiter " + arbiter + " could not be read: " + inserted.error().describe();
      return;
    }
    winner = inserted.value();
    item.decision = std::string(winner == marker_state::precommitted ? "P" : "A") + " marker at arbiter " + arbiter;
    item.decided = winner == marker_state::precommitted ? recovery_decision::marker_commit : recovery_decision::marker_abort;
  }
  act(context, *rm.connection, branch, winner == marker_state::precommitted, item);
}

// `<tm_id>.<incarnation>`: the part of a gtrid that names its coordinator's incarnation.
std::string incarnation_prefix(const gtrid_parts& parts) { return parts.tm_id + "." + parts.incarnation; }

}  // namespace

recovery_report run_recovery(const recovery_context& context) {
  recovery_report report;

  // 1. What the log decided. A log that cannot be read stops everything: no presumed abort.
  // (No log at all: a terminator working without the coordinator's log decides nothing itself.)
  auto pending = context.log != nullptr ? context.log->pending()
                                        : result<std::vector<decision_record>>(std::vector<decision_record>{});
  if (!pending) throw log_failure_error(pending.error());
  std::map<std::string, const decision_record*, std::less<>> decisions;
  for (const auto& record : pending.value()) decisions.emplace(record.gtrid, &record);
  report.decisions_pending_before = decisions.size();

  auto is_live = [&](std::string_view gtrid) {
    auto parts = parse_gtrid(gtrid);
    return !context.live_incarnation.empty() && parts.ok() && parts.value().tm_id == context.tm_id &&
           parts.value().incarnation == context.live_incarnation &&
           !(context.handed_over && context.handed_over(gtrid));
  };

  // 2. Connect to every registered RM and verify its identity.
  auto seen_long_enough = [&](const std::string& rm_name, const xid& branch) {
    if (context.first_seen == nullptr) return false;
    auto now = std::chrono::steady_clock::now();
    auto [sighting, first_time] = context.first_seen->try_emplace(rm_name + " " + branch.to_string(), now);
    return !first_time && now - sighting->second >= context.precommit_timeout;
  };

  const auto named_by_decisions = rms_with_decisions(pending.value());
  std::vector<scanned_rm> scanned;
  for (const auto& [name, connector] : context.rms) {
    auto connection = open_verified(context, name, connector, named_by_decisions, report);
    if (!connection) continue;
    auto identity = read_identity(*connection);
    std::string id = identity && identity.value() ? identity.value()->id : std::string();
    scanned.push_back({name, std::move(connection), {}, {}, std::move(id)});
  }
  // 3. Markers first, then the scans (see the top of this file). An RM whose markers or branches
  // cannot be listed is dropped: nothing is done on it.
  for (auto& rm : scanned) {
    auto markers = list_markers(*rm.connection);
    if (markers) {
      rm.markers = std::move(markers).value();
    } else {
      XATM_LOG(recovery, warning) << "RM " << rm.name << ": markers cannot be listed: " << markers.error().describe();
    }
  }
  std::erase_if(scanned, [&](scanned_rm& rm) {
    auto found = rm.connection->recover();
    if (found) {
      rm.found = std::move(found).value();
      return false;
    }
    report.unreachable_rms.push_back(rm.name + ": " + found.error().describe());
    XATM_LOG(recovery, warning) << "RM " << rm.name << " cannot be scanned: " << found.error().describe();
    return true;
  });
  std::map<std::string, resource_manager*, std::less<>> verified;
  for (auto& rm : scanned) verified.emplace(rm.name, rm.connection.get());

  // Forget the sightings of branches that an RM scanned just now no longer lists: they are
  // finished. Without this a long-running TM remembers every other coordinator's branch it ever
  // caught prepared. An RM that could not be scanned keeps its sightings.
  if (context.first_seen != nullptr) {
    std::set<std::string, std::less<>> listed;
    for (const auto& rm : scanned) {
      for (const xid& branch : rm.found.ours) listed.insert(rm.name + " " + branch.to_string());
    }
    std::erase_if(*context.first_seen, [&](const auto& sighting) {
      std::string_view rm_name = std::string_view(sighting.first).substr(0, sighting.first.find(' '));
      return verified.contains(rm_name) && !listed.contains(sighting.first);
    });
  }
  XATM_CRASH_POINT("recovery_after_scan");

  // 4. Resolve xatm's branches; report everyone else's.
  std::set<std::string, std::less<>> gtrids_left;  // gtrids that still have a branch prepared somewhere
  // Which scanned RM holds the lease of an incarnation ("" none): its lease on any one RM is
  // enough to call it alive (another RM may have restarted and dropped it). Cached per run.
  std::map<std::string, result<std::string>, std::less<>> leases;
  auto lease_holder_of = [&](const std::string& prefix) -> result<std::string> {
    auto cached = leases.find(prefix);
    if (cached != leases.end()) return cached->second;
    result<std::string> holder = std::string();
    for (auto& any : scanned) {
      auto held = lease_held(*any.connection, prefix);
      if (!held) {
        holder = held.error();
        break;
      }
      if (held.value()) {
        holder = any.name;
        break;
      }
    }
    return leases.emplace(prefix, holder).first->second;
  };
  bool first_action = true;
  for (auto& rm : scanned) {
    for (const auto& other : rm.found.foreign) {
      recovery_item item{rm.name,
                         other.id ? other.id->to_string() : other.raw,
                         "",
                         "prepared",
                         "-",
                         "none",
                         recovery_result::foreign,
                         "another formatID or encoding",
                         other.age_seconds,
                         other.id,
                         recovery_decision::none};
      report.items.push_back(std::move(item));
    }
    for (const xid& branch : rm.found.ours) {
      recovery_item item{rm.name, branch.to_string(), branch.gtrid(), "prepared",
                         "-",     "none",           recovery_result::foreign,
                         "",      std::nullopt,     branch,
                         recovery_decision::none};
      auto parts = parse_gtrid(branch.gtrid());
      bool same_tm_id = parts && parts.value().tm_id == context.tm_id;
      bool own = same_tm_id && context.log != nullptr && context.log->is_own_incarnation(parts.value().incarnation);
      bool by_markers = parts && parts.value().decided_by_markers();  // three-phase or commit-marker
      gtrids_left.insert(branch.gtrid());                             // until resolved below
      if (!own && !(by_markers && context.terminate_others)) {
        if (same_tm_id) {
          // Never presumed aborted: its decision, if any, is in a log this one is not.
          item.result = recovery_result::unresolved;
          item.detail = "tm_id '" + context.tm_id + "' but incarnation " + parts.value().incarnation +
                        ", which this decision log never issued: a second TM running with the same tm_id, a lost "
                        "log, or a log restored from a copy older than this branch. Its decision is not here; "
                        "find the log that issued it (docs/recovery.md)";
          if (by_markers) item.detail += "; decided by markers: --terminate resolves it by the marker rule";
        } else {
          item.detail = parts ? "belongs to TM '" + parts.value().tm_id + "'" : "not an xatm gtrid";
          if (by_markers) item.detail += " (decided by markers: --terminate resolves it when its coordinator is gone)";
        }
        report.items.push_back(std::move(item));
        continue;
      }
      auto decision = decisions.find(branch.gtrid());
      bool commit = own && decision != decisions.end();
      item.decision = commit ? "commit" : by_markers ? "none: marker rule" : "none (presumed abort)";
      item.decided = commit       ? recovery_decision::commit
                     : by_markers ? recovery_decision::marker_rule
                                  : recovery_decision::presumed_abort;
      auto lease_holder = [&]() -> std::optional<std::string> {
        // A TM still running with this incarnation (its lock file deleted, or this run works on
        // a copy of its log) may still be deciding the branch: never presume abort under it.
        auto holder = lease_holder_of(incarnation_prefix(parts.value()));
        if (!holder) return "the lease of its incarnation cannot be read: " + holder.error().describe();
        if (holder.value().empty()) return std::nullopt;
        return "a TM running incarnation " + parts.value().incarnation + " holds its lease on " + holder.value() +
               ": it decides this branch itself (is the TM still running? the log's lock file deleted, or this is a "
               "copy of a live TM's log)";
      };
      if (own && is_live(branch.gtrid())) {
        item.result = recovery_result::skipped_live;
      } else if (by_markers && !own && !seen_long_enough(rm.name, branch)) {
        item.result = recovery_result::unresolved;
        item.detail = "another TM's branch decided by markers: terminated if still prepared after precommit_timeout";
      } else if (auto holder = !commit && own && parts.value().incarnation != context.live_incarnation ? lease_holder()
                                                                                                       : std::nullopt) {
        item.result = recovery_result::unresolved;
        item.detail = *holder;
      } else if (by_markers && !commit) {
        // Our own older incarnation is dead (we hold its log and nobody holds its lease), or
        // another TM's coordinator has been silent for precommit_timeout: the markers decide.
        terminate(context, rm, branch, item, verified);
        XATM_LOG(recovery, info) << "terminated " << item.xid << " on " << rm.name << " (" << item.decision
                                 << "): " << recovery_result_name(item.result);
      } else {
        act(context, *rm.connection, branch, commit, item);
        if (!context.dry_run) {
          XATM_LOG(recovery, info) << item.action << " " << item.xid << " on " << rm.name << ": "
                                   << recovery_result_name(item.result) << (item.detail.empty() ? "" : ": ")
                                   << item.detail;
          if (std::exchange(first_action, false)) XATM_CRASH_POINT("recovery_after_first_resolve");
        }
      }
      report.items.push_back(std::move(item));
    }
  }
  // 4'. The TCC branches in the log: confirm those whose gtrid has a commit decision, cancel the
  // others (presumed abort, as for XA branches: the decision is written before any confirm).
  // One attempt per run; a participant that does not answer keeps its gtrid for the next run.
  std::set<std::string, std::less<>> tcc_gtrids;  // gtrids with TCC records
  auto tcc_records = context.log != nullptr
                         ? context.log->tcc_branches()
                         : result<std::vector<tcc_branch_record>>(std::vector<tcc_branch_record>{});
  if (!tcc_records) throw log_failure_error(tcc_records.error());
  for (const auto& record : tcc_records.value()) {
    tcc_gtrids.insert(record.gtrid);
    const bool commit = decisions.contains(record.gtrid);
    recovery_item item{record.participant,
                       "tcc " + std::to_string(record.branch),
                       record.gtrid,
                       "recorded",
                       commit ? "commit" : "none (presumed abort)",
                       commit ? "confirm" : "cancel",
                       recovery_result::unresolved,
                       "",
                       std::nullopt,
                       std::nullopt,
                       commit ? recovery_decision::commit : recovery_decision::presumed_abort};
    gtrids_left.insert(record.gtrid);  // until this item is final (below)
    auto parts = parse_gtrid(record.gtrid);
    auto participant = context.participants.find(record.participant);
    if (is_live(record.gtrid)) {
      item.result = recovery_result::skipped_live;
      item.action = "none";
    } else if (participant == context.participants.end() || !participant->second) {
      item.detail = "no TCC participant named '" + record.participant + "' is registered here (xatm-recover: --tcc " +
                    record.participant + "=URL)";
    } else if (!commit && context.live_incarnation.empty() && scanned.empty()) {
      // The tool, with no database to read the recording TM's lease on: that TM may be alive
      // (this a copy of its log) and still decide commit. Never cancel blind.
      item.detail = "no RM could be scanned to check that the TM which recorded it has stopped (its lease); give "
                    "--rm for its databases";
    } else if (auto holder = !commit && parts && parts.value().incarnation != context.live_incarnation
                                 ? lease_holder_of(incarnation_prefix(parts.value()))
                                 : result<std::string>(std::string());
               !holder || !holder.value().empty()) {
      item.detail = holder ? "a TM running its incarnation holds its lease on " + holder.value() +
                                 ": it decides this branch itself"
                           : "the lease of its incarnation cannot be read: " + holder.error().describe();
    } else if (context.dry_run) {
      item.result = commit ? recovery_result::would_commit : recovery_result::would_roll_back;
    } else {
      // The participant acts only if it reaches the database the log pinned for it.
      auto pinned = context.log->pinned(record.participant);
      tcc_request request{record.gtrid, record.branch, record.participant, record.payload,
                          pinned ? pinned->identity : std::string()};
      auto reply = call_participant(*participant->second, commit ? tcc_step::confirm : tcc_step::cancel, request,
                                    context.call_timeout);
      if (pinned && !reply.identity.empty() && reply.identity != pinned->identity) {
        item.detail = "the participant answered from database " + reply.identity + ", but the log pinned " +
                      pinned->identity + " for " + record.participant + ": check its URL (" + reply.detail + ")";
      } else if (reply.answer == tcc_answer::done) {
        item.result = commit ? recovery_result::committed : recovery_result::rolled_back;
      } else if (reply.answer == tcc_answer::refused) {
        item.result = recovery_result::heuristic;
        item.detail = std::string("the participant refused the ") + (commit ? "confirm" : "cancel") +
                      " (its barrier ran the other step): " + reply.detail;
      } else {
        item.detail = "the participant did not answer: " + reply.detail;
      }
      XATM_LOG(recovery, info) << item.action << " " << describe(request) << ": " << recovery_result_name(item.result)
                               << (item.detail.empty() ? "" : ": ") << item.detail;
    }
    report.items.push_back(std::move(item));
  }

  // A gtrid is finished once each of its branches was resolved now or had been before (in a dry
  // run: would be, as the real run would see it).
  // A heuristic outcome is final too: the RM or participant did the other thing, and nothing
  // xatm does can change it (it is reported, once; the operator reconciles it).
  auto final_result = [&](recovery_result result) {
    return result == recovery_result::committed || result == recovery_result::rolled_back ||
           result == recovery_result::already_done || result == recovery_result::heuristic ||
           (context.dry_run && (result == recovery_result::would_commit || result == recovery_result::would_roll_back));
  };
  for (const auto& item : report.items) {
    if (!final_result(item.result)) continue;
    bool elsewhere = std::any_of(report.items.begin(), report.items.end(), [&](const recovery_item& other) {
      return other.gtrid == item.gtrid && !final_result(other.result);
    });
    if (!elsewhere) gtrids_left.erase(item.gtrid);
  }

  // 5. Forget decisions that are done everywhere: every RM they name was verified and scanned
  // just now and holds no branch of theirs. An RM that could not be keeps the decision.
  for (const auto& [gtrid, record] : decisions) {
    if (is_live(gtrid) || gtrids_left.contains(gtrid)) continue;
    std::string missing;
    std::set<std::string, std::less<>> named;
    for (const auto& rm_name : record->branch_rms) {
      if (!verified.contains(rm_name) && named.insert(rm_name).second) {
        missing += (missing.empty() ? "" : ", ") + rm_name;
      }
    }
    if (!missing.empty()) {
      report.items.push_back(
          {missing, "-", gtrid, "unknown", "commit", "none", recovery_result::unresolved,
           "the decision's RMs could not be scanned or verified: " + missing + "; the decision is kept", std::nullopt,
           std::nullopt, recovery_decision::commit});
      continue;
    }
    bool acted_here = false;
    for (const auto& item : report.items) acted_here = acted_here || item.gtrid == gtrid;
    if (context.dry_run) {
      report.items.push_back({"-", "-", gtrid, acted_here ? "prepared" : "gone", "commit", "forget",
                              recovery_result::would_forget,
                              acted_here ? "once the commits above succeed: all its RMs verified and scanned"
                                         : "no branch left on any of its RMs (all verified and scanned)",
                              std::nullopt, std::nullopt, recovery_decision::commit});
      continue;
    }
    if (!acted_here) {
      report.items.push_back({"-", "-", gtrid, "gone", "commit", "forget", recovery_result::already_done,
                              "no branch left on any RM: decision forgotten", std::nullopt, std::nullopt,
                              recovery_decision::commit});
    }
    context.log->mark_complete(gtrid);
    report.completed.push_back(gtrid);
  }

  // 5'. TCC records of rolled-back gtrids (no decision) whose cancels are all done.
  for (const auto& gtrid : tcc_gtrids) {
    if (decisions.contains(gtrid) || is_live(gtrid) || gtrids_left.contains(gtrid)) continue;
    if (context.dry_run) {
      report.items.push_back({"-", "-", gtrid, "cancelled", "none (presumed abort)", "forget",
                              recovery_result::would_forget, "once the cancels above succeed", std::nullopt, std::nullopt,
                              recovery_decision::presumed_abort});
      continue;
    }
    context.log->mark_complete(gtrid);
    report.completed.push_back(gtrid);
  }

  // 6. Marker rows of finished three-phase transactions, whoever wrote them. A P row was written
  // after every branch of its gtrid was prepared, and it was listed before the scans: if every
  // RM the row names was verified and scanned since and none holds a branch of it, every branch
  // is final (docs/design.md section 7). An A row also needs age: a coordinator stalled before
  // its P insert could otherwise win with P after the A row went (docs/three-phase.md).
  for (auto& rm : scanned) {
    for (const auto& marker : rm.markers) {
      auto parts = parse_gtrid(marker.gtrid);
      if (!parts || gtrids_left.contains(marker.gtrid) || is_live(marker.gtrid)) continue;
      if (marker.branch_rms.empty() || marker.truncated) continue;
      // Each RM the row names must be one this run scanned: the same database, not merely the same
      // name. Entries written with the coordinator's pinned identity (`name=db-...`) are matched
      // against the identity of the database scanned under that name; plain names (older rows, a
      // terminator's A) only by a run whose log verified its connections.
      bool all_scanned = std::all_of(marker.branch_rms.begin(), marker.branch_rms.end(), [&](const std::string& entry) {
        const auto equals = entry.find('=');
        const std::string_view name = std::string_view(entry).substr(0, equals);
        auto found =
            std::find_if(scanned.begin(), scanned.end(), [&](const scanned_rm& other) { return other.name == name; });
        if (found == scanned.end()) return false;
        // A plain name means what this log means by it only in this log's own rows.
        if (equals == std::string::npos) {
          return context.log != nullptr && parts.value().tm_id == context.tm_id &&
                 context.log->is_own_incarnation(parts.value().incarnation);
        }
        return !found->identity.empty() && found->identity == std::string_view(entry).substr(equals + 1);
      });
      if (!all_scanned) continue;
      if (marker.state == marker_state::precommitted && parts.value().protocol == commit_protocol::commit_marker &&
          !(parts.value().tm_id == context.tm_id && parts.value().incarnation == context.live_incarnation)) {
        // A live coordinator whose decision commit lost its reply settles it by this row (insert A
        // if absent): had it gone, A would win and the coordinator would report a rollback of a
        // committed transaction. Kept while a session holds that coordinator's lease.
        auto holder = lease_holder_of(incarnation_prefix(parts.value()));
        if (!holder || !holder.value().empty()) continue;
      }
      if (marker.state == marker_state::aborted) {
        // Only once its coordinator can never insert its P: old, and no session of that
        // incarnation holds its lease here (a frozen coordinator's sessions still do).
        if (marker.age_seconds < context.abort_marker_retention.count()) continue;
        auto holder = lease_holder_of(incarnation_prefix(parts.value()));
        if (!holder || !holder.value().empty()) continue;
      }
      if (context.dry_run) {
        ++report.markers_deleted;
        continue;
      }
      if (delete_marker(*rm.connection, marker.gtrid)) ++report.markers_deleted;
    }
  }
  if (report.markers_deleted > 0) {
    XATM_LOG(recovery, info) << (context.dry_run ? "would delete " : "deleted ") << report.markers_deleted
                             << " marker rows of finished three-phase transactions";
  }
  return report;
}

}  // namespace detail

namespace {

// "<dialect>:<conninfo>" per RM name -> connectors. Throws configuration_error on bad input,
// without the connection string in the message.
std::map<std::string, rm_connector, std::less<>> connectors_for(
    const std::vector<std::pair<std::string, std::string>>& specs) {
  std::map<std::string, rm_connector, std::less<>> rms;
  for (const auto& [name, spec] : specs) {
    if (auto valid = validate_rm_name(name); !valid) throw configuration_error(valid.error());
    auto colon = spec.find(':');
    std::string dialect = colon == std::string::npos ? std::string() : spec.substr(0, colon);
    if (detail::find_backend(dialect) == nullptr) {
      throw configuration_error(make_failure(xa_code::invalid,
                                             "RM '" + name +
                                                 "': the connection string must start "
                                                 "with its dialect: " +
                                                 detail::dialect_list(":"),
                                             name));
    }
    auto settings = connection_settings::parse(std::string_view(spec).substr(colon + 1));
    if (!settings) {
      failure cause = settings.error();
      cause.rm_name = name;
      throw configuration_error(std::move(cause));
    }
    // Offline there are no tm_options: the default rm_call_timeout bounds connecting, as every call.
    auto connector = detail::make_connector(name, dialect, settings.value(), tm_options{}.rm_call_timeout);
    if (!rms.emplace(name, std::move(connector)).second) {
      throw configuration_error(make_failure(xa_code::invalid, "RM '" + name + "' is given twice", name));
    }
  }
  return rms;
}

}  // namespace

// Termination needs two sightings precommit_timeout apart: a first pass resolves our own work and
// notes the others' three-phase branches, the second terminates what is still prepared.
static recovery_report terminate_twice(detail::recovery_context& context, std::chrono::milliseconds precommit_timeout) {
  std::map<std::string, std::chrono::steady_clock::time_point> first_seen;
  context.terminate_others = true;
  context.precommit_timeout = precommit_timeout;
  context.first_seen = &first_seen;
  auto first = detail::run_recovery(context);
  bool others_waiting = std::any_of(first.items.begin(), first.items.end(), [](const recovery_item& item) {
    return item.result == recovery_result::unresolved &&
           item.detail.rfind("another TM's branch decided by markers", 0) == 0;
  });
  if (!others_waiting) return first;
  std::this_thread::sleep_for(precommit_timeout);
  return detail::run_recovery(context);
}

std::vector<std::string> install_marker_schema(const std::vector<std::pair<std::string, std::string>>& rms) {
  std::vector<std::string> installed;
  for (const auto& [name, connector] : connectors_for(rms)) {
    auto connection = connector();
    if (!connection) throw rm_error(connection.error());
    if (auto done = detail::install_marker_table(*connection.value()); !done) throw rm_error(done.error());
    if (auto done = detail::install_barrier_table(*connection.value()); !done) throw rm_error(done.error());
    if (auto identity = detail::ensure_identity(*connection.value()); !identity) throw rm_error(identity.error());
    installed.push_back(name);
  }
  return installed;
}

namespace {

// A gtrid of the log's open TCC branches on the participant `name`, if it has any.
std::optional<std::string> open_tcc_branch_of(const detail::decision_store& log, const std::string& name) {
  auto records = log.tcc_branches();
  if (!records) throw log_failure_error(records.error());
  for (const auto& record : records.value()) {
    if (record.participant == name) return record.gtrid;
  }
  return std::nullopt;
}

// The report's line for a re-pin: "name: old (description) -> new (description)".
std::string repin_line(const std::string& name, const std::optional<detail::pinned_identity>& old,
                       const detail::pinned_identity& now) {
  return name + ": " + (old ? old->identity + " (" + old->description + ")" : std::string("nothing")) + " -> " +
         now.identity + " (" + now.description + ")";
}

// --repin for a TCC participant that moved to another database on purpose: refused while the log
// still holds branches of it (they belong to the old database: finish them there first).
std::string repin_participant(detail::decision_store& log, const std::string& name, tcc_participant& participant,
                              std::chrono::milliseconds timeout) {
  // Names are shared with RMs: a pending decision naming it as an RM means the pin is an RM's.
  auto pending = log.pending();
  if (!pending) throw log_failure_error(pending.error());
  for (const auto& decision : pending.value()) {
    if (std::find(decision.branch_rms.begin(), decision.branch_rms.end(), name) != decision.branch_rms.end()) {
      throw configuration_error(make_failure(
          xa_code::invalid, "--repin " + name + ": pending decisions name it as an RM (" + decision.gtrid + ", ...)",
          name));
    }
  }
  if (auto open = open_tcc_branch_of(log, name)) {
    throw configuration_error(make_failure(xa_code::invalid,
                                           "--repin " + name + ": the log still holds TCC branches of it (" + *open +
                                               ", ...): they belong to the database it reached before; finish them "
                                               "there first",
                                           name));
  }
  const std::string identity = participant.identify(timeout);
  if (identity.empty()) {
    throw rm_error(make_failure(xa_code::rm_failure,
                                "--repin " + name + ": the participant did not tell its database identity", name));
  }
  auto old = log.pinned(name);
  const detail::pinned_identity now{name, identity, "TCC participant " + name, 0};
  if (auto pinned = log.pin(now); !pinned) throw log_failure_error(pinned.error());
  return repin_line(name, old, now);
}

}  // namespace

recovery_report recover_offline(const offline_recovery_options& options) {
  // A mistyped path must not become a new, empty log: that would presume abort for every
  // decision the real one holds.
  // Exception: a terminator (--terminate) may work without any log. It then treats no branch as
  // its own (not even those of a tm_id it was given): only other TMs' three-phase branches, by
  // the marker rule.
  std::error_code missing;
  bool no_log = options.log_path.empty() || !std::filesystem::exists(options.log_path, missing);
  if (no_log && options.terminate) {
    detail::recovery_context context;
    context.rms = connectors_for(options.rms);
    context.dry_run = options.dry_run;
    context.allow_unsafe_durability = options.allow_unsafe_durability;
    return terminate_twice(context, options.precommit_timeout);
  }
  if (no_log) {
    throw configuration_error(make_failure(
        xa_code::invalid, "no decision log at " + options.log_path + ": give the path the TM was configured with"));
  }
  std::string tm_id = options.tm_id;
  if (tm_id.empty()) {
    // Held by somebody: say busy now, before reading a file its owner may be writing.
    auto holder = detail::decision_log_holder(options.log_path);
    if (holder && holder.value()) {
      throw log_in_use_error(
          make_failure(xa_code::invalid, "decision log " + options.log_path + " is in use by process " +
                                             std::to_string(*holder.value()) +
                                             ": only one TM or recovery tool may use a log at a time"));
    }
    auto stored = detail::stored_tm_id(options.log_path);
    if (!stored) throw log_failure_error(stored.error());
    tm_id = stored.value();
  }
  if (auto valid = validate_tm_id(tm_id); !valid) throw configuration_error(valid.error());
  detail::recovery_context context;
  context.tm_id = tm_id;
  context.dry_run = options.dry_run;
  context.allow_unsafe_durability = options.allow_unsafe_durability;
  context.rms = connectors_for(options.rms);
  for (const auto& [name, url] : options.tcc) {
    if (auto valid = validate_rm_name(name); !valid) throw configuration_error(valid.error());
    if (context.rms.contains(name) || context.participants.contains(name)) {
      throw configuration_error(make_failure(xa_code::invalid, "'" + name + "' is given twice", name));
    }
    context.participants.emplace(name, make_http_participant(url));
  }
  // An operator's connection strings decide nothing on their own: a name that pending decisions
  // use must reach the database the log pinned (or be re-pinned on purpose, below).
  context.pin_unpinned = false;
  if (options.dry_run && !options.repin.empty()) {
    throw configuration_error(make_failure(xa_code::invalid, "--repin writes to the decision log: not with --dry-run"));
  }
  for (const auto& name : options.repin) {
    if (!context.rms.contains(name) && !context.participants.contains(name)) {
      throw configuration_error(
          make_failure(xa_code::invalid, "--repin " + name + ": no --rm or --tcc gives that name", name));
    }
  }
  auto log = detail::open_decision_log(options.log_path, tm_id);
  context.log = log.get();
  std::vector<std::string> repinned;
  for (const auto& name : options.repin) {
    if (auto participant = context.participants.find(name); participant != context.participants.end()) {
      repinned.push_back(repin_participant(*log, name, *participant->second, context.call_timeout));
      continue;
    }
    // Names are shared with TCC participants: open branches of one by that name keep its pin.
    if (auto open = open_tcc_branch_of(*log, name)) {
      throw configuration_error(make_failure(xa_code::invalid,
                                             "--repin " + name + ": the log holds TCC branches of a participant by "
                                                                 "that name (" + *open + ", ...); give it with --tcc, not --rm",
                                             name));
    }
    auto connection = context.rms.find(name)->second();
    if (!connection) throw rm_error(connection.error());
    auto moved = detail::repin_identity(*connection.value(), *log);
    if (!moved) throw rm_error(moved.error());
    const auto& [old, now] = moved.value();
    repinned.push_back(repin_line(name, old, now));
  }
  auto report = options.terminate ? terminate_twice(context, options.precommit_timeout) : detail::run_recovery(context);
  report.repinned = std::move(repinned);
  return report;
}

}  // namespace xatm
