// xatm-bench's outputs: the table per workload, the performance targets (docs/performance.md)
// evaluated from this run, and the JSON, CSV and SVG files. Pure functions of a run_result; main
// thread.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "bench/bench.h"

namespace xatm::bench {

// One performance target (docs/performance.md), as this run measured it.
struct target_check {
  std::string name;       // "transfer, 16 clients: xa throughput >= 0.95 x raw-xa"
  bool measured = false;  // false when the run did not include the cells it needs
  bool met = false;
  double value = 0;    // the measured ratio or time
  double limit = 0;    // what it must be (>= or <=, see name)
  std::string detail;  // the numbers behind it, and by how much it is missed
};

std::vector<target_check> evaluate_targets(const run_result& run);

// Ratios of a cell's throughput to the same workload and clients in another mode.
std::optional<double> throughput_ratio(const run_result& run, const measurement& cell, mode other);

void print_tables(std::ostream& out, const run_result& run);
void print_targets(std::ostream& out, const std::vector<target_check>& targets);

std::string to_json(const run_result& run, const std::vector<target_check>& targets);
std::string to_csv(const run_result& run);
// Throughput and p99 latency by clients, one line per mode, a row of two panels per workload.
std::string to_svg(const run_result& run);

}  // namespace xatm::bench
