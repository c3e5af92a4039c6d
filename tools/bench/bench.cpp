#include "bench/bench.h"

#include <algorithm>
#include <cmath>

namespace xatm::bench {

const char* mode_name(mode m) noexcept {
  switch (m) {
    case mode::local: return "local";
    case mode::raw_xa: return "raw-xa";
    case mode::xa: return "xa";
    case mode::xa_early: return "xa-early";
    case mode::three_phase: return "3pc";
    case mode::commit_marker: return "marker";
    case mode::commit_marker_early: return "marker-early";
    case mode::tcc: return "tcc";
  }
  return "?";
}

std::optional<mode> parse_mode(std::string_view name) {
  for (mode m : {mode::local, mode::raw_xa, mode::xa, mode::xa_early, mode::three_phase, mode::commit_marker,
                 mode::commit_marker_early, mode::tcc}) {
    if (name == mode_name(m)) return m;
  }
  return std::nullopt;
}

const char* workload_name(workload_kind kind) noexcept {
  switch (kind) {
    case workload_kind::transfer: return "transfer";
    case workload_kind::read_write: return "read-write";
    case workload_kind::pg_pg: return "pg-pg";
  }
  return "?";
}

std::optional<workload_kind> parse_workload(std::string_view name) {
  for (workload_kind kind : {workload_kind::transfer, workload_kind::read_write, workload_kind::pg_pg}) {
    if (name == workload_name(kind)) return kind;
  }
  return std::nullopt;
}

std::string clients_text(int clients) { return std::to_string(clients) + (clients == 1 ? " client" : " clients"); }

void measurement::finish() { std::sort(latencies_us.begin(), latencies_us.end()); }

double measurement::percentile_ms(double fraction) const {
  if (latencies_us.empty()) return 0;
  // Nearest rank: the smallest latency that at least `fraction` of the transactions did not exceed.
  const auto rank = static_cast<std::size_t>(std::ceil(fraction * static_cast<double>(latencies_us.size())));
  const std::size_t index = std::clamp<std::size_t>(rank, 1, latencies_us.size()) - 1;
  return latencies_us[index] / 1000.0;
}

std::optional<double> measurement::log_fsyncs_per_tx() const {
  if (m == mode::local || m == mode::raw_xa) return std::nullopt;
  if (tm_committed == 0) return 0.0;
  return static_cast<double>(log_batches) / static_cast<double>(tm_committed);
}

const measurement* run_result::find(workload_kind w, mode m, int clients) const {
  for (const measurement& cell : cells) {
    if (cell.workload == w && cell.m == m && cell.clients == clients) return &cell;
  }
  return nullptr;
}

}  // namespace xatm::bench
