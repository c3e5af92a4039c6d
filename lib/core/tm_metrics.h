// Internal: the counters behind tm_statistics (include/xatm/statistics.h), owned by tm_core.
// Everything on the commit path is a relaxed atomic increment: no lock, no allocation. A
// histogram is one atomic per fixed bucket plus a sum in nanoseconds; its snapshot derives
// `count` from the buckets, so a scrape never sees a count that disagrees with them.
// Thread-safe: any thread may record and snapshot at once.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

#include "xatm/recovery.h"
#include "xatm/statistics.h"

namespace xatm::detail {

class atomic_histogram {
 public:
  void observe(std::chrono::steady_clock::duration elapsed) noexcept;
  latency_histogram snapshot() const noexcept;

 private:
  std::array<std::atomic<std::uint64_t>, latency_histogram::bounds.size() + 1> buckets_{};
  std::atomic<std::uint64_t> sum_nanoseconds_{0};
};

class tm_metrics {
 public:
  using clock = std::chrono::steady_clock;

  // A transaction ended with `outcome` for `cause` (a pair of outcome_kinds), `started` at begin().
  void finished(transaction_outcome outcome, outcome_cause cause, clock::time_point started) noexcept;
  void phase_done(commit_phase phase, clock::time_point since) noexcept;
  void begun() noexcept { in_flight_.fetch_add(1, std::memory_order_relaxed); }
  void ended() noexcept { in_flight_.fetch_sub(1, std::memory_order_relaxed); }
  // One recovery run's report, or a run that threw.
  void recovery_ran(const recovery_report& report) noexcept;
  void recovery_failed() noexcept;

  // Everything but the store's figures (decisions_logged, log_batches, pending_decisions).
  void fill(tm_statistics& stats) const noexcept;

 private:
  std::array<std::atomic<std::uint64_t>, outcome_kinds.size()> transactions_{};
  std::atomic<std::uint64_t> in_flight_{0};
  std::array<atomic_histogram, commit_phase_count> phases_{};

  std::atomic<std::uint64_t> recovery_runs_{0};
  std::atomic<std::uint64_t> recovery_failed_runs_{0};
  std::atomic<std::uint64_t> recovery_committed_{0};
  std::atomic<std::uint64_t> recovery_rolled_back_{0};
  std::atomic<std::uint64_t> recovery_unresolved_{0};
  std::atomic<std::uint64_t> recovery_heuristic_{0};
  std::atomic<std::uint64_t> recovery_tcc_confirmed_{0};
  std::atomic<std::uint64_t> recovery_tcc_cancelled_{0};
  std::atomic<std::uint64_t> recovery_decisions_completed_{0};
  std::atomic<std::int64_t> recovery_last_run_unix_ms_{0};
  std::atomic<std::uint64_t> recovery_last_outstanding_{0};
};

}  // namespace xatm::detail
