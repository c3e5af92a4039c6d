// global_transaction: the application's handle on one transaction (include/xatm/global_transaction.h).
// It enlists branches and hands commit() to the protocol engine (two_phase_commit.h); rollback
// and the rollback of an unfinished transaction's branches live here.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/crash_point.h"
#include "core/identity.h"
#include "core/logging.h"
#include "core/tcc_branches.h"
#include "core/tm_core.h"
#include "core/two_phase_commit.h"
#include "xatm/error.h"
#include "xatm/global_transaction.h"

namespace xatm {

using clock = std::chrono::steady_clock;
using detail::call_until;

namespace {

// A rollback is counted (tm_metrics.h) when the transaction had a branch to roll back; one that
// enlisted nothing counts nowhere, as before any counter told causes apart.
void count_rollback(detail::tm_core& core, bool had_branches, outcome_cause cause, clock::time_point started) {
  if (had_branches) core.metrics().finished(transaction_outcome::rolled_back, cause, started);
}

}  // namespace

global_transaction::global_transaction(std::shared_ptr<detail::tm_core> core, std::string gtrid,
                                       commit_protocol protocol)
    : core_(std::move(core)), gtrid_(std::move(gtrid)), started_(clock::now()), protocol_(protocol) {
  core_->metrics().begun();  // ended() by commit() or rollback_branches(), once
}

global_transaction::global_transaction(global_transaction&& other) noexcept = default;

global_transaction& global_transaction::operator=(global_transaction&& other) noexcept {
  if (this != &other) {
    if (!finished_) {
      const bool had_branches = !branches_.empty() || !tcc_branches_.empty();
      rollback_branches();
      if (core_) count_rollback(*core_, had_branches, outcome_cause::application, started_);
    }
    core_ = std::move(other.core_);
    gtrid_ = std::move(other.gtrid_);
    started_ = other.started_;
    branches_ = std::move(other.branches_);
    tcc_branches_ = std::move(other.tcc_branches_);
    protocol_ = other.protocol_;
    decision_rm_ = std::move(other.decision_rm_);
    finished_ = other.finished_;
    other.finished_ = true;
  }
  return *this;
}

global_transaction::~global_transaction() {
  if (finished_ || !core_) return;
  const bool had_branches = !branches_.empty() || !tcc_branches_.empty();
  if (had_branches) {
    XATM_LOG(tm, info) << gtrid_ << ": destroyed unfinished: rolling back " << branches_.size() << " XA and "
                       << tcc_branches_.size() << " TCC branches";
  }
  rollback_branches();
  count_rollback(*core_, had_branches, outcome_cause::application, started_);
}

connection& global_transaction::enlist(connection& application_side) {
  resource_manager& rm = resource_manager::of(application_side);
  if (finished_) throw protocol_error(make_failure(xa_code::protocol, "enlist in finished transaction " + gtrid_));
  if (!core_->is_registered(rm.name())) {
    throw configuration_error(make_failure(xa_code::invalid,
                                           "RM '" + rm.name() +
                                               "' is not registered with the "
                                               "transaction manager: recovery could not reconnect to it",
                                           rm.name()));
  }
  for (const branch& b : branches_) {
    if (b.rm == &rm) {
      throw protocol_error(
          make_failure(xa_code::protocol, "this connection is already enlisted in " + gtrid_, rm.name()));
    }
  }
  std::string bqual = std::to_string(branches_.size() + 1);
  if (protocol_ == commit_protocol::three_phase) {
    bqual += three_phase_suffix(branches_.empty() ? rm.name() : branches_.front().rm->name());
  } else if (protocol_ == commit_protocol::commit_marker) {
    if (branches_.empty())
      decision_rm_ = core_->options().decision_rm.empty() ? rm.name() : core_->options().decision_rm;
    bqual += commit_marker_suffix(decision_rm_, bqual.size());
  }
  xid id = xid::make(xatm_format_id, gtrid_, bqual).value();
  if (auto started = call_until(rm, xa_verb::start, id, clock::now() + core_->options().rm_call_timeout); !started) {
    throw_failure(started.error());
  }
  branches_.push_back(branch{&rm, std::move(id)});
  XATM_CRASH_POINT("after_start");
  return rm;
}

std::uint32_t global_transaction::enlist_tcc(std::string_view participant_name, std::string payload) {
  if (finished_) throw protocol_error(make_failure(xa_code::protocol, "enlist_tcc in finished transaction " + gtrid_));
  if (auto valid = validate_rm_name(participant_name); !valid) throw configuration_error(valid.error());
  const std::string name(participant_name);
  auto participant = core_->participant(name);
  if (!participant) {
    throw configuration_error(make_failure(
        xa_code::invalid, "no TCC participant named '" + name + "' is registered: recovery could not reach it", name));
  }
  if (protocol_ != commit_protocol::two_phase) {
    throw configuration_error(make_failure(xa_code::invalid,
                                           gtrid_ + ": TCC branches need the two-phase protocol (their commit "
                                                    "decision is kept in the decision log)",
                                           name));
  }
  if (payload.size() > detail::max_tcc_payload) {
    throw invalid_argument_error(make_failure(
        xa_code::invalid, "TCC payload of " + std::to_string(payload.size()) + " bytes; at most 64 KiB", name));
  }
  tcc_branches_.push_back(detail::tcc_branch{
      tcc_request{gtrid_, static_cast<std::uint32_t>(tcc_branches_.size() + 1), name, std::move(payload), {}},
      std::move(participant)});
  detail::tcc_branch& added = tcc_branches_.back();  // nothing is added after it in this call
  // Every way out below rolls the whole transaction back (XA branches, then TCC cancels) first,
  // counted for `why`.
  auto rolled_back = [this](failure cause, outcome_cause why) {
    rollback_branches();
    count_rollback(*core_, true, why, started_);
    return cause;
  };

  // 1. Recorded before the try, so that a crash from here on ends in its confirm or its cancel.
  XATM_CRASH_POINT("tcc_before_record");
  auto written = core_->store().record_tcc_branch(
      detail::tcc_branch_record{gtrid_, added.request.branch, name, added.request.payload, 0});
  if (!written) {
    // No try was sent. If the record reached the log after all, the rollback's cancel (or
    // recovery's) meets no try: the participant's barrier records an empty cancel.
    failure cause = std::move(written).error();
    cause.message = gtrid_ + " rolled back: its TCC branch on " + name + " could not be recorded: " + cause.message;
    throw log_failure_error(rolled_back(std::move(cause), outcome_cause::log_failure));
  }
  XATM_CRASH_POINT("tcc_after_record");

  // 2. The try: a yes vote, or the whole transaction rolls back. Once the log has pinned the
  // participant's database, every step names it, and a participant elsewhere does nothing.
  std::optional<std::string> pinned;
  if (auto pin = core_->store().pinned(name)) pinned = pin->identity;
  added.request.identity = pinned.value_or("");
  auto reply = detail::call_participant(*added.participant, tcc_step::try_, added.request,
                                        core_->options().prepare_timeout);
  if (!reply.identity.empty() && !pinned && reply.answer == tcc_answer::done) {
    // The first try of this participant pins the database it answered from (one durable write,
    // once; of two first tries at once, the first pin wins): later steps and recovery act only
    // there.
    auto pin = core_->store().pin_if_absent(detail::pinned_identity{name, reply.identity, "TCC participant " + name, 0});
    if (!pin) {
      failure cause = std::move(pin).error();
      cause.message = gtrid_ + " rolled back: the database of TCC participant " + name +
                      " could not be pinned in the decision log: " + cause.message;
      throw log_failure_error(rolled_back(std::move(cause), outcome_cause::log_failure));
    }
    pinned = pin.value().identity;
  }
  if (!reply.identity.empty() && pinned && reply.identity != *pinned) {
    // The participant's address reaches another database than the pinned one. A refusal or
    // failure from there did nothing (tcc_barrier checks the identity before anything): no cancel
    // is owed. A try done there (a participant that ignores the identity) reserved there: its
    // cancel goes there.
    if (reply.answer == tcc_answer::done) {
      added.request.identity = reply.identity;
    } else {
      added.final = true;
    }
    std::string message = gtrid_ + " rolled back: TCC participant " + name + " answered from database ";
    message += reply.identity + ", but the decision log pinned " + *pinned + " for it: its address ";
    message += "reaches another database now. Give it the address of that database; if the participant moved ";
    message += "on purpose, finish its open branches, then re-pin it with xatm-recover --repin " + name;
    failure cause = make_failure(xa_code::invalid, std::move(message), name);
    XATM_LOG(tm, error) << cause.describe();
    throw configuration_error(rolled_back(std::move(cause), outcome_cause::configuration));
  }
  if (reply.answer != tcc_answer::done) {
    failure cause = make_failure(xa_code::rollback,
                                 gtrid_ + " rolled back: the try of " + detail::describe(added.request) + " " +
                                     (reply.answer == tcc_answer::refused ? "was refused: " : "failed: ") + reply.detail,
                                 name);
    XATM_LOG(tm, info) << cause.describe();
    throw rolled_back_error(rolled_back(std::move(cause), outcome_cause::no_vote));
  }
  added.request.identity = pinned.value_or("");
  XATM_CRASH_POINT("tcc_after_try");
  XATM_LOG(tm, debug) << detail::describe(added.request) << ": try done";
  return added.request.branch;
}

// Three-phase bquals name the arbiter (branch 1's RM), so that a terminator with no log knows
// where the deciding marker lives, and, where it fits in 64 bytes, the start of the arbiter's
// pinned identity, so that a terminator whose RM of that name is another database (two TMs
// sharing a MariaDB server, whose XA RECOVER lists every database's branches) cannot decide.
std::string global_transaction::three_phase_suffix(const std::string& arbiter) const {
  std::string suffix = "@" + arbiter;
  if (auto pin = core_->store().pinned(arbiter); pin && pin->identity.size() > 3) {
    std::string tag = "@" + pin->identity.substr(3, detail::arbiter_tag_size);
    if (std::to_string(branches_.size() + 1).size() + suffix.size() + tag.size() <= max_bqual_size) suffix += tag;
  }
  return suffix;
}

// Commit-marker bquals name the decision RM and, always, the start of its pinned identity: a
// terminator reads "no row" only at the very database the coordinator writes its row in
// (docs/commit-marker.md). Without room for a tag long enough to tell databases apart, or
// without a pinned identity, the transaction cannot use the protocol.
std::string global_transaction::commit_marker_suffix(const std::string& decision_rm, std::size_t number_size) const {
  constexpr std::size_t shortest_tag = 8;  // 40 random bits of the identity
  auto refuse = [&](const std::string& why) {
    throw configuration_error(make_failure(
        xa_code::invalid,
        gtrid_ + ": the commit-marker protocol cannot use '" + decision_rm + "' as its decision RM: " + why,
        decision_rm));
  };
  if (!core_->is_registered(decision_rm)) refuse("no RM of that name is registered");
  auto pin = core_->store().pinned(decision_rm);
  if (!pin) {
    // Not met yet (tm_options::decision_rm names an RM this process has not connected to):
    // a connection of the TM's own pins its identity.
    auto met = core_->connect(decision_rm);
    if (!met) refuse("its identity cannot be read: " + met.error().describe());
    pin = core_->store().pinned(decision_rm);
  }
  if (!pin || pin->identity.size() < 3 + shortest_tag) refuse("it has no database identity (xatm_identity)");
  const std::size_t room = max_bqual_size - number_size - 2 - decision_rm.size();
  if (room < shortest_tag) {
    refuse("its name leaves no room in the 64-byte bqual for its identity; use an RM name of at most " +
           std::to_string(max_bqual_size - number_size - 2 - shortest_tag) + " characters");
  }
  return "@" + decision_rm + "@" + pin->identity.substr(3, std::min(room, detail::arbiter_tag_size));
}

commit_outcome global_transaction::commit() {
  if (finished_) throw protocol_error(make_failure(xa_code::protocol, "commit of finished transaction " + gtrid_));
  finished_ = true;  // every path below finishes the branches, one way or the other
  // In flight until the engine returns or throws (its outcome is counted there).
  struct end_in_flight {
    detail::tm_core& core;
    ~end_in_flight() { core.metrics().ended(); }
  } in_flight{*core_};
  return detail::run_commit(*core_, gtrid_, started_, branches_, tcc_branches_, protocol_, decision_rm_);
}

void global_transaction::rollback() {
  if (finished_) throw protocol_error(make_failure(xa_code::protocol, "rollback of finished transaction " + gtrid_));
  const bool had_branches = !branches_.empty() || !tcc_branches_.empty();
  rollback_branches();
  count_rollback(*core_, had_branches, outcome_cause::application, started_);
}

// Callers count the rollback (count_rollback): its cause is theirs to tell.
void global_transaction::rollback_branches() noexcept {
  finished_ = true;
  if (!core_) return;  // moved from
  core_->metrics().ended();
  if (branches_.empty() && tcc_branches_.empty()) return;
  for (const branch& b : branches_) {
    if (b.rm->current_branch() != b.id) continue;
    auto done = call_until(*b.rm, xa_verb::rollback, b.id, clock::now() + core_->options().rm_call_timeout);
    if (!done) {
      XATM_LOG(tm, warning) << gtrid_ << ": rollback of branch " << b.id.bqual()
                            << " failed: " << done.error().describe();
    }
  }
  if (!tcc_branches_.empty()) detail::cancel_tcc_branches(*core_, gtrid_, tcc_branches_);
}

}  // namespace xatm
