// xatm/statistics.h: what a transaction manager counts, and its health (docs/metrics.md).
//
// transaction_manager::statistics() answers a tm_statistics snapshot: transactions by outcome and
// cause, in-flight and pending-decision gauges, recovery runs and what they resolved, and latency
// histograms per commit phase; transaction_manager::health() answers whether the decision log
// still takes decisions and whether recovery has work outstanding. Both are plain data: copy
// them, use them from any thread. xatm/metrics.h renders them as Prometheus text.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "xatm/export.h"

namespace xatm {

// How a transaction ended: what commit() returned or threw, or a rollback.
enum class transaction_outcome : std::uint8_t {
  committed,           // commit() returned committed
  completion_pending,  // commit() returned completion_pending: committed, recovery finishes a branch
  rolled_back,         // rolled back on every RM (rollback(), destroyed unfinished, or a commit() that threw so)
  in_doubt,            // nobody knows yet (in_doubt_error, or a log_failure_error that left it undecided)
  heuristic,           // a participant did the opposite of the commit decision (heuristic_error)
};

// Why, within an outcome. Committed and completion-pending transactions are told apart by the
// path they took (one_phase: one writing branch, no prepare, no log record).
enum class outcome_cause : std::uint8_t {
  one_phase,       // committed: a single writing branch, committed in one phase
  two_phase,       // committed / completion_pending: the decision in the TM's log
  three_phase,     // committed / completion_pending: the decision in the arbiter's marker row
  commit_marker,   // committed / completion_pending: the decision row in the decision branch's commit
  application,     // rolled_back: the application called rollback() or destroyed the transaction unfinished
  no_vote,         // rolled_back: an RM voted no or failed before the decision (end, prepare, a refused
                   // one-phase commit, a TCC try refused or failed, the decision row not written)
  timeout,         // rolled_back: transaction_timeout, or an RM silent past prepare_timeout (timeout_error)
  configuration,   // rolled_back: an RM set up so that it cannot prepare, a TCC participant at another
                   // database (configuration_error)
  log_failure,     // rolled_back: the decision could not be written, or the log had failed before;
                   // in_doubt: the decision's write failed and it may be on disk (until restart)
  terminated,      // rolled_back: another xatm instance terminated the stalled transaction (marker A)
  reply_lost,      // in_doubt: the one-phase commit's reply was lost
  marker_unknown,  // in_doubt: the marker row that decides could be neither written nor read
  rm_rolled_back,  // heuristic: an RM rolled its branch back after the commit decision
  tcc_refused,     // heuristic: a TCC participant refused its confirm (its barrier had cancelled)
};

XATM_EXPORT const char* transaction_outcome_name(transaction_outcome outcome) noexcept;  // "rolled_back", ...
XATM_EXPORT const char* outcome_cause_name(outcome_cause cause) noexcept;                // "no_vote", ...

// Every (outcome, cause) pair the engine produces, in a fixed order: tm_statistics::transactions[i]
// counts outcome_kinds[i].
struct outcome_kind {
  transaction_outcome outcome;
  outcome_cause cause;
};
inline constexpr std::array<outcome_kind, 18> outcome_kinds{{
    {transaction_outcome::committed, outcome_cause::one_phase},
    {transaction_outcome::committed, outcome_cause::two_phase},
    {transaction_outcome::committed, outcome_cause::three_phase},
    {transaction_outcome::committed, outcome_cause::commit_marker},
    {transaction_outcome::completion_pending, outcome_cause::two_phase},
    {transaction_outcome::completion_pending, outcome_cause::three_phase},
    {transaction_outcome::completion_pending, outcome_cause::commit_marker},
    {transaction_outcome::rolled_back, outcome_cause::application},
    {transaction_outcome::rolled_back, outcome_cause::no_vote},
    {transaction_outcome::rolled_back, outcome_cause::timeout},
    {transaction_outcome::rolled_back, outcome_cause::configuration},
    {transaction_outcome::rolled_back, outcome_cause::log_failure},
    {transaction_outcome::rolled_back, outcome_cause::terminated},
    {transaction_outcome::in_doubt, outcome_cause::reply_lost},
    {transaction_outcome::in_doubt, outcome_cause::marker_unknown},
    {transaction_outcome::in_doubt, outcome_cause::log_failure},
    {transaction_outcome::heuristic, outcome_cause::rm_rolled_back},
    {transaction_outcome::heuristic, outcome_cause::tcc_refused},
}};

// The steps a commit is timed by.
enum class commit_phase : std::uint8_t {
  prepare,      // ending and preparing the branches (their votes), when every branch voted yes
  decision,     // making the decision durable: the log write, the arbiter's marker, or the
                // decision branch's one-phase commit
  commit,       // phase 2: the branches' commits and TCC confirms (or the one-phase commit)
  transaction,  // begin() to the outcome, for every counted transaction
};
inline constexpr std::size_t commit_phase_count = 4;
XATM_EXPORT const char* commit_phase_name(commit_phase phase) noexcept;  // "prepare", ...

// A latency histogram with fixed buckets, in seconds (Prometheus' `le` bounds).
struct latency_histogram {
  static constexpr std::array<double, 16> bounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                 0.25,   0.5,   1.0,    2.5,   5.0,  10.0,  30.0, 60.0};
  // Observations per bucket, NOT cumulative: buckets[i] counts those in (bounds[i-1], bounds[i]];
  // the last one those above bounds.back() (+Inf).
  std::array<std::uint64_t, bounds.size() + 1> buckets{};
  std::uint64_t count = 0;  // the sum of buckets, always
  double sum_seconds = 0;
};

