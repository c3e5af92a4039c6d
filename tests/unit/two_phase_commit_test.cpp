// The protocol engine over scripted RMs: every vote and failure in every phase for 1, 2 and 3
// branches, checking the outcome, the exact XA calls each RM saw, and the write-ahead rule (no
// RM is asked to commit a prepared branch before the decision is in the log file).
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/tm_access.h"
#include "support/log_file.h"
#include "testing/fake_rm.h"
#include "testing/faulty_vfs.h"
#include "support/temp_dir.h"
#include "xatm/error.h"
#include "xatm/transaction_manager.h"

using namespace xatm;
using xatm::testing::fake_rm;
using xatm::testing::fake_server;

namespace {

using xatm::test::temp_dir;

// True when the log file holds a decision for the gtrid, read through a separate SQLite
// connection: what a recovering process would see after a crash at this instant.
bool decision_in_log_file(const std::filesystem::path& log, const std::string& gtrid) {
  auto gtrids = xatm::test::decisions_in_log_file(log);
  return std::find(gtrids.begin(), gtrids.end(), gtrid) != gtrids.end();
}

// n scripted RMs "rm1".."rmN" registered with a TM; the TM's own connections (retries) are new
// fakes on the same simulated servers and write to the same journal.
struct bench {
  temp_dir dir;
  std::filesystem::path log_path = dir.path / "decisions.db";
  std::shared_ptr<std::vector<std::string>> journal = std::make_shared<std::vector<std::string>>();
  std::vector<std::shared_ptr<fake_server>> servers;
  std::vector<std::unique_ptr<fake_rm>> rms;
  std::unique_ptr<transaction_manager> tm;
  int commits_before_decision = 0;
  int rollbacks_after_decision = 0;
  std::string gtrid;

  explicit bench(std::size_t n, tm_options options = {}, const detail::tm_wiring& wiring = {}) {
    options.tm_id = "fake-tm";
    options.recovery_interval = std::chrono::milliseconds(0);  // fake servers are not thread-safe
    options.log_path = log_path.string();
    if (options.commit_retry_window == tm_options{}.commit_retry_window) {
      options.commit_retry_window = std::chrono::milliseconds(300);
    }
    tm = detail::tm_access::open(options, wiring);
    for (std::size_t i = 0; i < n; ++i) {
      auto server = std::make_shared<fake_server>();
      std::string name = "rm" + std::to_string(i + 1);
      servers.push_back(server);
      detail::tm_access::register_rm(*tm, name, [this, name, server]() -> result<std::unique_ptr<resource_manager>> {
        return std::unique_ptr<resource_manager>(make_fake(name, server).release());
      });
      rms.push_back(make_fake(name, server));
    }
  }

  std::unique_ptr<fake_rm> make_fake(const std::string& name, const std::shared_ptr<fake_server>& server) {
    auto rm = std::make_unique<fake_rm>(name, server, journal);
    rm->on_send([this](xa_verb verb, const xid& branch) {
      bool decided = decision_in_log_file(log_path, branch.gtrid());
      if (verb == xa_verb::commit && !decided) ++commits_before_decision;
      if (verb == xa_verb::rollback && decided) ++rollbacks_after_decision;
    });
    return rm;
  }

  global_transaction begin_all() {
    auto tx = tm->begin();
    gtrid = tx.gtrid();
    for (auto& rm : rms) tx.enlist(*rm);
    return tx;
  }

  // The verbs one RM saw, in order: "start end prepare commit".
  std::string calls_of(const std::string& rm) const {
    std::string seen;
    for (const auto& line : *journal) {
      if (line.rfind(rm + " ", 0) != 0) continue;
      auto verb = line.substr(rm.size() + 1, line.rfind(' ') - rm.size() - 1);
      seen += (seen.empty() ? "" : " ") + verb;
    }
    return seen;
  }
};

enum class phase { end, prepare, commit };
enum class fault { rolled_back, connection_lost, rm_error };

failure make_fault(fault kind) {
  switch (kind) {
    case fault::rolled_back: return make_failure(xa_code::rollback_integrity, "scripted: constraint violated");
    case fault::connection_lost: return make_failure(xa_code::rm_failure, "scripted: connection lost");
    case fault::rm_error: return make_failure(xa_code::rm_error, "scripted: RM error");
  }
  return {};
}

const char* fault_name(fault kind) {
  switch (kind) {
    case fault::rolled_back: return "XA_RB";
    case fault::connection_lost: return "RMFAIL";
    case fault::rm_error: return "RMERR";
  }
  return "";
}

}  // namespace

