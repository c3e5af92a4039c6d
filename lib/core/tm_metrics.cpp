// The counters behind tm_statistics (tm_metrics.h).
#include "core/tm_metrics.h"

#include <algorithm>
#include <string_view>

namespace xatm::detail {

namespace {

constexpr std::size_t index_of(transaction_outcome outcome, outcome_cause cause) noexcept {
  for (std::size_t i = 0; i < outcome_kinds.size(); ++i) {
    if (outcome_kinds[i].outcome == outcome && outcome_kinds[i].cause == cause) return i;
  }
  return outcome_kinds.size();
}

std::int64_t now_unix_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void atomic_histogram::observe(std::chrono::steady_clock::duration elapsed) noexcept {
  const auto nanoseconds = std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count());
  const double seconds = static_cast<double>(nanoseconds) / 1e9;
  const auto& bounds = latency_histogram::bounds;
  const auto bucket = static_cast<std::size_t>(std::lower_bound(bounds.begin(), bounds.end(), seconds) - bounds.begin());
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_nanoseconds_.fetch_add(static_cast<std::uint64_t>(nanoseconds), std::memory_order_relaxed);
}

latency_histogram atomic_histogram::snapshot() const noexcept {
  latency_histogram result;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    result.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
    result.count += result.buckets[i];
  }
  result.sum_seconds = static_cast<double>(sum_nanoseconds_.load(std::memory_order_relaxed)) / 1e9;
  return result;
}

void tm_metrics::finished(transaction_outcome outcome, outcome_cause cause, clock::time_point started) noexcept {
  const std::size_t i = index_of(outcome, cause);
  if (i < transactions_.size()) transactions_[i].fetch_add(1, std::memory_order_relaxed);
  phase_done(commit_phase::transaction, started);
}

void tm_metrics::phase_done(commit_phase phase, clock::time_point since) noexcept {
  phases_[static_cast<std::size_t>(phase)].observe(clock::now() - since);
}

void tm_metrics::recovery_ran(const recovery_report& report) noexcept {
  std::uint64_t outstanding = report.unreachable_rms.size() + report.identity_mismatches.size();
  for (const recovery_item& item : report.items) {
    const bool tcc = std::string_view(item.xid).starts_with("tcc ");
    switch (item.result) {
      case recovery_result::committed:
        (tcc ? recovery_tcc_confirmed_ : recovery_committed_).fetch_add(1, std::memory_order_relaxed);
        break;
      case recovery_result::rolled_back:
        (tcc ? recovery_tcc_cancelled_ : recovery_rolled_back_).fetch_add(1, std::memory_order_relaxed);
        break;
      case recovery_result::unresolved:
        recovery_unresolved_.fetch_add(1, std::memory_order_relaxed);
        ++outstanding;
        break;
      case recovery_result::heuristic:
        recovery_heuristic_.fetch_add(1, std::memory_order_relaxed);
        ++outstanding;
        break;
      default: break;
    }
  }
  recovery_decisions_completed_.fetch_add(report.completed.size(), std::memory_order_relaxed);
  recovery_last_outstanding_.store(outstanding, std::memory_order_relaxed);
  recovery_last_run_unix_ms_.store(now_unix_ms(), std::memory_order_relaxed);
  recovery_runs_.fetch_add(1, std::memory_order_relaxed);
}

void tm_metrics::recovery_failed() noexcept {
  recovery_failed_runs_.fetch_add(1, std::memory_order_relaxed);
  recovery_last_run_unix_ms_.store(now_unix_ms(), std::memory_order_relaxed);
  recovery_runs_.fetch_add(1, std::memory_order_relaxed);
}

void tm_metrics::fill(tm_statistics& stats) const noexcept {
  for (std::size_t i = 0; i < transactions_.size(); ++i) {
    stats.transactions[i] = transactions_[i].load(std::memory_order_relaxed);
  }
  stats.committed = stats.count(transaction_outcome::committed);
  stats.one_phase = stats.count(transaction_outcome::committed, outcome_cause::one_phase);
  stats.rolled_back = stats.count(transaction_outcome::rolled_back);
  stats.completion_pending = stats.count(transaction_outcome::completion_pending);
  stats.in_flight = in_flight_.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < phases_.size(); ++i) stats.phases[i] = phases_[i].snapshot();
  recovery_statistics& recovery = stats.recovery;
  recovery.runs = recovery_runs_.load(std::memory_order_relaxed);
  recovery.failed_runs = recovery_failed_runs_.load(std::memory_order_relaxed);
  recovery.committed = recovery_committed_.load(std::memory_order_relaxed);
  recovery.rolled_back = recovery_rolled_back_.load(std::memory_order_relaxed);
  recovery.unresolved = recovery_unresolved_.load(std::memory_order_relaxed);
  recovery.heuristic = recovery_heuristic_.load(std::memory_order_relaxed);
  recovery.tcc_confirmed = recovery_tcc_confirmed_.load(std::memory_order_relaxed);
  recovery.tcc_cancelled = recovery_tcc_cancelled_.load(std::memory_order_relaxed);
  recovery.decisions_completed = recovery_decisions_completed_.load(std::memory_order_relaxed);
  recovery.last_run_unix_ms = recovery_last_run_unix_ms_.load(std::memory_order_relaxed);
  recovery.last_run_outstanding = recovery_last_outstanding_.load(std::memory_order_relaxed);
}

}  // namespace xatm::detail
