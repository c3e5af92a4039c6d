// Metrics (docs/metrics.md) over scripted RMs (testing/fake_rm.h) and the fault-injecting log VFS:
// each outcome the engine can reach without a marker table, driven for real through commit(),
// counted under its cause; the in-flight and pending-decision gauges back at 0; histogram counts
// equal to the transactions that reached each phase; recovery's figures and health() after an
// unreachable RM and after a failed log write; and the Prometheus text checked line by line.
// The three-phase and commit-marker causes (terminated, marker_unknown) and a TCC confirm refused
// (tcc_refused) need marker tables or a participant: they share the counting path tested here.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/tm_access.h"
#include "core/tm_metrics.h"
#include "support/prometheus_text.h"
#include "support/temp_dir.h"
#include "testing/fake_rm.h"
#include "testing/faulty_vfs.h"
#include "xatm/error.h"
#include "xatm/metrics.h"
#include "xatm/transaction_manager.h"

using namespace xatm;  // NOLINT(google-build-using-namespace): test file
using xatm::testing::fake_rm;
using xatm::testing::fake_server;

namespace {

// Two scripted RMs "rm1", "rm2" on a TM of their own. The TM's own connections are new fakes on
// the same simulated servers; `reachable` false makes them fail to connect (an RM down).
struct metrics_bench {
  test::temp_dir dir;
  std::vector<std::shared_ptr<fake_server>> servers{std::make_shared<fake_server>(), std::make_shared<fake_server>()};
  std::vector<std::unique_ptr<fake_rm>> rms;
  std::shared_ptr<std::atomic<bool>> reachable = std::make_shared<std::atomic<bool>>(true);
  std::unique_ptr<transaction_manager> tm;

  explicit metrics_bench(tm_options options = {}, const detail::tm_wiring& wiring = {}) {
    options.tm_id = "metrics-tm";
    options.log_path = (dir.path / "decisions.db").string();
    options.recovery_interval = std::chrono::milliseconds(0);  // fakes are not thread-safe
    options.commit_retry_window = std::chrono::milliseconds(100);
    tm = detail::tm_access::open(options, wiring);
    for (std::size_t i = 0; i < servers.size(); ++i) {
      const std::string name = "rm" + std::to_string(i + 1);
      auto server = servers[i];
      auto up = reachable;
      detail::tm_access::register_rm(*tm, name, [name, server, up]() -> result<std::unique_ptr<resource_manager>> {
        if (!up->load()) return make_failure(xa_code::rm_failure, "scripted: server unreachable", name);
        return std::unique_ptr<resource_manager>(std::make_unique<fake_rm>(name, server).release());
      });
      rms.push_back(std::make_unique<fake_rm>(name, server));
    }
  }

  global_transaction begin(std::size_t branches = 2) {
    auto tx = tm->begin();
    for (std::size_t i = 0; i < branches; ++i) tx.enlist(*rms[i]);
    return tx;
  }

  // New application connections to the same servers.
  void fresh_connections() {
    for (std::size_t i = 0; i < rms.size(); ++i) rms[i] = std::make_unique<fake_rm>("rm" + std::to_string(i + 1), servers[i]);
  }

