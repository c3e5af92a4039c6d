// The protocol engine: a global transaction's commit, written as the steps of docs/design.md section 4.
//
// commit() reads top to bottom: expire? -> end all -> drop read-only branches -> one writer:
// one-phase commit -> prepare all -> decision durable -> commit all -> mark complete. The
// commit-marker protocol (run_commit_marker(), docs/design.md section 12) keeps the decision
// branch out of the prepare and makes its one-phase commit, carrying the decision row, the
// decision. Every
// branch round trip of a step is sent to all RMs first and then awaited together
// (drive_calls), so a step costs the slowest RM, not the sum. The write-ahead rule: commit_all()
// is only reachable after the decision is durable: write_decision() returned, precommit() found
// P at the arbiter, or the decision branch's one-phase commit (carrying its row) succeeded.
#include <algorithm>
#include <atomic>
#include <functional>
#include <future>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <thread>
#include <vector>

#include "core/crash_point.h"
#include "core/logging.h"
#include "core/markers.h"
#include "core/marker_unit.h"
#include "core/tm_core.h"
#include "core/two_phase_commit.h"
#include "xatm/error.h"
#include "xatm/global_transaction.h"

namespace xatm::detail {

using clock = std::chrono::steady_clock;

result<vote> call_until(resource_manager& rm, xa_verb verb, const xid& branch, clock::time_point deadline) {
  if (auto sent = rm.begin_call(verb, branch); !sent) return std::move(sent).error();
  resource_manager* self = &rm;
  if (drive_calls(std::span(&self, 1), deadline).empty()) return rm.finish_call();
  rm.abandon_call();
  return make_failure(xa_code::rm_failure,
                      std::string("no answer to ") + xa_verb_name(verb) + " of " + branch.to_string() +
                          " in time; the connection was closed",
                      rm.name());
}

namespace {

// What the engine knows about one branch while committing.
enum class branch_fate : std::uint8_t {
  live,            // carried by its connection (active, ended or prepared)
  finished,        // read-only (finished by the RM) or rolled back by the RM: nothing left to do
  prepared,        // voted yes
  maybe_prepared,  // prepare sent but its answer lost or timed out: resolve from a new connection
  committed,
};

class two_phase_commit {
 public:
  using branch = enlisted_branch;

  two_phase_commit(tm_core& core, const std::string& gtrid, clock::time_point started, std::vector<branch>& branches,
                   std::vector<tcc_branch>& tcc, commit_protocol protocol, const std::string& decision_rm)
      : core_(core),
        gtrid_(gtrid),
        started_(started),
        branches_(branches),
        tcc_(tcc),
        fates_(branches.size(), branch_fate::live),
        protocol_(protocol),
        decision_rm_(decision_rm) {}

  commit_outcome run() {
    // 1. A transaction older than its timeout is rolled back, whatever it did.
    if (clock::now() - started_ > core_.options().transaction_timeout) {
      abort<timeout_error>(make_failure(xa_code::rollback_timeout,
                                        "transaction " + gtrid_ +
                                            " is older than its "
                                            "timeout (" +
                                            std::to_string(core_.options().transaction_timeout.count()) + " ms)"),
                           outcome_cause::timeout);
    }
    if (protocol_ == commit_protocol::commit_marker) return run_commit_marker();
    if (core_.store().failed()) {
      abort<log_failure_error>(make_failure(xa_code::rm_error,
                                            "the decision log failed earlier; this transaction "
                                            "manager refuses commits until it is restarted and recovered"),
                               outcome_cause::log_failure);
    }
    voting_started_ = clock::now();
    // 2. End every branch.
    end_all();
    // 3. Branches that wrote nothing finish now and take no further part.
    std::vector<std::size_t> writers = writing_branches();
    // 4. One writing branch: one-phase commit, no prepare, no log record. Not with TCC branches:
    // their confirm follows a decision, which must be in the log first.
    if (writers.size() <= 1 && tcc_.empty()) return commit_one_phase(writers);
    // 5. Prepare every branch; any no-vote, error or timeout rolls all back (no log record).
    XATM_CRASH_POINT("before_prepare");
    prepare_all();
    core_.metrics().phase_done(commit_phase::prepare, voting_started_);
    const auto decision_started = clock::now();
    if (protocol_ == commit_protocol::three_phase) {
      // 6'. Three-phase: the commit point is the P marker at the arbiter RM (docs/three-phase.md).
      precommit();
    } else {
      // 6. The commit point: the decision is durable before any RM commits.
      XATM_CRASH_POINT("before_decision_write");
      write_decision();
      XATM_CRASH_POINT("after_decision_durable");
    }
    core_.metrics().phase_done(commit_phase::decision, decision_started);
    return commit_decided();
  }

