// The names and look-ups of xatm/statistics.h.
#include "xatm/statistics.h"

namespace xatm {

const char* transaction_outcome_name(transaction_outcome outcome) noexcept {
  switch (outcome) {
    case transaction_outcome::committed: return "committed";
    case transaction_outcome::completion_pending: return "completion_pending";
    case transaction_outcome::rolled_back: return "rolled_back";
    case transaction_outcome::in_doubt: return "in_doubt";
    case transaction_outcome::heuristic: return "heuristic";
  }
  return "unknown";
}

const char* outcome_cause_name(outcome_cause cause) noexcept {
  switch (cause) {
    case outcome_cause::one_phase: return "one_phase";
    case outcome_cause::two_phase: return "two_phase";
    case outcome_cause::three_phase: return "three_phase";
    case outcome_cause::commit_marker: return "commit_marker";
    case outcome_cause::application: return "application";
    case outcome_cause::no_vote: return "no_vote";
    case outcome_cause::timeout: return "timeout";
    case outcome_cause::configuration: return "configuration";
    case outcome_cause::log_failure: return "log_failure";
    case outcome_cause::terminated: return "terminated";
    case outcome_cause::reply_lost: return "reply_lost";
    case outcome_cause::marker_unknown: return "marker_unknown";
    case outcome_cause::rm_rolled_back: return "rm_rolled_back";
    case outcome_cause::tcc_refused: return "tcc_refused";
  }
  return "unknown";
}

const char* commit_phase_name(commit_phase phase) noexcept {
  switch (phase) {
    case commit_phase::prepare: return "prepare";
    case commit_phase::decision: return "decision";
    case commit_phase::commit: return "commit";
    case commit_phase::transaction: return "transaction";
  }
  return "unknown";
}

std::uint64_t tm_statistics::count(transaction_outcome outcome, outcome_cause cause) const noexcept {
  for (std::size_t i = 0; i < outcome_kinds.size(); ++i) {
    if (outcome_kinds[i].outcome == outcome && outcome_kinds[i].cause == cause) return transactions[i];
  }
  return 0;
}

std::uint64_t tm_statistics::count(transaction_outcome outcome) const noexcept {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < outcome_kinds.size(); ++i) {
    if (outcome_kinds[i].outcome == outcome) total += transactions[i];
  }
  return total;
}

}  // namespace xatm
