// Micro-benchmark: the protocol engine's own CPU cost per global transaction, over the test
// testing library's scripted RM (lib/testing/fake_rm.h) with zero latency, so that no I/O but the
// decision log's is left. The target (docs/performance.md): <= 10 us of CPU per 2-branch commit.
//
//   BM_fake_verbs        the same verbs driven by hand, no TM (begin_call/drive_calls as the engine
//                        does): what the fake RM and the state machine cost by themselves
//   BM_one_phase_commit  begin, enlist 2, commit with one branch read-only: no prepare, no log
//   BM_two_phase_commit  begin, enlist 2, commit: prepare, decision log record, commit, completion
//
// CPU is the whole process's (MeasureProcessCPUTime): the log's background thread is included. The
// log lives on /dev/shm when it exists (its fsync is then free: the disk's cost is what
// xatm-decision-log-bench and xatm-bench measure), else under $TMPDIR. The argument of each
// benchmark is the logging setup: 0 = Boost.Log disabled and xatm's threshold off, 1 = xatm's
// records routed at warning (xatm::log_to_boost_log) into a sink that keeps warnings and errors
// (a service's usual setup: every debug statement of the engine is still checked, by xatm's
// threshold).
//
//   xatm-engine-bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <boost/log/core.hpp>
#include <boost/log/expressions.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
#include <boost/log/trivial.hpp>
#include <boost/make_shared.hpp>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <span>
#include <string>

#include "core/tm_access.h"
#include "testing/fake_rm.h"
#include "xatm/logging.h"
#include "xatm/transaction_manager.h"

namespace {

using namespace xatm;
using xatm::testing::fake_rm;
using xatm::testing::fake_server;

std::filesystem::path make_dir() {
  const char* tmp = std::getenv("TMPDIR");
  const std::string parent = std::filesystem::is_directory("/dev/shm") ? "/dev/shm"
                             : tmp != nullptr && *tmp != '\0'          ? tmp
                                                                       : "/tmp";
  std::string pattern = parent + "/xatm-engine-bench.XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::cerr << "cannot create a temp dir in " << parent << "\n";
    std::exit(3);
  }
  return pattern;
}

// Two scripted RMs registered with a TM whose log is on a fast dir.
struct engine {
  std::filesystem::path dir = make_dir();
  std::shared_ptr<std::vector<std::string>> journal = std::make_shared<std::vector<std::string>>();
  std::shared_ptr<fake_server> server1 = std::make_shared<fake_server>();
  std::shared_ptr<fake_server> server2 = std::make_shared<fake_server>();
  std::unique_ptr<transaction_manager> tm;
  std::unique_ptr<fake_rm> rm1;
  std::unique_ptr<fake_rm> rm2;

  engine() {
    // No background recovery: it would scan the fake servers from its own thread while the
    // benchmark changes them (the fake is single-threaded), and it is not the commit path's cost.
    tm = std::make_unique<transaction_manager>(tm_options{.tm_id = "engine",
                                                          .log_path = (dir / "decisions.db").string(),
                                                          .recovery_interval = std::chrono::milliseconds(0)});
    for (auto [name, server] : {std::pair{"rm1", server1}, std::pair{"rm2", server2}}) {
      detail::tm_access::register_rm(
          *tm, name, [this, name = std::string(name), server = server]() -> result<std::unique_ptr<resource_manager>> {
            return std::unique_ptr<resource_manager>(std::make_unique<fake_rm>(name, server, journal));
          });
    }
    rm1 = std::make_unique<fake_rm>("rm1", server1, journal);
    rm2 = std::make_unique<fake_rm>("rm2", server2, journal);
  }
  ~engine() {
    rm1.reset();
    rm2.reset();
    tm.reset();
    std::filesystem::remove_all(dir);
  }

  // The fake keeps every call and every finished branch; dropping them now and then keeps its
  // own cost flat (it is not the engine's).
  void trim(std::int64_t iteration) {
    if (iteration % 1024 != 0) return;
    journal->clear();
    for (auto* server : {server1.get(), server2.get()}) {
      server->committed.clear();
      server->rolled_back.clear();
    }
  }
};