 private:
  // Steps 7 and 8, once the decision is durable (in the log, or in a marker row).
  commit_outcome commit_decided() {
    // 7. Commit every prepared branch, retrying failures within the retry window; confirm the
    // TCC branches meanwhile. Early acknowledgement does not apply to TCC branches: their
    // confirms have no connection to finish them later, so commit() drives them itself.
    const auto commit_started = clock::now();
    if (core_.options().early_acknowledgement && tcc_.empty()) return commit_in_background(commit_started);
    start_confirms();
    bool complete = commit_all();
    complete = confirms_done() && complete;
    if (tcc_refused_) {
      // A participant refused its confirm: its barrier had cancelled the branch.
      if (complete) {
        forget_decision();
      } else {
        core_.hand_over(gtrid_);
      }
      failure cause = *tcc_refused_;
      cause.message = gtrid_ + ": heuristic outcome: the decision was commit but " + cause.message;
      finished(transaction_outcome::heuristic, outcome_cause::tcc_refused);
      throw heuristic_error(std::move(cause));
    }
    // 8. Forget the decision once every branch confirmed (not forced).
    if (!complete) {
      core_.hand_over(gtrid_);  // recovery (background or recover_now()) finishes it
      core_.metrics().phase_done(commit_phase::commit, commit_started);
      finished(transaction_outcome::completion_pending, protocol_cause());
      XATM_LOG(tm, warning) << gtrid_ << ": committed, completion pending: recovery will finish it";
      return commit_outcome::completion_pending;
    }
    XATM_CRASH_POINT("before_complete_mark");
    forget_decision();
    core_.metrics().phase_done(commit_phase::commit, commit_started);
    finished(transaction_outcome::committed, protocol_cause());
    XATM_LOG(tm, debug) << gtrid_ << ": committed on " << branches_.size() << " branches";
    return commit_outcome::committed;
  }

  // Every branch is final: the log's record (two-phase, three-phase) and the marker rows
  // (three-phase, commit-marker) may go, neither on the commit path.
  void forget_decision() {
    if (protocol_ != commit_protocol::commit_marker) core_.store().mark_complete(gtrid_);
    if (auto rms = marker_rms(); !rms.empty()) core_.markers().delete_markers_later(gtrid_, std::move(rms));
  }

  // The RMs holding this transaction's marker rows: three-phase writes one on every RM (the
  // arbiter's and hints), commit-marker only at the decision RM.
  std::vector<std::string> marker_rms() const {
    if (protocol_ == commit_protocol::three_phase) return distinct_rm_names();
    if (protocol_ == commit_protocol::commit_marker) return {decision_rm_};
    return {};
  }

  // ---- the commit-marker protocol (docs/design.md section 12) -----------------------------------
  //
  // expire? -> end every branch but the decision branch -> no other writer: one-phase commit as
  // in step 4 -> prepare the others while the decision branch inserts its decision row -> any
  // no-vote or a failed insert: roll everything back -> the decision branch's one-phase commit
  // (the commit point; a lost reply is settled by the terminator's rule) -> commit the others.
  // Nothing is written to the TM's log.
  commit_outcome run_commit_marker() {
    const std::optional<std::size_t> decider = decision_branch();
    voting_started_ = clock::now();
    // 2. End every branch but the decision branch: its row goes in before its end (MariaDB runs
    // no statement in an ended XA branch).
    end_all(decider);
    std::vector<std::size_t> others = writing_branches();
    if (decider) std::erase(others, *decider);
    // 3-4. No writer besides the decision branch: one-phase commit, no row (as in step 4).
    if (others.empty()) {
      if (decider) end_all(std::nullopt, decider);
      return commit_one_phase(writing_branches());
    }
    // A decision branch that has reported no write so far (MariaDB's session tracker) is ended
    // first, which tells for sure: a read-only one takes no row, and one other writer then
    // commits in one phase as in step 4.
    if (decider && branches_[*decider].rm->wrote_so_far() == false) {
      end_all(std::nullopt, decider);
      if (writing_branches().size() <= 1) return commit_one_phase(writing_branches());
      XATM_CRASH_POINT("before_prepare");
      return commit_with_row_elsewhere();
    }
    XATM_CRASH_POINT("before_prepare");
    if (!decider) return commit_with_row_elsewhere();
    // 5. Prepare the others; meanwhile the decision branch inserts its row (not committed: the
    // write-ahead rule holds) and ends.
    decision_insert inserted;
    prepare_all(*decider, [&] {
      XATM_CRASH_POINT("marker_before_decision_insert");
      inserted = insert_decision_row(*decider);
    });
    if (inserted.failed) {
      failure cause = std::move(*inserted.failed);
      cause.message = gtrid_ + " rolled back: the decision row could not be written in the decision branch on " +
                      decision_rm_ +
                      " (if it already had a row, another xatm instance terminated the transaction while this "
                      "coordinator was stalled): " +
                      cause.message;
      abort<rolled_back_error>(std::move(cause), outcome_cause::no_vote);
    }
    if (!inserted.written) {
      // The decision branch had written nothing (PostgreSQL's insert asked): it ends read-only
      // and the row goes on a connection of the TM's own.
      end_all(std::nullopt, decider);
      return commit_with_row_elsewhere();
    }
    XATM_CRASH_POINT("marker_after_decision_insert");
    core_.metrics().phase_done(commit_phase::prepare, voting_started_);
    // 6. The commit point: the decision branch commits in one phase, its row with it.
    const auto decision_started = clock::now();
    commit_decision_branch(*decider);
    core_.metrics().phase_done(commit_phase::decision, decision_started);
    XATM_CRASH_POINT("marker_after_decision_commit");
    return commit_decided();
  }

