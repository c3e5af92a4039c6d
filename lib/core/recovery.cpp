// The recovery algorithm: DESIGN.md section 6's table, top to bottom.
//
//   1. read the pending decisions from the log;
//   2. scan: list the prepared branches of every registered RM;
//   3. resolve each of xatm's branches: COMMIT record -> commit; no record -> roll back
//      (presumed abort); live incarnation and not handed over -> skip; foreign -> report only;
//   4. forget a decision once every RM it names was scanned and holds none of its branches.
// Each action is idempotent ("does not exist" after a decision means already done), so a run
// that crashes half-way is simply run again.
#include "core/recovery.h"

#include <algorithm>
#include <filesystem>
#include <thread>
#include <set>

#include "core/crash_point.h"
#include "core/logging.h"
#include "core/markers.h"
#include "core/preflight.h"
#include "core/tm_core.h"
#include "xatm/error.h"
#include "xatm/mysql.h"
#include "xatm/postgresql.h"

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
  }
  return "unknown";
}

bool recovery_report::unresolved() const noexcept {
  if (!unreachable_rms.empty()) return true;
  for (const auto& item : items) {
    if (item.result == recovery_result::unresolved || item.result == recovery_result::would_commit ||
        item.result == recovery_result::would_roll_back) {
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
};

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

// The three-phase termination rule (DESIGN.md section 7) for one prepared `.p3` branch: a local
// P -> commit; else the arbiter's row: P -> commit, A -> roll back, none -> insert A (the primary
// key lets exactly one of P and A win) and follow the winner.
void terminate(const recovery_context& context, scanned_rm& rm, const xid& branch, recovery_item& item) {
  auto at = branch.bqual().find('@');
  std::string arbiter = at == std::string::npos ? std::string() : branch.bqual().substr(at + 1);
  auto local = read_marker(*rm.connection, branch.gtrid());
  if (local.ok() && local.value() == marker_state::precommitted) {
    item.decision = "P marker on " + rm.name;
    item.action = "commit";
    resolve(*rm.connection, branch, true, item);
    return;
  }
  auto connector = context.rms.find(arbiter);
  if (arbiter.empty() || connector == context.rms.end()) {
    item.result = recovery_result::unresolved;
    item.detail = "three-phase branch whose arbiter RM '" + arbiter + "' is not configured here";
    return;
  }
  auto control = open_bounded(connector->second, context.call_timeout, context.allow_unsafe_durability);
  result<marker_state> winner = control ? result<marker_state>(marker_state::aborted) : control.error();
  if (control) {
    // No marker table at the arbiter: no coordinator ever pre-committed there, so this is not
    // the arbiter the coordinator meant (an RM name that means another database here) or it
    // never got that far; either way this terminator cannot decide. Never create it here.
    auto ready = prepare_control_connection(*control.value());
    auto found = ready ? read_marker(*control.value(), branch.gtrid())
                       : result<std::optional<marker_state>>(ready.error());
    if (!found) {
      winner = found.error();
    } else if (found.value()) {
      winner = *found.value();
    } else {
      // Nobody decided: abort it. If the coordinator's P got there first, follow the P.
      winner = insert_marker(*control.value(), branch.gtrid(), marker_state::aborted, rm.name);
    }
  }
  if (!winner) {
    item.result = recovery_result::unresolved;
    item.detail = "the arbiter " + arbiter + " could not be read: " + winner.error().describe();
    return;
  }
  bool commit = winner.value() == marker_state::precommitted;
  item.decision = std::string(commit ? "P" : "A") + " marker at arbiter " + arbiter;
  item.action = commit ? "commit" : "rollback";
  resolve(*rm.connection, branch, commit, item);
}

}  // namespace

recovery_report run_recovery(const recovery_context& context) {
  recovery_report report;

  // 1. What the log decided. A log that cannot be read stops everything: no presumed abort.
  // (No log at all: a terminator working without the coordinator's log decides nothing itself.)
  auto pending = context.log != nullptr ? context.log->pending() : result<std::vector<decision_record>>(std::vector<decision_record>{});
  if (!pending) throw log_failure_error(pending.error());
  std::map<std::string, const decision_record*, std::less<>> decisions;
  for (const auto& record : pending.value()) decisions.emplace(record.gtrid, &record);
  report.decisions_pending_before = decisions.size();

  auto is_live = [&](std::string_view gtrid) {
    auto parts = parse_gtrid(gtrid);
    return context.live_incarnation != 0 && parts.ok() && parts.value().incarnation == context.live_incarnation &&
           !(context.handed_over && context.handed_over(gtrid));
  };

  // 2. Scan every registered RM.
  auto seen_long_enough = [&](const std::string& rm_name, const xid& branch) {
    if (context.first_seen == nullptr) return false;
    auto now = std::chrono::steady_clock::now();
    auto [sighting, first_time] = context.first_seen->try_emplace(rm_name + " " + branch.to_string(), now);
    return !first_time && now - sighting->second >= context.precommit_timeout;
  };

  std::vector<scanned_rm> scanned;
  for (const auto& [name, connector] : context.rms) {
    auto connection = open_bounded(connector, context.call_timeout, context.allow_unsafe_durability);
    auto found = connection ? connection.value()->recover() : result<recovered_branches>(connection.error());
    if (!found) {
      report.unreachable_rms.push_back(name + ": " + found.error().describe());
      XATM_LOG(recovery, warning) << "RM " << name << " cannot be scanned: " << found.error().describe();
      continue;
    }
    scanned.push_back({name, std::move(connection).value(), std::move(found).value()});
  }
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
      bool rm_scanned =
          std::any_of(scanned.begin(), scanned.end(), [&](const scanned_rm& rm) { return rm.name == rm_name; });
      return rm_scanned && !listed.contains(sighting.first);
    });
  }
  XATM_CRASH_POINT("recovery_after_scan");

  // 3. Resolve xatm's branches; report everyone else's.
  std::set<std::string, std::less<>> gtrids_left;  // decisions that still have a branch somewhere
  bool first_action = true;
  for (auto& rm : scanned) {
    for (const auto& other : rm.found.foreign) {
      recovery_item item{rm.name, other.id ? other.id->to_string() : other.raw, "", "prepared", "-", "none",
                         recovery_result::foreign, "another formatID or encoding", other.age_seconds};
      report.items.push_back(std::move(item));
    }
    for (const xid& branch : rm.found.ours) {
      recovery_item item{rm.name, branch.to_string(), branch.gtrid(), "prepared", "-", "none",
                         recovery_result::foreign, "", std::nullopt};
      auto parts = parse_gtrid(branch.gtrid());
      bool own = parts && parts.value().tm_id == context.tm_id;
      bool three_phase = parts && parts.value().three_phase;
      if (!own && !(three_phase && context.terminate_others)) {
        item.detail = parts ? "belongs to TM '" + parts.value().tm_id + "'" : "not an xatm gtrid";
        if (three_phase) item.detail += " (three-phase: --terminate resolves it when its coordinator is gone)";
        report.items.push_back(std::move(item));
        continue;
      }
      auto decision = decisions.find(branch.gtrid());
      bool commit = own && decision != decisions.end();
      item.decision = commit ? "commit" : three_phase ? "none: marker rule" : "none (presumed abort)";
      if (own && is_live(branch.gtrid())) {
        item.result = recovery_result::skipped_live;
        gtrids_left.insert(branch.gtrid());
      } else if (three_phase && !own && !seen_long_enough(rm.name, branch)) {
        item.result = recovery_result::unresolved;
        item.detail = "another TM's three-phase branch: terminated if still prepared after precommit_timeout";
      } else if (three_phase && !commit && !context.dry_run) {
        // Our own older incarnation is dead (we hold its log), or another TM's coordinator has
        // been silent for precommit_timeout: the markers decide.
        terminate(context, rm, branch, item);
        XATM_LOG(recovery, info) << "terminated " << item.xid << " on " << rm.name << " (" << item.decision
                                 << "): " << recovery_result_name(item.result);
        if (item.result == recovery_result::unresolved) gtrids_left.insert(branch.gtrid());
      } else if (is_live(branch.gtrid())) {
        item.result = recovery_result::skipped_live;
        gtrids_left.insert(branch.gtrid());
      } else if (context.dry_run) {
        item.action = commit ? "commit" : "rollback";
        item.result = commit ? recovery_result::would_commit : recovery_result::would_roll_back;
        gtrids_left.insert(branch.gtrid());
      } else {
        item.action = commit ? "commit" : "rollback";
        resolve(*rm.connection, branch, commit, item);
        XATM_LOG(recovery, info) << item.action << " " << item.xid << " on " << rm.name << ": "
                                 << recovery_result_name(item.result) << (item.detail.empty() ? "" : ": ")
                                 << item.detail;
        if (item.result == recovery_result::unresolved) gtrids_left.insert(branch.gtrid());
        if (std::exchange(first_action, false)) XATM_CRASH_POINT("recovery_after_first_resolve");
      }
      report.items.push_back(std::move(item));
    }
  }

  // 4. Forget decisions that are done everywhere: every RM they name was scanned just now and
  // holds no branch of theirs. An RM that could not be scanned keeps the decision.
  std::set<std::string, std::less<>> scanned_names;
  for (const auto& rm : scanned) scanned_names.insert(rm.name);
  for (const auto& [gtrid, record] : decisions) {
    if (context.dry_run || is_live(gtrid) || gtrids_left.contains(gtrid)) continue;
    std::string missing;
    for (const auto& rm_name : record->branch_rms) {
      if (!scanned_names.contains(rm_name)) missing += (missing.empty() ? "" : ", ") + rm_name;
    }
    if (!missing.empty()) {
      report.items.push_back({missing, "-", gtrid, "unknown", "commit", "none", recovery_result::unresolved,
                              "the decision's RMs could not be scanned: " + missing, std::nullopt});
      continue;
    }
    bool acted_here = false;
    for (const auto& item : report.items) acted_here = acted_here || item.gtrid == gtrid;
    if (!acted_here) {
      report.items.push_back({"-", "-", gtrid, "gone", "commit", "none", recovery_result::already_done,
                              "no branch left on any RM: decision forgotten", std::nullopt});
    }
    // A three-phase transaction's markers go once every branch is done (DESIGN.md section 7).
    auto parts = parse_gtrid(gtrid);
    if (parts && parts.value().three_phase) {
      for (auto& rm : scanned) {
        bool named = std::find(record->branch_rms.begin(), record->branch_rms.end(), rm.name) != record->branch_rms.end();
        if (named) (void)delete_marker(*rm.connection, gtrid);  // a leftover row is harmless
      }
    }
    context.log->mark_complete(gtrid);
    report.completed.push_back(gtrid);
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
    if (dialect != "postgresql" && dialect != "mysql" && dialect != "mariadb") {
      throw configuration_error(make_failure(xa_code::invalid, "RM '" + name + "': the connection string must start "
                                             "with its dialect: postgresql:, mysql: or mariadb:", name));
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
    return item.result == recovery_result::unresolved && item.detail.rfind("another TM's three-phase", 0) == 0;
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
    installed.push_back(name);
  }
  return installed;
}

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
    throw configuration_error(make_failure(xa_code::invalid, "no decision log at " + options.log_path +
                                           ": give the path the TM was configured with"));
  }
  std::string tm_id = options.tm_id;
  if (tm_id.empty()) {
    // Held by somebody: say busy now, before reading a file its owner may be writing.
    auto holder = detail::decision_log::lock_holder(options.log_path);
    if (holder && holder.value()) {
      throw log_in_use_error(make_failure(xa_code::invalid, "decision log " + options.log_path +
                                          " is in use by process " + std::to_string(*holder.value()) +
                                          ": only one TM or recovery tool may use a log at a time"));
    }
    auto stored = detail::decision_log::stored_tm_id(options.log_path);
    if (!stored) throw log_failure_error(stored.error());
    tm_id = stored.value();
  }
  if (auto valid = validate_tm_id(tm_id); !valid) throw configuration_error(valid.error());
  detail::recovery_context context;
  context.tm_id = tm_id;
  context.dry_run = options.dry_run;
  context.allow_unsafe_durability = options.allow_unsafe_durability;
  context.rms = connectors_for(options.rms);
  auto log = detail::open_decision_log(options.log_path, tm_id);
  context.log = log.get();
  if (!options.terminate) return detail::run_recovery(context);
  return terminate_twice(context, options.precommit_timeout);
}

}  // namespace xatm