TEST_CASE("2PC: every branch votes yes") {
  for (std::size_t n : {1u, 2u, 3u}) {
    CAPTURE(n);
    bench b(n);
    {
      auto tx = b.begin_all();
      CHECK(tx.commit() == commit_outcome::committed);
    }  // a transaction shares the TM's state: the log closes when the last one is gone
    for (std::size_t i = 1; i <= n; ++i) {
      CAPTURE(i);
      CHECK(b.calls_of("rm" + std::to_string(i)) ==
            (n == 1 ? "start end commit(one phase)" : "start end prepare commit"));
      CHECK(b.servers[i - 1]->committed.size() == 1);
      CHECK(b.servers[i - 1]->prepared.empty());
    }
    CHECK(b.commits_before_decision == 0);
    // The decision is forgotten once complete (written with the writer's next batch).
    b.tm.reset();
    CHECK_FALSE(decision_in_log_file(b.log_path, b.gtrid));
  }
}

TEST_CASE("2PC: every failure in every phase, for 1, 2 and 3 branches") {
  for (std::size_t n : {1u, 2u, 3u}) {
    for (phase when : {phase::end, phase::prepare, phase::commit}) {
      if (n == 1 && when == phase::prepare) continue;  // one branch is never prepared
      for (std::size_t failing = 0; failing < n; ++failing) {
        for (fault kind : {fault::rolled_back, fault::connection_lost, fault::rm_error}) {
          CAPTURE(n);
          CAPTURE(int(when));
          CAPTURE(failing);
          CAPTURE(fault_name(kind));
          bench b(n);
          xa_verb verb = when == phase::end       ? xa_verb::end
                         : when == phase::prepare ? xa_verb::prepare
                         : n == 1                 ? xa_verb::commit_one_phase
                                                  : xa_verb::commit;
          b.rms[failing]->script(verb, make_fault(kind));
          auto tx = b.begin_all();
          std::string failing_rm = "rm" + std::to_string(failing + 1);

          if (when != phase::commit) {
            // Before the decision: everything rolls back, nothing is logged, nobody commits.
            try {
              (void)tx.commit();
              FAIL("commit succeeded");
            } catch (const rolled_back_error& e) {
              CHECK(e.rm_name() == failing_rm);
              CHECK(std::string(e.what()).find("scripted") != std::string::npos);
            }
            CHECK_FALSE(decision_in_log_file(b.log_path, b.gtrid));
            for (std::size_t i = 0; i < n; ++i) {
              CAPTURE(i);
              CHECK(b.servers[i]->committed.empty());
              CHECK(b.servers[i]->prepared.empty());
              std::string calls = b.calls_of("rm" + std::to_string(i + 1));
              CHECK(calls.find("commit") == std::string::npos);
              if (when == phase::end) CHECK(calls.find("prepare") == std::string::npos);
              bool rolled_back_by_rm = i == failing && kind != fault::rm_error;
              bool expect_rollback = !rolled_back_by_rm || (when == phase::end && kind == fault::rolled_back) ||
                                     (when == phase::prepare && kind == fault::connection_lost);
              CHECK((calls.find("rollback") != std::string::npos) == expect_rollback);
            }
          } else if (n == 1) {
            // One-phase commit: a rollback answer is a rollback; anything else is in doubt.
            if (kind == fault::rolled_back) {
              CHECK_THROWS_AS((void)tx.commit(), rolled_back_error);
            } else {
              CHECK_THROWS_AS((void)tx.commit(), in_doubt_error);
            }
            CHECK(b.calls_of("rm1") == "start end commit(one phase)");
            CHECK_FALSE(decision_in_log_file(b.log_path, b.gtrid));
          } else if (kind == fault::rolled_back) {
            // After the decision an RM that rolls back is a heuristic outcome, never hidden.
            CHECK_THROWS_AS((void)tx.commit(), heuristic_error);
          } else {
            // After the decision a lost commit is retried from a new connection until it lands.
            CHECK(tx.commit() == commit_outcome::committed);
            CHECK(b.calls_of(failing_rm) == "start end prepare commit commit");
            for (std::size_t i = 0; i < n; ++i) CHECK(b.servers[i]->committed.size() == 1);
          }
          CHECK(b.commits_before_decision == 0);
          CHECK(b.rollbacks_after_decision == 0);
        }
      }
    }
  }
}