  // No branch to carry the row (the decision RM has none here, or a read-only one): prepare
  // every live branch and write the row on a connection of the TM's own to the decision RM, as
  // three-phase mode's arbiter P (no hints, nothing in the log). Correct, one flush more.
  commit_outcome commit_with_row_elsewhere() {
    prepare_all();
    core_.metrics().phase_done(commit_phase::prepare, voting_started_);
    const auto decision_started = clock::now();
    precommit(/*hints=*/false);
    core_.metrics().phase_done(commit_phase::decision, decision_started);
    return commit_decided();
  }

  // The first branch on the decision RM, if the transaction has one.
  std::optional<std::size_t> decision_branch() const {
    for (std::size_t i = 0; i < branches_.size(); ++i) {
      if (branches_[i].rm->name() == decision_rm_) return i;
    }
    return std::nullopt;
  }

  // Every RM once, with the identity the log pinned for it: a recovery elsewhere deletes the
  // marker rows only once it scanned those very databases (docs/design.md section 7).
  std::string marker_rm_list() const {
    std::string rm_list;
    std::string plain_list;  // the names alone, when the identities would not fit the column
    for (const auto& name : distinct_rm_names()) {
      rm_list += (rm_list.empty() ? "" : ",") + name;
      plain_list += (plain_list.empty() ? "" : ",") + name;
      if (auto pin = core_.store().pinned(name)) rm_list += "=" + pin->identity;
    }
    return rm_list.size() >= 1000 ? plain_list : rm_list;
  }

  // What the decision insert did: the row written (and the branch ended), no row because the
  // branch had written nothing (it stays active), or a failure (no row: roll everything back).
  struct decision_insert {
    bool written = false;
    std::optional<failure> failed;
  };

  // Inserts the decision row in the decision branch and ends it. No row means no decision,
  // whatever the reason; more than one is impossible (a primary key) and refused anyway.
  decision_insert insert_decision_row(std::size_t decider) {
    resource_manager& rm = *branches_[decider].rm;
    auto tables = core_.markers().tables_at(decision_rm_);
    auto pin = core_.store().pinned(decision_rm_);
    if (!tables) return {false, tables.error()};
    if (!pin)
      return {false, make_failure(xa_code::rm_error, "no identity is pinned for the decision RM", decision_rm_)};
    auto statement = decision_insert_statement(rm, tables.value(), gtrid_, pin->identity, marker_rm_list());
    if (!statement) return {false, statement.error()};
    // The application's connection has no call timeout of its own: bound this statement.
    const auto own_timeout = rm.call_timeout();
    rm.set_call_timeout(core_.options().rm_call_timeout);
    auto inserted = rm.exec(statement.value());
    rm.set_call_timeout(own_timeout);
    if (!inserted) return {false, inserted.error()};
    if (inserted.value().affected_rows == 0) return {false, std::nullopt};  // read-only so far
    if (inserted.value().affected_rows != 1) {
      return {false, make_failure(xa_code::rm_error,
                                  "the decision insert wrote " + std::to_string(inserted.value().affected_rows) +
                                      " rows instead of 1",
                                  decision_rm_)};
    }
    auto ended = call_all({decider}, xa_verb::end, prepare_deadline()).front();
    if (!ended) return {false, ended.error()};
    return {true, std::nullopt};
  }

  // The decision branch's one-phase commit: the commit point. Refused: roll everything back.
  // No answer: the commit may or may not have happened; the terminator's rule settles it.
  void commit_decision_branch(std::size_t decider) {
    auto answer = call_all({decider}, xa_verb::commit_one_phase, call_deadline()).front();
    fates_[decider] = branch_fate::finished;
    if (answer.ok()) {
      XATM_LOG(tm, debug) << gtrid_ << ": decision committed on " << decision_rm_;
      return;
    }
    failure cause = std::move(answer).error();
    if (is_rollback_code(cause.code)) {
      cause.message = gtrid_ + " rolled back: the decision branch's one-phase commit was refused: " + cause.message;
      abort<rolled_back_error>(std::move(cause), outcome_cause::no_vote);
    }
    // No verdict. The connection is closed (a timeout abandoned it; after any other error this
    // closes it), so a commit not yet done is rolled back by the RM and its row lock goes. An A
    // inserted-if-absent now waits behind a commit still under way and loses to it.
    if (branches_[decider].rm->connected()) (void)branches_[decider].rm->reconnect();
    XATM_LOG(tm, warning) << gtrid_ << ": the decision branch's commit answered no verdict (" << cause.describe()
                          << "); settling it by the marker row";
    precommit_result settled = core_.markers().decide(gtrid_, decision_rm_, marker_state::aborted, marker_rm_list());
    if (settled.verdict == precommit_verdict::committed) return;
    if (settled.verdict == precommit_verdict::aborted) {
      cause.message = gtrid_ + " rolled back: the decision branch's commit did not happen (" + cause.message + ")";
      abort<rolled_back_error>(std::move(cause), outcome_cause::no_vote);
    }
    cause.message = gtrid_ +
                    " is in doubt: the decision branch's commit answered no verdict and its row cannot be "
                    "read on " +
                    decision_rm_ + "; termination decides from that row: " + settled.cause.message;
    XATM_LOG(tm, error) << cause.describe();
    core_.hand_over(gtrid_);
    finished(transaction_outcome::in_doubt, outcome_cause::marker_unknown);
    throw in_doubt_error(std::move(cause));
  }