  // Waits (bounded) until the completions of finished decisions reached the log.
  void wait_for_no_pending_decision() const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (tm->statistics().pending_decisions != 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
};

std::uint64_t total(const tm_statistics& stats) {
  std::uint64_t sum = 0;
  for (auto n : stats.transactions) sum += n;
  return sum;
}

}  // namespace

TEST_CASE("metrics: every outcome reachable over XA branches is counted under its cause") {
  metrics_bench b;
  // committed, two branches: two-phase
  REQUIRE(b.begin().commit() == commit_outcome::committed);
  // committed, one branch: one-phase
  REQUIRE(b.begin(1).commit() == commit_outcome::committed);
  // rolled back by the application, explicitly and by destruction; an empty one counts nowhere
  b.begin().rollback();
  { auto abandoned = b.begin(); }
  b.tm->begin().rollback();
  // an RM votes no
  b.rms[1]->script(xa_verb::prepare, make_failure(xa_code::rollback_integrity, "scripted: constraint violated"));
  CHECK_THROWS_AS((void)b.begin().commit(), rolled_back_error);
  // an RM that cannot prepare as configured (XAER_INVAL at prepare)
  b.rms[1]->script(xa_verb::prepare, make_failure(xa_code::invalid, "scripted: max_prepared_transactions = 0"));
  CHECK_THROWS_AS((void)b.begin().commit(), configuration_error);
  // a one-phase commit whose reply is lost
  b.rms[0]->script(xa_verb::commit_one_phase, make_failure(xa_code::rm_failure, "scripted: connection lost"));
  CHECK_THROWS_AS((void)b.begin(1).commit(), in_doubt_error);
  b.fresh_connections();  // the lost reply closed rm1's connection
  // an RM rolls its branch back after the commit decision
  b.rms[1]->script(xa_verb::commit, make_failure(xa_code::rollback_other, "scripted: heuristic rollback"));
  CHECK_THROWS_AS((void)b.begin().commit(), heuristic_error);
  b.wait_for_no_pending_decision();

  const tm_statistics stats = b.tm->statistics();
  CHECK(stats.count(transaction_outcome::committed, outcome_cause::two_phase) == 1);
  CHECK(stats.count(transaction_outcome::committed, outcome_cause::one_phase) == 1);
  CHECK(stats.count(transaction_outcome::rolled_back, outcome_cause::application) == 2);
  CHECK(stats.count(transaction_outcome::rolled_back, outcome_cause::no_vote) == 1);
  CHECK(stats.count(transaction_outcome::rolled_back, outcome_cause::configuration) == 1);
  CHECK(stats.count(transaction_outcome::in_doubt, outcome_cause::reply_lost) == 1);
  CHECK(stats.count(transaction_outcome::heuristic, outcome_cause::rm_rolled_back) == 1);
  CHECK(total(stats) == 8);
  // The six fields from before causes were told apart keep their meaning.
  CHECK(stats.committed == 2);
  CHECK(stats.one_phase == 1);
  CHECK(stats.rolled_back == 4);
  CHECK(stats.completion_pending == 0);
  CHECK(stats.decisions_logged == 2);  // the committed and the heuristic two-phase transactions
  // Gauges back at rest.
  CHECK(stats.in_flight == 0);
  CHECK(stats.pending_decisions == 0);
  // Histograms: every counted transaction; each phase as often as it succeeded.
  CHECK(stats.phase(commit_phase::transaction).count == 8);
  CHECK(stats.phase(commit_phase::prepare).count == 2);   // the committed and the heuristic one
  CHECK(stats.phase(commit_phase::decision).count == 2);
  CHECK(stats.phase(commit_phase::commit).count == 2);    // two-phase and the one-phase commit
  for (const latency_histogram& h : stats.phases) {
    std::uint64_t sum = 0;
    for (auto n : h.buckets) sum += n;
    CHECK(sum == h.count);
    CHECK(h.sum_seconds >= 0);
  }
  CHECK(b.tm->health().ok());
}

TEST_CASE("metrics: the in-flight gauge counts transactions begun and not ended, committing ones included") {
  metrics_bench b;
  auto first = b.begin();
  auto second = b.tm->begin();
  CHECK(b.tm->statistics().in_flight == 2);
  std::uint64_t during_commit = 0;
  b.rms[1]->on_send([&](xa_verb verb, const xid&) {
    if (verb == xa_verb::prepare) during_commit = b.tm->statistics().in_flight;
  });
  REQUIRE(first.commit() == commit_outcome::committed);
  CHECK(during_commit == 2);
  CHECK(b.tm->statistics().in_flight == 1);
  auto moved = std::move(second);  // a move hands the transaction over, it does not end it
  CHECK(b.tm->statistics().in_flight == 1);
  moved.rollback();
  CHECK(b.tm->statistics().in_flight == 0);
}

TEST_CASE("metrics: timeouts count as rolled back for timeout") {
  SUBCASE("transaction_timeout") {
    tm_options options;
    options.transaction_timeout = std::chrono::milliseconds(1);
    metrics_bench b(options);
    auto tx = b.begin();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    CHECK_THROWS_AS((void)tx.commit(), timeout_error);
    CHECK(b.tm->statistics().count(transaction_outcome::rolled_back, outcome_cause::timeout) == 1);
  }
  SUBCASE("prepare_timeout") {
    tm_options options;
    options.prepare_timeout = std::chrono::milliseconds(100);
    metrics_bench b(options);
    auto tx = b.begin();
    b.rms[1]->on_send([&](xa_verb verb, const xid&) {
      if (verb == xa_verb::prepare) b.rms[1]->set_latency(std::chrono::milliseconds(2000));
    });
    CHECK_THROWS_AS((void)tx.commit(), timeout_error);
    const auto stats = b.tm->statistics();
    CHECK(stats.count(transaction_outcome::rolled_back, outcome_cause::timeout) == 1);
    CHECK(stats.rolled_back == 1);
    CHECK(stats.phase(commit_phase::prepare).count == 0);  // a phase that failed is not observed
    CHECK(stats.phase(commit_phase::transaction).count == 1);
    CHECK(stats.in_flight == 0);
  }
}

TEST_CASE("metrics: completion pending, then recovery resolves the branch; health shows the outstanding work") {
  metrics_bench b;
  auto tx = b.begin();
  b.rms[1]->script(xa_verb::commit, make_failure(xa_code::rm_failure, "scripted: connection lost"));
  b.reachable->store(false);  // the retries' new connections fail too
  CHECK(tx.commit() == commit_outcome::completion_pending);
  auto stats = b.tm->statistics();
  CHECK(stats.count(transaction_outcome::completion_pending, outcome_cause::two_phase) == 1);
  CHECK(stats.completion_pending == 1);
  CHECK(stats.pending_decisions == 1);
  CHECK(stats.in_flight == 0);
  const auto runs_before = stats.recovery.runs;  // the first begin() ran one

  (void)b.tm->recover_now();  // rm2 still down: nothing resolved, work outstanding
  tm_health health = b.tm->health();
  CHECK(health.ok());
  CHECK(health.recovery_outstanding);
  CHECK(health.recovery_outstanding_items >= 1);
  CHECK(health.pending_decisions == 1);

  b.reachable->store(true);
  (void)b.tm->recover_now();
  b.wait_for_no_pending_decision();
  stats = b.tm->statistics();
  CHECK(stats.recovery.runs == runs_before + 2);
  CHECK(stats.recovery.committed == 1);
  CHECK(stats.recovery.rolled_back == 0);
  CHECK(stats.recovery.decisions_completed == 1);
  CHECK(stats.recovery.last_run_outstanding == 0);
  CHECK(stats.recovery.last_run_unix_ms > 0);
  CHECK(stats.pending_decisions == 0);
  CHECK(b.servers[1]->committed.size() == 1);
  health = b.tm->health();
  CHECK_FALSE(health.recovery_outstanding);
}

TEST_CASE("metrics: a failed log write: in doubt, later commits refused as log_failure, health says why") {
  testing::register_faulty_vfs();
  metrics_bench b({}, {.log_vfs = testing::faulty_vfs_name});
  REQUIRE(b.begin().commit() == commit_outcome::committed);
  CHECK(b.tm->health().log_usable);
  testing::set_sync_failure(true);
  CHECK_THROWS_AS((void)b.begin().commit(), log_failure_error);  // undecided until restart
  testing::clear_faults();
  b.fresh_connections();  // the undecided transaction's branches stay prepared on the old ones
  CHECK_THROWS_AS((void)b.begin().commit(), log_failure_error);  // refused: the log failed earlier
  const auto stats = b.tm->statistics();
  CHECK(stats.count(transaction_outcome::in_doubt, outcome_cause::log_failure) == 1);
  CHECK(stats.count(transaction_outcome::rolled_back, outcome_cause::log_failure) == 1);
  CHECK(stats.in_flight == 0);
  const tm_health health = b.tm->health();
  CHECK_FALSE(health.ok());
  CHECK_FALSE(health.log_usable);
  CHECK_FALSE(health.log_failure.empty());
  const auto text = render_prometheus(stats, health);
  const auto samples = test::parse_prometheus_text(text);
  CHECK(samples.at("xatm_log_usable") == 0);
  CHECK(samples.at(R"(xatm_transactions_total{outcome="in_doubt",cause="log_failure"})") == 1);
}

TEST_CASE("metrics: the Prometheus text parses, with escaped labels, and matches the snapshot") {
  metrics_bench b;
  REQUIRE(b.begin().commit() == commit_outcome::committed);
  b.begin().rollback();
  const tm_statistics stats = b.tm->statistics();
  const std::string text =
      render_prometheus(stats, b.tm->health(), {{"tm_id", b.tm->tm_id()}, {"zone", "a\"b\\c\nd"}});
  INFO(text);
  const auto samples = test::parse_prometheus_text(text);
  const std::string common = R"(tm_id="metrics-tm",zone="a\"b\\c\nd")";
  CHECK(samples.at("xatm_transactions_total{" + common + R"(,outcome="committed",cause="two_phase"})") == 1);
  CHECK(samples.at("xatm_transactions_total{" + common + R"(,outcome="rolled_back",cause="application"})") == 1);
  CHECK(samples.at("xatm_transactions_total{" + common + R"(,outcome="rolled_back",cause="timeout"})") == 0);
  CHECK(samples.at("xatm_in_flight_transactions{" + common + "}") == 0);
  CHECK(samples.at("xatm_log_usable{" + common + "}") == 1);
  CHECK(samples.at("xatm_recovery_runs_total{" + common + "}") == static_cast<double>(stats.recovery.runs));
  CHECK(samples.at("xatm_phase_duration_seconds_count{" + common + R"(,phase="transaction"})") == 2);
  CHECK(samples.at("xatm_phase_duration_seconds_bucket{" + common + R"(,phase="prepare",le="+Inf"})") == 1);
  CHECK(samples.at("xatm_phase_duration_seconds_bucket{" + common + R"(,phase="prepare",le="0.005"})") <= 1);
  CHECK(text.find("# TYPE xatm_phase_duration_seconds histogram\n") != std::string::npos);
  CHECK(text.find("# TYPE xatm_transactions_total counter\n") != std::string::npos);