TEST_CASE("2PC: read-only branches leave the protocol") {
  SUBCASE("one writer and read-only others: one-phase commit, no prepare, no log record") {
    bench b(3);
    b.rms[0]->set_read_only(true);
    b.rms[2]->set_read_only(true);
    auto tx = b.begin_all();
    CHECK(tx.commit() == commit_outcome::committed);
    CHECK(b.calls_of("rm1") == "start end prepare");  // prepare answers read-only: finished
    CHECK(b.calls_of("rm2") == "start end commit(one phase)");
    CHECK(b.calls_of("rm3") == "start end prepare");
    CHECK(b.tm->statistics().decisions_logged == 0);
    CHECK(b.tm->statistics().one_phase == 1);
  }
  SUBCASE("all read-only") {
    bench b(2);
    b.rms[0]->set_read_only(true);
    b.rms[1]->set_read_only(true);
    auto tx = b.begin_all();
    CHECK(tx.commit() == commit_outcome::committed);
    CHECK(b.tm->statistics().decisions_logged == 0);
  }
  SUBCASE("a branch votes read-only at prepare: the others still commit") {
    bench b(3);
    b.rms[1]->script(xa_verb::prepare, vote::read_only);
    auto tx = b.begin_all();
    CHECK(tx.commit() == commit_outcome::committed);
    CHECK(b.calls_of("rm2") == "start end prepare");
    CHECK(b.calls_of("rm1") == "start end prepare commit");
    CHECK(b.commits_before_decision == 0);
  }
}

TEST_CASE("2PC: an RM unreachable after the decision leaves completion pending") {
  tm_options options;
  options.commit_retry_window = std::chrono::milliseconds(100);
  bench b(2, options);
  b.rms[1]->script(xa_verb::commit, make_failure(xa_code::rm_failure, "scripted: connection lost"));
  // The TM's own reconnects to rm2 fail too.
  b.tm.reset();
  b.tm = std::make_unique<transaction_manager>(tm_options{"fake-tm", b.log_path.string(), std::chrono::seconds(60),
                                                          std::chrono::seconds(10), std::chrono::milliseconds(100)});
  detail::tm_access::register_rm(*b.tm, "rm1", [&]() -> result<std::unique_ptr<resource_manager>> {
    return std::unique_ptr<resource_manager>(b.make_fake("rm1", b.servers[0]).release());
  });
  detail::tm_access::register_rm(*b.tm, "rm2", []() -> result<std::unique_ptr<resource_manager>> {
    return make_failure(xa_code::rm_failure, "scripted: server unreachable");
  });
  auto tx = b.begin_all();
  CHECK(tx.commit() == commit_outcome::completion_pending);
  CHECK(b.servers[0]->committed.size() == 1);
  CHECK(b.servers[1]->prepared.size() == 1);  // left for recovery
  b.tm.reset();
  CHECK(decision_in_log_file(b.log_path, b.gtrid));  // the decision survives for recovery
}

TEST_CASE("2PC: timeouts") {
  SUBCASE("transaction timeout: rolled back at commit") {
    tm_options options;
    options.transaction_timeout = std::chrono::milliseconds(1);
    bench b(2, options);
    auto tx = b.begin_all();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    CHECK_THROWS_AS((void)tx.commit(), timeout_error);
    CHECK(b.calls_of("rm1") == "start rollback");
    CHECK(b.servers[0]->committed.empty());
  }
  SUBCASE("prepare timeout: a silent RM counts as a no-vote") {
    tm_options options;
    options.prepare_timeout = std::chrono::milliseconds(100);
    bench b(2, options);
    auto tx = b.begin_all();
    b.rms[1]->on_send([&](xa_verb verb, const xid&) {
      if (verb == xa_verb::prepare) b.rms[1]->set_latency(std::chrono::milliseconds(2000));
    });
    CHECK_THROWS_AS((void)tx.commit(), timeout_error);
    CHECK(b.servers[0]->committed.empty());
    CHECK(b.calls_of("rm1") == "start end prepare rollback");
    // rm2's prepare may have landed: it is rolled back from a new connection.
    CHECK(b.servers[1]->prepared.empty());
  }
}