  // Sends `verb` for the given branches at once, then waits for every answer until `deadline`.
  // A branch that has not answered by then is abandoned (its connection closed) and answers
  // rm_failure with `timed_out` set.
  // `meanwhile`, if given, runs once every call was sent, before the answers are awaited.
  std::vector<result<vote>> call_all(const std::vector<std::size_t>& which, xa_verb verb,
                                     std::optional<clock::time_point> deadline,
                                     const std::function<void()>& meanwhile = {}) {
    std::vector<result<vote>> answers(which.size(), result<vote>(vote::commit));
    std::vector<resource_manager*> in_flight;
    in_flight.reserve(which.size());
    for (std::size_t k = 0; k < which.size(); ++k) {
      const branch& b = branches_[which[k]];
      XATM_LOG(tm, debug) << gtrid_ << ": " << xa_verb_name(verb) << " branch " << b.id.bqual() << " on "
                          << b.rm->name();
      if (auto sent = b.rm->begin_call(verb, b.id); !sent) {
        answers[k] = std::move(sent).error();
      } else {
        in_flight.push_back(b.rm);
      }
    }
    if (meanwhile) meanwhile();
#ifdef XATM_CRASH_POINTS
    // The crash points "after the first answer" fire while the other RMs may still be working.
    const char* first_answer_point = verb == xa_verb::prepare  ? "after_first_prepare"
                                     : verb == xa_verb::commit ? "after_first_commit"
                                                               : nullptr;
    bool first = true;
    auto unanswered = drive_calls(in_flight, deadline, [&](resource_manager&) {
      if (first_answer_point != nullptr && std::exchange(first, false)) XATM_CRASH_POINT(first_answer_point);
    });
#else
    auto unanswered = drive_calls(in_flight, deadline);  // no callback on the commit path
#endif
    for (std::size_t k = 0; k < which.size(); ++k) {
      resource_manager* rm = branches_[which[k]].rm;
      if (std::find(in_flight.begin(), in_flight.end(), rm) == in_flight.end()) continue;
      if (std::find(unanswered.begin(), unanswered.end(), rm) != unanswered.end()) {
        rm->abandon_call();
        failure cause = make_failure(
            xa_code::rm_failure, std::string("no answer to ") + xa_verb_name(verb) + " within the timeout", rm->name());
        timed_out_ = true;
        answers[k] = std::move(cause);
      } else {
        answers[k] = rm->finish_call();
      }
    }
    return answers;
  }

  // The branches still carried by their connections, but `except`.
  std::vector<std::size_t> all_live(std::optional<std::size_t> except = std::nullopt) const {
    std::vector<std::size_t> which;
    for (std::size_t i = 0; i < branches_.size(); ++i) {
      if (fates_[i] == branch_fate::live && i != except) which.push_back(i);
    }
    return which;
  }

  clock::time_point prepare_deadline() const { return clock::now() + core_.options().prepare_timeout; }
  clock::time_point call_deadline() const { return clock::now() + core_.options().rm_call_timeout; }

  // An adapter answers XAER_INVAL to prepare for one thing only: the RM is set up so that it
  // cannot prepare at all (PostgreSQL with max_prepared_transactions = 0); the branch is rolled
  // back (lib/postgresql/postgresql_errors.cpp). commit() throws configuration_error for it,
  // after rolling back every branch as for any no-vote.
  static bool refuses_for_configuration(const failure& prepare_failure) {
    return prepare_failure.code == xa_code::invalid;
  }

  // Ends every live branch but `except`, or only `only`.
  void end_all(std::optional<std::size_t> except = std::nullopt, std::optional<std::size_t> only = std::nullopt) {
    auto which = only ? std::vector<std::size_t>{*only} : all_live(except);
    auto answers = call_all(which, xa_verb::end, prepare_deadline());
    // A failed end leaves the branch rollback-only on its connection: roll_back_all() clears it.
    for (std::size_t k = 0; k < which.size(); ++k) {
      if (!answers[k].ok()) abort_for(answers[k].error(), "end");
    }
  }

  std::vector<std::size_t> writing_branches() const {
    std::vector<std::size_t> writers;
    for (std::size_t i = 0; i < branches_.size(); ++i) {
      if (!branches_[i].rm->known_read_only()) writers.push_back(i);
    }
    return writers;
  }