// What recovery runs of this TM (at start, in the background, recover_now()) did, since it opened.
struct recovery_statistics {
  std::uint64_t runs = 0;
  std::uint64_t failed_runs = 0;           // runs that threw (the log could not be read, ...)
  std::uint64_t committed = 0;             // XA branches committed following a COMMIT decision
  std::uint64_t rolled_back = 0;           // XA branches rolled back (presumed abort, marker A)
  std::uint64_t unresolved = 0;            // branches left for a later run, summed over runs
  std::uint64_t heuristic = 0;             // branches (XA or TCC) that did the opposite of the decision
  std::uint64_t tcc_confirmed = 0;         // TCC branches confirmed
  std::uint64_t tcc_cancelled = 0;         // TCC branches cancelled
  std::uint64_t decisions_completed = 0;   // decisions forgotten because every branch was done
  std::int64_t last_run_unix_ms = 0;       // when the last run ended (wall clock); 0: none yet
  // The last run's leftovers: unresolved branches plus unreachable or mismatched RMs (0: clean).
  std::uint64_t last_run_outstanding = 0;
};

// A snapshot of a transaction manager's counters (transaction_manager::statistics()). Each value
// was exact at some instant during the call, but not all at the same instant: a transaction
// ending meanwhile may show in its outcome and not yet in in_flight, or in a histogram and not
// yet in its counter. Counters never decrease; within one histogram, count equals the sum of
// its buckets. With no transaction and no recovery running, the snapshot is exact.
struct XATM_EXPORT tm_statistics {
  std::uint64_t committed = 0;  // two-phase and one-phase commits reported committed
  std::uint64_t one_phase = 0;  // of which needed no prepare and no log record
  std::uint64_t rolled_back = 0;
  std::uint64_t completion_pending = 0;  // decisions left to recovery
  std::uint64_t decisions_logged = 0;    // COMMIT records made durable
  std::uint64_t log_batches = 0;         // SQLite transactions (= fsyncs) the log committed,
                                         // including batches that only forgot completed decisions

  // Transactions by outcome and cause: transactions[i] counts outcome_kinds[i]. The fields above
  // are sums of these (committed: every committed cause; rolled_back: every rolled_back cause).
  // A transaction rolled back before it enlisted anything counts nowhere.
  std::array<std::uint64_t, outcome_kinds.size()> transactions{};
  // Begun and not yet ended (committing ones included).
  std::uint64_t in_flight = 0;
  // Decisions (COMMIT records, three-phase pre-commit notes) in the log not yet forgotten: their
  // branches are not all known complete, or their completion is still queued (written within
  // about 50 ms, not forced).
  std::uint64_t pending_decisions = 0;
  recovery_statistics recovery{};
  // Indexed by commit_phase. A phase is observed when it succeeded; transaction for every
  // transaction counted in `transactions`.
  std::array<latency_histogram, commit_phase_count> phases{};

  // transactions[] for one (outcome, cause); 0 for a pair not in outcome_kinds.
  std::uint64_t count(transaction_outcome outcome, outcome_cause cause) const noexcept;
  // Every cause of one outcome together.
  std::uint64_t count(transaction_outcome outcome) const noexcept;
  const latency_histogram& phase(commit_phase which) const noexcept { return phases[static_cast<std::size_t>(which)]; }
};

// transaction_manager::health(): can this TM commit, and is recovery behind?
struct tm_health {
  // False once a decision-log write failed: every commit is refused with log_failure_error until
  // the process restarts and recovery reads the log (docs/faults.md).
  bool log_usable = true;
  std::string log_failure;  // why the log failed; empty while usable
  // The last recovery run left something (an unreachable RM, a branch it could not resolve, a
  // heuristic outcome): recovery_outstanding_items says how much; a later run retries.
  bool recovery_outstanding = false;
  std::uint64_t recovery_outstanding_items = 0;
  std::uint64_t pending_decisions = 0;  // as tm_statistics::pending_decisions
  std::int64_t last_recovery_unix_ms = 0;

  // Commits are possible: the log is usable. (Outstanding recovery work does not stop commits.)
  bool ok() const noexcept { return log_usable; }
};

}  // namespace xatm