  CHECK_THROWS_AS((void)render_prometheus(stats, {}, {{"le", "x"}}), invalid_argument_error);
  CHECK_THROWS_AS((void)render_prometheus(stats, {}, {{"9lives", "x"}}), invalid_argument_error);
  CHECK_THROWS_AS((void)render_prometheus(stats, {}, {{"", "x"}}), invalid_argument_error);
}

TEST_CASE("metrics: histogram buckets follow their bounds") {
  // The counting path on its own: an observation lands in the first bucket whose bound holds it.
  detail::tm_metrics metrics;
  const auto now = std::chrono::steady_clock::now();
  metrics.finished(transaction_outcome::in_doubt, outcome_cause::marker_unknown, now);
  metrics.finished(transaction_outcome::rolled_back, outcome_cause::terminated, now);
  metrics.finished(transaction_outcome::heuristic, outcome_cause::tcc_refused, now);
  metrics.phase_done(commit_phase::commit, now - std::chrono::milliseconds(3));
  metrics.phase_done(commit_phase::commit, now - std::chrono::seconds(100));
  tm_statistics stats;
  metrics.fill(stats);
  CHECK(stats.count(transaction_outcome::in_doubt, outcome_cause::marker_unknown) == 1);
  CHECK(stats.count(transaction_outcome::rolled_back, outcome_cause::terminated) == 1);
  CHECK(stats.count(transaction_outcome::heuristic, outcome_cause::tcc_refused) == 1);
  CHECK(stats.rolled_back == 1);
  const latency_histogram& commit = stats.phase(commit_phase::commit);
  CHECK(commit.count == 2);
  CHECK(commit.buckets[3] == 1);  // (0.0025, 0.005]
  CHECK(commit.buckets.back() == 1);  // above 60 s: +Inf only
  CHECK(commit.sum_seconds >= 100.003);
  CHECK(test::parse_prometheus_text(render_prometheus(stats, {})).size() > 0);
}