  commit_outcome commit_one_phase(const std::vector<std::size_t>& writers) {
    // Read-only branches first: they hold no writes, finishing them is harmless either way.
    std::vector<std::size_t> readers;
    for (std::size_t i = 0; i < branches_.size(); ++i) {
      if (writers.empty() || i != writers.front()) readers.push_back(i);
    }
    auto answers = call_all(readers, xa_verb::prepare, prepare_deadline());
    for (std::size_t k = 0; k < readers.size(); ++k) {
      if (answers[k].ok() && answers[k].value() == vote::read_only) {
        fates_[readers[k]] = branch_fate::finished;
      } else if (answers[k].ok()) {
        fates_[readers[k]] = branch_fate::prepared;  // it wrote after all: undo it below
      } else if (is_rollback_code(answers[k].error().code)) {
        fates_[readers[k]] = branch_fate::finished;
      }
    }
    for (std::size_t k = 0; k < readers.size(); ++k) {
      // Each adapter finishes a read-only branch asked to prepare with a one-phase commit.
      if (!answers[k].ok()) abort_for(answers[k].error(), "one-phase commit");
      if (answers[k].value() != vote::read_only) {
        abort_for(make_failure(xa_code::rollback_other, "a branch reported read-only voted to commit",
                               branches_[readers[k]].rm->name()),
                  "prepare");
      }
    }
    if (writers.empty()) {
      finished(transaction_outcome::committed, outcome_cause::one_phase);
      return commit_outcome::committed;
    }
    std::size_t writer = writers.front();
    // No answer within rm_call_timeout is a lost reply like any other: in doubt (below).
    const auto commit_started = clock::now();
    auto answer = call_all({writer}, xa_verb::commit_one_phase, call_deadline()).front();
    fates_[writer] = branch_fate::finished;
    if (answer.ok()) {
      core_.metrics().phase_done(commit_phase::commit, commit_started);
      finished(transaction_outcome::committed, outcome_cause::one_phase);
      XATM_LOG(tm, debug) << gtrid_ << ": committed in one phase on " << branches_[writer].rm->name();
      return commit_outcome::committed;
    }
    failure cause = std::move(answer).error();
    if (is_rollback_code(cause.code)) {
      finished(transaction_outcome::rolled_back, outcome_cause::no_vote);
      cause.message = gtrid_ + " rolled back: one-phase commit refused: " + cause.message;
      throw rolled_back_error(std::move(cause));
    }
    // The commit was sent and no verdict came back: it may or may not have happened.
    cause.message = gtrid_ + " is in doubt: the one-phase commit's reply was lost: " + cause.message;
    XATM_LOG(tm, error) << cause.describe();
    finished(transaction_outcome::in_doubt, outcome_cause::reply_lost);
    throw in_doubt_error(std::move(cause));
  }

  // Prepares every live branch but `except`; `meanwhile` as for call_all().
  void prepare_all(std::optional<std::size_t> except = std::nullopt, const std::function<void()>& meanwhile = {}) {
    auto which = all_live(except);
    // Each adapter finishes a branch that wrote nothing with a one-phase commit instead of a
    // prepare: a failure there is reported as the one-phase commit it was.
    std::vector<bool> read_only;
    read_only.reserve(which.size());
    for (std::size_t i : which) read_only.push_back(branches_[i].rm->known_read_only());
    auto answers = call_all(which, xa_verb::prepare, prepare_deadline(), meanwhile);
    std::optional<failure> no_vote;
    const char* no_vote_step = "prepare";
    for (std::size_t k = 0; k < which.size(); ++k) {
      std::size_t i = which[k];
      if (answers[k].ok()) {
        fates_[i] = answers[k].value() == vote::read_only ? branch_fate::finished : branch_fate::prepared;
        continue;
      }
      const failure& cause = answers[k].error();
      // An XA_RB* answer means the RM rolled it back; a lost or late answer may hide a prepare.
      fates_[i] = is_rollback_code(cause.code)                           ? branch_fate::finished
                  : branches_[i].rm->current_branch() == branches_[i].id ? branch_fate::live
                                                                         : branch_fate::maybe_prepared;
      // A refusal for configuration is reported before any other no-vote: it is the one that
      // will fail every writing transaction on that RM until an operator changes the setting.
      if (!no_vote || (refuses_for_configuration(cause) && !refuses_for_configuration(*no_vote))) {
        no_vote = cause;
        no_vote_step = read_only[k] ? "one-phase commit" : "prepare";
      }
    }
    if (no_vote && refuses_for_configuration(*no_vote)) {
      failure cause = *no_vote;
      cause.message = gtrid_ + " rolled back: " + cause.rm_name + " refuses to prepare as configured: " + cause.message;
      abort<configuration_error>(std::move(cause), outcome_cause::configuration);
    }
    if (no_vote) abort_for(*no_vote, no_vote_step);
    XATM_LOG(tm, debug) << gtrid_ << ": every branch voted yes";
    XATM_CRASH_POINT("after_all_prepared");
  }

  void write_decision() {
    decision_record decision;
    decision.gtrid = gtrid_;
    decision.state = decision_state::commit;
    decision.branch_rms.reserve(branches_.size());
    for (const branch& b : branches_) decision.branch_rms.push_back(b.rm->name());
    auto written = core_.store().record(decision);
    if (written) {
      XATM_LOG(tm, debug) << gtrid_ << ": commit decision durable";
      return;
    }
    const write_outcome outcome = written.outcome();
    failure cause = std::move(written).error();
    if (outcome == write_outcome::not_written) {
      // Nothing of the record reached the log (no space, or the log had failed before its
      // batch): presumed abort holds, roll back.
      cause.message = gtrid_ + " rolled back: its commit decision could not be written: " + cause.message;
      abort<log_failure_error>(std::move(cause), outcome_cause::log_failure);
    }
    // A failed fsync may still have put the record on disk: only recovery, reading the log after
    // a restart, may decide. Leave every branch prepared.
    cause.message = gtrid_ + " is undecided until restart and recovery: " + cause.message;
    XATM_LOG(tm, error) << cause.describe();
    finished(transaction_outcome::in_doubt, outcome_cause::log_failure);
    throw log_failure_error(std::move(cause));
  }