// The benchmark argument: how Boost.Log is set up while the benchmark runs.
struct log_setup {
  explicit log_setup(std::int64_t kind) {
    auto core = boost::log::core::get();
    if (kind == 0) {
      xatm::log_to_boost_log(xatm::log_level::off);
      core->set_logging_enabled(false);
      return;
    }
    xatm::log_to_boost_log(xatm::log_level::warning);
    core->set_logging_enabled(true);
    using sink_type = boost::log::sinks::synchronous_sink<boost::log::sinks::text_ostream_backend>;
    sink_ = boost::make_shared<sink_type>();  // no stream: whatever passes is formatted, not shown
    sink_->set_filter(boost::log::trivial::severity >= boost::log::trivial::warning);
    core->add_sink(sink_);
  }
  ~log_setup() {
    auto core = boost::log::core::get();
    if (sink_) core->remove_sink(sink_);
    core->set_logging_enabled(false);
    xatm::log_to_boost_log(xatm::log_level::off);
  }
  boost::shared_ptr<boost::log::sinks::synchronous_sink<boost::log::sinks::text_ostream_backend>> sink_;
};

void BM_fake_verbs(benchmark::State& state) {
  log_setup logging(state.range(0));
  engine e;
  resource_manager* both[] = {e.rm1.get(), e.rm2.get()};
  std::int64_t n = 0;
  auto call_all = [&](xa_verb verb, const xid& x1, const xid& x2) {
    const xid* ids[] = {&x1, &x2};
    for (int k = 0; k < 2; ++k) {
      if (auto sent = both[k]->begin_call(verb, *ids[k]); !sent) state.SkipWithError("begin_call failed");
    }
    (void)drive_calls(both, std::nullopt);  // zero latency: never times out
    for (auto* rm : both) {
      if (!rm->finish_call().ok()) state.SkipWithError("verb failed");
    }
  };
  for (auto _ : state) {
    const std::string gtrid = "engine.1." + std::to_string(++n);
    const xid x1(xatm_format_id, gtrid, "1");
    const xid x2(xatm_format_id, gtrid, "2");
    if (!e.rm1->start(x1).ok() || !e.rm2->start(x2).ok()) state.SkipWithError("start failed");
    call_all(xa_verb::end, x1, x2);
    call_all(xa_verb::prepare, x1, x2);
    call_all(xa_verb::commit, x1, x2);
    e.trim(n);
  }
}

// One global transaction per iteration: begin, enlist both RMs, commit. Answers how many ran.
std::int64_t run_commits(benchmark::State& state, engine& e) {
  std::int64_t n = 0;
  for (auto _ : state) {
    auto tx = e.tm->begin();
    tx.enlist(*e.rm1);
    tx.enlist(*e.rm2);
    benchmark::DoNotOptimize(tx.commit());
    e.trim(++n);
  }
  return n;
}

void BM_one_phase_commit(benchmark::State& state) {
  log_setup logging(state.range(0));
  engine e;
  e.rm2->set_read_only(true);
  run_commits(state, e);
}

void BM_two_phase_commit(benchmark::State& state) {
  log_setup logging(state.range(0));
  engine e;
  const auto before = e.tm->statistics();
  const std::int64_t n = run_commits(state, e);
  const auto after = e.tm->statistics();
  state.counters["log_batches/commit"] =
      static_cast<double>(after.log_batches - before.log_batches) / static_cast<double>(std::max<std::int64_t>(n, 1));
}

}  // namespace

// The argument is the log setup (see log_setup).
BENCHMARK(BM_fake_verbs)->ArgName("log")->Arg(0)->Arg(1)->MeasureProcessCPUTime()->UseRealTime();
BENCHMARK(BM_one_phase_commit)->ArgName("log")->Arg(0)->Arg(1)->MeasureProcessCPUTime()->UseRealTime();
BENCHMARK(BM_two_phase_commit)->ArgName("log")->Arg(0)->Arg(1)->MeasureProcessCPUTime()->UseRealTime();

BENCHMARK_MAIN();