TEST_CASE("2PC: destroying an unfinished transaction rolls it back") {
  bench b(2);
  { auto tx = b.begin_all(); }
  CHECK(b.calls_of("rm1") == "start rollback");
  CHECK(b.calls_of("rm2") == "start rollback");
  auto tx = b.tm->begin();
  CHECK_THROWS_AS(tx.enlist(*std::make_unique<fake_rm>("unregistered", std::make_shared<fake_server>())),
                  configuration_error);
}

TEST_CASE("2PC: early acknowledgement returns at the decision and finishes on the next use") {
  tm_options options;
  options.early_acknowledgement = true;
  bench b(2, options);
  {
    auto tx = b.begin_all();
    CHECK(tx.commit() == commit_outcome::committed);
  }
  // Both commits were sent after the decision was durable; neither answer has been read yet.
  CHECK(b.calls_of("rm1") == "start end prepare commit");
  CHECK(b.calls_of("rm2") == "start end prepare commit");
  CHECK(b.commits_before_decision == 0);
  CHECK(b.rms[0]->call_in_flight());
  // The next use of each connection collects its commit; then the decision is forgotten.
  REQUIRE(b.rms[0]->exec("SELECT 1").ok());
  REQUIRE(b.rms[1]->exec("SELECT 1").ok());
  CHECK_FALSE(b.rms[0]->call_in_flight());
  b.tm.reset();
  CHECK_FALSE(decision_in_log_file(b.log_path, b.gtrid));
}

TEST_CASE("2PC: a decision queued behind a failed log write is rolled back at once, not left undecided") {
  // T1 and T2 commit at the same time on separate RMs. T2 has passed commit()'s check of the log
  // and waits at its prepare while T1's decision fails to fsync: T1 stays undecided (its record
  // may be on disk). T2's record is then refused unwritten, so presumed abort is certain for it:
  // it must be rolled back now, not left prepared with its locks until a restart.
  testing::register_faulty_vfs();
  bench b(4, {},
          {.log_vfs =
               testing::faulty_vfs_name});  // T1 on rm1 + rm2, T2 on rm3 + rm4: no fake server is shared by the threads
  std::mutex mutex;
  std::condition_variable changed;
  bool t2_preparing = false;
  bool t1_done = false;
  b.rms[2]->on_send([&](xa_verb verb, const xid&) {
    if (verb != xa_verb::prepare) return;
    std::unique_lock lock(mutex);
    t2_preparing = true;
    changed.notify_all();
    changed.wait(lock, [&] { return t1_done; });
  });
  auto t1 = b.tm->begin();
  t1.enlist(*b.rms[0]);
  t1.enlist(*b.rms[1]);
  auto t2 = b.tm->begin();
  t2.enlist(*b.rms[2]);
  t2.enlist(*b.rms[3]);
  std::string t2_error;
  bool t2_rolled_back_error = false;
  std::thread t2_thread([&] {
    try {
      (void)t2.commit();
    } catch (const log_failure_error& e) {
      t2_error = e.what();
      t2_rolled_back_error = true;
    } catch (const std::exception& e) {
      t2_error = e.what();
    }
  });
  {
    std::unique_lock lock(mutex);
    changed.wait(lock, [&] { return t2_preparing; });
  }
  testing::set_sync_failure(true);
  std::string t1_error;
  try {
    (void)t1.commit();
  } catch (const log_failure_error& e) {
    t1_error = e.what();
  }
  testing::clear_faults();
  {
    std::lock_guard lock(mutex);
    t1_done = true;
  }
  changed.notify_all();
  t2_thread.join();

  INFO("T1: " << t1_error);
  INFO("T2: " << t2_error);
  CHECK(t1_error.find("undecided until restart") != std::string::npos);
  CHECK(b.servers[0]->prepared.size() == 1);  // T1: left to recovery after a restart
  CHECK(b.servers[1]->prepared.size() == 1);
  CHECK(t2_rolled_back_error);
  CHECK(t2_error.find("rolled back") != std::string::npos);
  CHECK(b.servers[2]->prepared.empty());  // T2: rolled back at once
  CHECK(b.servers[3]->prepared.empty());
  CHECK(b.servers[2]->rolled_back.size() == 1);
  CHECK(b.servers[3]->rolled_back.size() == 1);
}