  std::vector<std::string> distinct_rm_names() const {
    std::vector<std::string> names;
    for (const branch& b : branches_) {
      if (std::find(names.begin(), names.end(), b.rm->name()) == names.end()) names.push_back(b.rm->name());
    }
    return names;
  }

  // Three-phase PreCommit (marker_unit::precommit): P at the arbiter (branch 1's RM) is the
  // commit point. If a terminator got there first with A, the transaction is aborted; if the
  // marker could be neither written nor read, it is in doubt and the arbiter's row decides.
  // The commit-marker protocol without a branch on its decision RM uses it too: that RM is the
  // arbiter, no hints go elsewhere and nothing is noted in the log.
  void precommit(bool hints = true) {
    const std::string& arbiter =
        protocol_ == commit_protocol::commit_marker ? decision_rm_ : branches_.front().rm->name();
    precommit_result outcome = core_.markers().precommit(
        gtrid_, arbiter, hints ? distinct_rm_names() : std::vector<std::string>{}, marker_rm_list());
    if (outcome.verdict == precommit_verdict::in_doubt) {
      // Prepared everywhere, decision unknown: the arbiter's row decides, through termination.
      failure cause = std::move(outcome.cause);
      cause.message = gtrid_ +
                      " is in doubt: the pre-commit marker could not be written or read at the arbiter; "
                      "termination decides from the arbiter's row: " +
                      cause.message;
      XATM_LOG(tm, error) << cause.describe();
      core_.hand_over(gtrid_);
      finished(transaction_outcome::in_doubt, outcome_cause::marker_unknown);
      throw in_doubt_error(std::move(cause));
    }
    if (outcome.verdict == precommit_verdict::aborted) {
      abort<rolled_back_error>(make_failure(xa_code::rollback,
                                            gtrid_ +
                                                " rolled back: another xatm instance "
                                                "terminated it while this coordinator was stalled (marker A at the "
                                                "arbiter)",
                                            arbiter),
                               outcome_cause::terminated);
    }
    if (protocol_ == commit_protocol::commit_marker) return;  // its log has no part in it
    decision_record note;
    note.gtrid = gtrid_;
    note.state = decision_state::precommit;
    for (const branch& b : branches_) note.branch_rms.push_back(b.rm->name());
    if (auto noted = core_.store().record(note); !noted) {
      // Committed anyway (the arbiter decided); without the note only the markers remember it.
      XATM_LOG(tm, error) << gtrid_ << ": pre-commit note not logged: " << noted.error().describe();
    }
    XATM_CRASH_POINT("after_all_precommit");
  }

  // Early acknowledgement: the decision is durable, so the transaction is committed. Send every
  // branch's commit on its own connection and return; each connection finishes its commit at
  // its next use (resource_manager::detach_call). Until all confirm, the gtrid is handed over to
  // recovery, which finishes whatever a dropped connection leaves behind.
  commit_outcome commit_in_background(clock::time_point commit_started) {
    struct completion {
      std::shared_ptr<tm_core> core;
      std::string gtrid;
      bool logged;                          // a record in the log to forget
      std::vector<std::string> marker_rms;  // where marker rows are to be deleted
      std::atomic<std::size_t> left;
      std::atomic<bool> failed{false};
    };
    core_.hand_over(gtrid_);
    auto state = std::make_shared<completion>();
    state->core = core_.shared_from_this();
    state->gtrid = gtrid_;
    state->logged = protocol_ != commit_protocol::commit_marker;
    state->marker_rms = marker_rms();
    std::vector<resource_manager*> sent;
    for (std::size_t i = 0; i < branches_.size(); ++i) {
      if (fates_[i] != branch_fate::prepared) continue;
      if (branches_[i].rm->begin_call(xa_verb::commit, branches_[i].id))
        sent.push_back(branches_[i].rm);
      else
        state->failed = true;  // recovery commits it
    }
    state->left = sent.size();
    for (resource_manager* rm : sent) {
      rm->detach_call([state](const result<vote>& answer) {
        if (!answer.ok() && answer.error().code != xa_code::not_found) state->failed = true;
        if (state->left.fetch_sub(1) != 1 || state->failed) return;
        if (state->logged) state->core->store().mark_complete(state->gtrid);
        if (!state->marker_rms.empty()) state->core->markers().delete_markers_later(state->gtrid, state->marker_rms);
        state->core->take_back(state->gtrid);
      });
    }
    core_.metrics().phase_done(commit_phase::commit, commit_started);  // the sending only
    finished(transaction_outcome::committed, protocol_cause());
    return commit_outcome::committed;
  }

