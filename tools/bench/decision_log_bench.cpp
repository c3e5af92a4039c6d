// Micro-benchmark: xatm's decision log alone (lib/sqlite/sqlite_decision_store.h), with 1, 16 and
// 64 threads committing decisions at once, as a TM's committers do at step 6 of docs/design.md section 4:
// record() (forced, group-committed) then mark_complete() (not forced). Reports decisions per
// second and SQLite transactions (= WAL fsyncs) per decision; BM_fsync_4k is the device's floor
// (one 4 KiB overwrite + fsync in the same dir).
//
// The log lives in a private temp dir under $XATM_BENCH_DIR (default $TMPDIR, else /tmp): put
// it on the device whose fsync you want to measure. The *_tmpfs variants use /dev/shm, where
// fsync costs nothing: what is left is SQLite and the hand-offs between committers (the writer queue,
// lib/sqlite/group_commit.h).
//
//   xatm-decision-log-bench [--benchmark_filter=...] [--benchmark_min_time=...]
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <boost/log/core.hpp>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "sqlite/sqlite_decision_store.h"

namespace {

using xatm::detail::decision_record;
using xatm::detail::sqlite_decision_store;

struct bench_log {
  std::filesystem::path dir;
  std::unique_ptr<sqlite_decision_store> log;
  std::atomic<std::uint64_t> sequence{1};
  std::string prefix;  // "<tm_id>.<incarnation>."
};

std::unique_ptr<bench_log> open_log(const std::string& parent) {
  auto opened = std::make_unique<bench_log>();
  std::string pattern = parent + "/xatm-log-bench.XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::cerr << "cannot create a temp dir in " << parent << "\n";
    std::exit(3);
  }
  opened->dir = pattern;
  auto log = sqlite_decision_store::open({(opened->dir / "decisions.db").string(), "logbench", {}});
  if (!log) {
    std::cerr << "cannot open the decision log: " << log.error().describe() << "\n";
    std::exit(3);
  }
  opened->log = std::move(log).value();
  opened->prefix = "logbench." + std::to_string(opened->log->incarnation()) + ".";
  return opened;
}

std::unique_ptr<bench_log> disk_log;
std::unique_ptr<bench_log> tmpfs_log;

void run_committers(benchmark::State& state, bench_log& target) {
  sqlite_decision_store& log = *target.log;
  const auto before = log.stats();
  decision_record decision;
  decision.branch_rms = {"payments_pg", "ledger_mariadb"};
  for (auto _ : state) {
    decision.gtrid = target.prefix + std::to_string(target.sequence.fetch_add(1, std::memory_order_relaxed));
    if (auto written = log.record(decision); !written) {
      state.SkipWithError(written.error().describe().c_str());
      break;
    }
    log.mark_complete(decision.gtrid);
  }
  state.counters["decisions/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  // Every thread has passed the loop's end barrier: the delta is this run's, all threads included.
  if (state.thread_index() == 0) {
    const auto after = log.stats();
    const double decisions = static_cast<double>(after.decisions_written - before.decisions_written);
    state.counters["fsyncs/decision"] =
        decisions > 0 ? static_cast<double>(after.batches - before.batches) / decisions : 0.0;
  }
}

void BM_decision_log(benchmark::State& state) { run_committers(state, *disk_log); }

// The device's floor, for comparison with one committer: a 4 KiB overwrite + fsync in the same
// dir (what xatm-bench prints as "log fsync").
void BM_fsync_4k(benchmark::State& state) {
  const std::string probe = (disk_log->dir / "fsync-probe").string();
  const int fd = ::open(probe.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
  std::vector<char> block(4096, 'x');
  std::int64_t n = 0;
  for (auto _ : state) {
    if (::pwrite(fd, block.data(), block.size(), (n++ % 16) * 4096) != 4096 || ::fsync(fd) != 0) {
      state.SkipWithError("write or fsync failed");
      break;
    }
  }
  ::close(fd);
  ::unlink(probe.c_str());
}
void BM_decision_log_tmpfs(benchmark::State& state) { run_committers(state, *tmpfs_log); }

}  // namespace

BENCHMARK(BM_fsync_4k)->UseRealTime();
BENCHMARK(BM_decision_log)->Threads(1)->Threads(16)->Threads(64)->UseRealTime()->MeasureProcessCPUTime();
BENCHMARK(BM_decision_log_tmpfs)->Threads(1)->Threads(16)->Threads(64)->UseRealTime()->MeasureProcessCPUTime();

int main(int argc, char** argv) {
  // The library never installs a sink; with none Boost.Log would print every record.
  boost::log::core::get()->set_logging_enabled(false);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const char* chosen = std::getenv("XATM_BENCH_DIR");
  const char* tmp = std::getenv("TMPDIR");
  const std::string parent = chosen != nullptr && *chosen != '\0' ? chosen
                             : tmp != nullptr && *tmp != '\0'     ? tmp
                                                                  : "/tmp";
  disk_log = open_log(parent);
  const bool have_tmpfs = std::filesystem::is_directory("/dev/shm");
  if (!have_tmpfs) std::cerr << "no /dev/shm: the _tmpfs variants use " << parent << " too\n";
  tmpfs_log = open_log(have_tmpfs ? "/dev/shm" : parent);
  benchmark::AddCustomContext("log_dir", parent);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  for (auto* opened : {&disk_log, &tmpfs_log}) {
    if (!*opened) continue;
    const auto dir = (*opened)->dir;
    opened->reset();  // closes the log before its files go
    std::filesystem::remove_all(dir);
  }
  return 0;
}