  // Answers true when every branch confirmed its commit.
  bool commit_all() {
    std::vector<std::size_t> which;
    for (std::size_t i = 0; i < branches_.size(); ++i) {
      if (fates_[i] == branch_fate::prepared) which.push_back(i);
    }
    // One window for the first attempt and the retries: commit() returns soon after it closes.
    auto window_end = clock::now() + core_.options().commit_retry_window;
    auto answers = call_all(which, xa_verb::commit, window_end);
    std::vector<std::size_t> retry;
    std::optional<failure> heuristic;
    for (std::size_t k = 0; k < which.size(); ++k) {
      std::size_t i = which[k];
      if (answers[k].ok() || answers[k].error().code == xa_code::not_found) {
        fates_[i] = branch_fate::committed;
      } else if (is_rollback_code(answers[k].error().code)) {
        heuristic = answers[k].error();
      } else {
        XATM_LOG(tm, warning) << gtrid_ << ": commit of branch " << branches_[i].id.bqual()
                              << " failed, retrying: " << answers[k].error().describe();
        retry.push_back(i);
      }
    }
    retry_commits(retry, heuristic, window_end);
    if (heuristic) {
      // Nothing is left to commit (unless a retry or a confirm is pending: then recovery still
      // needs the record).
      if (retry.empty() && confirms_done()) {
        forget_decision();
      } else {
        core_.hand_over(gtrid_);
      }
      failure cause = *heuristic;
      cause.code = xa_code::heuristic_mixed;
      cause.message = gtrid_ + ": heuristic outcome: the decision was commit but " + cause.rm_name +
                      " rolled its branch back: " + cause.message;
      XATM_LOG(tm, error) << cause.describe();
      finished(transaction_outcome::heuristic, outcome_cause::rm_rolled_back);
      throw heuristic_error(std::move(cause));
    }
    if (!retry.empty()) return false;
    XATM_CRASH_POINT("after_all_committed");
    return true;
  }

  // Commits the given branches from new connections until they confirm or the window closes.
  // "Does not exist" after a commit decision means already committed. No attempt starts after
  // the window closed, and each one (its connect included) ends within about rm_call_timeout, so a
  // silent RM holds commit() at most that long past the window.
  void retry_commits(std::vector<std::size_t>& retry, std::optional<failure>& heuristic, clock::time_point window_end) {
    auto backoff = std::chrono::milliseconds(10);
    while (!retry.empty() && clock::now() < window_end) {
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(500));
      std::erase_if(retry, [&](std::size_t i) {
        if (clock::now() >= window_end) return false;  // left to recovery
        const auto attempt_deadline = call_deadline();
        const branch& b = branches_[i];
        // While the application's connection still carries the prepared branch, only it can
        // commit it (MariaDB answers everyone else "attached to a live session").
        result<vote> done = make_failure(xa_code::rm_failure, "not tried");
        if (b.rm->current_branch() == b.id && b.rm->connected()) {
          done = call_until(*b.rm, xa_verb::commit, b.id, attempt_deadline);
        } else {
          auto connection = core_.connect(b.rm->name());  // bounded by rm_call_timeout
          if (!connection) return false;
          done = call_until(*connection.value(), xa_verb::commit, b.id, attempt_deadline);
        }
        if (done.ok() || done.error().code == xa_code::not_found) {
          fates_[i] = branch_fate::committed;
          return true;
        }
        if (is_rollback_code(done.error().code)) {
          heuristic = done.error();
          return true;
        }
        return false;  // unreachable, or still attached to another session (retry): later
      });
    }
  }

  // Confirms the TCC branches on a thread of their own while the XA commits go out: a confirm is
  // a blocking call (HTTP, say) and must not wait for the XA answers, nor they for it.
  void start_confirms() {
    if (tcc_.empty()) return;
    const auto window_end = clock::now() + core_.options().commit_retry_window;
    const auto call_timeout = core_.options().rm_call_timeout;
    // Both launch policies: where no thread can be started, libstdc++ runs the confirms
    // deferred, in confirms_done(), rather than throw after the decision was made.
    confirms_ = std::async(std::launch::async | std::launch::deferred,
                           [this, window_end, call_timeout] { return drive_to_end(tcc_, tcc_step::confirm, window_end, call_timeout); });
  }

  // Waits for the confirms (once) and answers whether every TCC branch is final.
  bool confirms_done() {
    if (confirms_.valid()) tcc_refused_ = confirms_.get();
    return all_final(tcc_);
  }

  // Counts the transaction's outcome (tm_metrics.h), with its whole duration.
  void finished(transaction_outcome outcome, outcome_cause cause) noexcept {
    core_.metrics().finished(outcome, cause, started_);
  }

  // How a commit decided: the cause its committed (or completion-pending) outcome counts under.
  outcome_cause protocol_cause() const noexcept {
    switch (protocol_) {
      case commit_protocol::three_phase: return outcome_cause::three_phase;
      case commit_protocol::commit_marker: return outcome_cause::commit_marker;
      default: return outcome_cause::two_phase;
    }
  }

  // Rolls every branch back, then throws E with the cause; counted as rolled back for `why`.
  template <class E>
  [[noreturn]] void abort(failure cause, outcome_cause why) {
    roll_back_all();
    finished(transaction_outcome::rolled_back, why);
    XATM_LOG(tm, info) << gtrid_ << ": rolled back: " << cause.describe();
    throw E(std::move(cause));
  }

  // A branch voted no or failed before the decision: roll back everything, saying which and why.
  [[noreturn]] void abort_for(failure cause, const char* step) {
    cause.message = gtrid_ + " rolled back: " + step + " failed on " +
                    (cause.rm_name.empty() ? std::string("an RM") : cause.rm_name) + ": " + cause.message;
    if (timed_out_) abort<timeout_error>(std::move(cause), outcome_cause::timeout);
    abort<rolled_back_error>(std::move(cause), outcome_cause::no_vote);
  }

  // The XA branches first: their locks go at once, while the TCC cancels may retry for the whole
  // window (as global_transaction::rollback_branches() does).
  void roll_back_all() noexcept {
    try {
      std::vector<std::size_t> own;
      for (std::size_t i = 0; i < branches_.size(); ++i) {
        if (fates_[i] == branch_fate::finished) continue;
        if (branches_[i].rm->current_branch() == branches_[i].id) {
          own.push_back(i);
        } else if (fates_[i] == branch_fate::maybe_prepared || fates_[i] == branch_fate::prepared) {
          roll_back_from_new_connection(branches_[i]);
        }
      }
      auto answers = call_all(own, xa_verb::rollback, prepare_deadline());
      for (std::size_t k = 0; k < own.size(); ++k) {
        if (!answers[k].ok() && answers[k].error().code != xa_code::not_found) {
          core_.hand_over(gtrid_);  // presumed abort: recovery rolls back what is left
          XATM_LOG(tm, warning) << gtrid_ << ": rollback of branch " << branches_[own[k]].id.bqual()
                                << " failed (recovery rolls it back): " << answers[k].error().describe();
        }
      }
    } catch (const std::exception& e) {
      XATM_LOG(tm, error) << gtrid_ << ": rollback failed (recovery rolls it back): " << e.what();
    }
    if (!tcc_.empty()) cancel_tcc_branches(core_, gtrid_, tcc_);
  }

  void roll_back_from_new_connection(const branch& b) {
    // Its prepare may still be on its way (stuck in an fsync, say) and show up after this
    // rollback found nothing: recovery keeps looking for a while (see tm_core::recover).
    core_.hand_over(gtrid_);
    auto connection = core_.connect(b.rm->name());
    auto done = connection ? connection.value()->rollback(b.id) : result<void>(connection.error());
    if (!done && done.error().code != xa_code::not_found) {
      XATM_LOG(tm, warning) << gtrid_ << ": branch " << b.id.bqual() << " on " << b.rm->name()
                            << " may be prepared; presumed abort: recovery rolls it back: " << done.error().describe();
    }
  }

  tm_core& core_;
  const std::string& gtrid_;
  clock::time_point started_;
  std::vector<branch>& branches_;
  std::vector<tcc_branch>& tcc_;  // their tries succeeded at enlist_tcc()
  std::future<std::optional<failure>> confirms_;  // start_confirms(): a refusal, if any
  std::optional<failure> tcc_refused_;            // what confirms_ answered
  std::vector<branch_fate> fates_;
  const commit_protocol protocol_;
  const std::string& decision_rm_;  // commit-marker: the RM whose branch carries the decision row
  bool timed_out_ = false;
  clock::time_point voting_started_{};  // before the branches' ends: the prepare phase's start
};

}  // namespace

commit_outcome run_commit(tm_core& core, const std::string& gtrid, std::chrono::steady_clock::time_point started,
                          std::vector<enlisted_branch>& branches, std::vector<tcc_branch>& tcc,
                          commit_protocol protocol, const std::string& decision_rm) {
  return two_phase_commit(core, gtrid, started, branches, tcc, protocol, decision_rm).run();
}

void cancel_tcc_branches(tm_core& core, const std::string& gtrid, std::vector<tcc_branch>& tcc) noexcept {
  try {
    const auto window_end = clock::now() + core.options().commit_retry_window;
    auto refused = drive_to_end(tcc, tcc_step::cancel, window_end, core.options().rm_call_timeout);
    if (refused) {
      // The participant's barrier had confirmed it: with no commit decision that cannot be
      // xatm's doing. Nothing can change that branch any more: reported here, once, as an XA
      // branch that an RM committed against the decision is; the operator reconciles it.
      XATM_LOG(tm, error) << gtrid << ": heuristic outcome: rolled back, but " << refused->describe();
    }
    if (all_final(tcc)) {
      core.store().mark_complete(gtrid);  // no decision: this deletes the TCC records
      return;
    }
    core.hand_over(gtrid);
    XATM_LOG(tm, warning) << gtrid << ": a TCC cancel did not succeed within the retry window; recovery cancels it";
  } catch (const std::exception& e) {
    core.hand_over(gtrid);
    XATM_LOG(tm, error) << gtrid << ": cancelling TCC branches failed (recovery cancels them): " << e.what();
  }
}

}  // namespace xatm::detail
