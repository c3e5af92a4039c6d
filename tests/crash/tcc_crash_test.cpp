// TCC branches under crashes (docs/tcc.md): a coordinator process (tcc_workload.cpp) runs
// transfers PostgreSQL -> MariaDB with two reservations of 1 in the wallet service
// (examples/wallet_service.cpp, a real separate process over HTTP) as two TCC branches, and dies at
// every crash point around the TCC steps; recovery runs through a restarted transaction manager
// and through xatm-recover --tcc. Then random kills of the coordinator and of the wallet under
// load. Afterwards, besides the bank's invariants (support/invariants.h):
//  - the wallet's money was taken once for every committed transfer and for nothing else
//    (balance = initial - 2 x committed transfers), and nothing stays reserved;
//  - no branch was both confirmed and cancelled at the wallet, and every try that ran there was
//    confirmed or cancelled;
//  - the decision log holds no TCC branch record any more.
// XATM_TCC_KILL_ROUNDS sets the random-kill rounds (default 3). Needs the `servers` fixture.
#include <doctest/doctest.h>

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "crash/crash_harness.h"
#include "sqlite/log_format.h"
#include "support/observers.h"
#include "support/servers.h"
#include "xatm/recovery.h"
#include "xatm/tcc.h"

#ifndef XATM_TCC_WORKLOAD_BIN
#error "XATM_TCC_WORKLOAD_BIN must name the xatm-tcc-workload binary (set by tests/CMakeLists.txt)"
#endif
#ifndef XATM_WALLET_BIN
#error "XATM_WALLET_BIN must name the xatm-example-wallet binary (set by tests/CMakeLists.txt)"
#endif
#ifndef XATM_RECOVER_BIN
#error "XATM_RECOVER_BIN must name the xatm-recover binary (set by tests/CMakeLists.txt)"
#endif

using namespace xatm::crash_test;  // NOLINT(google-build-using-namespace): test file
using xatm::test::child_process;

namespace {

using clock_type = std::chrono::steady_clock;
constexpr long wallet_initial = 1'000'000;
constexpr long paid_per_transfer = 2;  // two TCC branches of 1 (tcc_workload.cpp)

// The wallet service on the PostgreSQL test server, as a child process; restartable on the same
// port, so that the coordinator's URL stays valid.
class wallet_process {
 public:
  // `on_mariadb`: the wallet's database is the MariaDB test server's instead (another wallet).
  wallet_process(scenario& s, std::string account, bool on_mariadb = false)
      : s_(s), account_(std::move(account)), on_mariadb_(on_mariadb) {
    start(0);
    httplib::Client client(host_, port_);
    auto created = client.Post("/accounts", "account=" + account_ + ";balance=" + std::to_string(wallet_initial),
                               "text/plain");
    REQUIRE_MESSAGE((created && created->status == 200), "creating the wallet account failed");
  }

  std::string url() const { return "http://" + host_ + ":" + std::to_string(port_); }
  const std::string& account() const { return account_; }

  void kill() { process_->kill(); }
  // For a failure's message: whether the wallet still runs, and what it wrote on stderr.
  std::string health() {
    const auto ended = process_->poll();
    return (ended ? "the wallet " + ended->describe() : std::string("the wallet runs")) + "; its stderr:\n" +
           process_->err();
  }
  void restart() {
    process_.reset();
    start(port_);
  }

 private:
  void start(int port) {
    const auto deadline = clock_type::now() + 30s;
    for (;;) {
      out_ = s_.next_file("wallet-out");
      process_ = std::make_unique<child_process>(
          std::vector<std::string>{XATM_WALLET_BIN, "--db",
                                   on_mariadb_ ? "mariadb:" + xatm::test::servers().mysql
                                               : "postgresql:" + xatm::test::servers().pg,
                                   "--state-dir",
                                   s_.next_file("wallet-state").string(), "--port", std::to_string(port)},
          std::vector<std::string>{}, out_, s_.next_file("wallet-err"));
      // The first line of its output says where it listens.
      while (clock_type::now() < deadline) {
        const std::string out = process_->out();
        const auto at = out.find("wallet listening on ");
        if (at != std::string::npos && out.find('\n', at) != std::string::npos) {
          const std::string where = out.substr(at + 20, out.find('\n', at) - at - 20);
          host_ = where.substr(0, where.rfind(':'));
          port_ = std::stoi(where.substr(where.rfind(':') + 1));
          return;
        }
        if (auto ended = process_->poll()) break;  // e.g. the old port still in use: start again
        std::this_thread::sleep_for(10ms);
      }
      REQUIRE_MESSAGE(clock_type::now() < deadline, "the wallet did not start: " << process_->err());
      std::this_thread::sleep_for(200ms);
    }
  }

  scenario& s_;
  std::string account_;
  bool on_mariadb_ = false;
  std::filesystem::path out_;
  std::unique_ptr<child_process> process_;
  std::string host_;
  int port_ = 0;
};

// The wallet's view, read on its database.
struct wallet_state {
  long balance = 0;
  long reserved = 0;
  long both_confirmed_and_cancelled = 0;  // branches of the scenario's tm_id
  long tried_but_open = 0;                // tries that ran, neither confirmed nor cancelled
};

wallet_state read_wallet(const scenario& s, const std::string& account) {
  auto pg = xatm::test::observe_pg();
  auto value = [&](const std::string& sql) {
    auto rows = pg->exec(sql);
    REQUIRE_MESSAGE(rows.ok(), rows.error().describe());
    return std::stol(rows.value().rows.at(0).at(0).value_or("0"));
  };
  wallet_state state;
  state.balance = value("SELECT balance FROM wallet_accounts WHERE account = '" + account + "'");
  state.reserved = value("SELECT reserved FROM wallet_accounts WHERE account = '" + account + "'");
  const std::string ours = "gtrid LIKE '" + s.tm_id() + ".%'";
  state.both_confirmed_and_cancelled =
      value("SELECT count(*) FROM xatm_tcc_barrier a JOIN xatm_tcc_barrier b ON a.gtrid = b.gtrid AND "
            "a.branch = b.branch WHERE a.step = 'confirm' AND b.step = 'cancel' AND a." +
            ours);
  state.tried_but_open = value(
      "SELECT count(*) FROM xatm_tcc_barrier t WHERE t.step = 'try' AND t.origin = 'try' AND t." + ours +
      " AND NOT EXISTS (SELECT 1 FROM xatm_tcc_barrier o WHERE o.gtrid = t.gtrid AND o.branch = t.branch AND "
      "o.step IN ('confirm', 'cancel'))");
  return state;
}

// Transfers that committed: one debit row each in the PostgreSQL ledger.
long committed_transfers(const scenario& s) {
  auto rows = xatm::test::observe_pg()->exec("SELECT count(*) FROM " + s.bank().ledger_table());
  REQUIRE(rows.ok());
  return std::stol(rows.value().rows.at(0).at(0).value_or("0"));
}

// Everything that must hold once recovery converged.
void check_tcc_invariants(const scenario& s, const wallet_process& wallet, const std::string& when) {
  check_invariants(s, when);
  const auto state = read_wallet(s, wallet.account());
  const long committed = committed_transfers(s);
  CHECK_MESSAGE(state.reserved == 0, when << ": the wallet still holds " << state.reserved << " reserved");
  CHECK_MESSAGE(wallet_initial - state.balance == paid_per_transfer * committed,
                when << ": the wallet paid " << wallet_initial - state.balance << " for " << committed
                     << " committed transfers");
  CHECK_MESSAGE(state.both_confirmed_and_cancelled == 0, when << ": a branch both confirmed and cancelled");
  CHECK_MESSAGE(state.tried_but_open == 0, when << ": " << state.tried_but_open << " tries never ended");
  auto records = xatm::detail::read_tcc_branches(s.log_path().string(), "");
  REQUIRE(records.ok());
  CHECK_MESSAGE(records.value().empty(), when << ": " << records.value().size() << " TCC records left in the log");
}

// One run of xatm-tcc-workload on the scenario's log.
class tcc_workload {
 public:
  struct options {
    int threads = 1;
    long transfers = 20;  // per thread; 0: until killed
    std::string crash_at;
    int doom_every = 0;
  };

  tcc_workload(scenario& s, const wallet_process& wallet, const options& o)
      : ack_path_(s.next_file("acks")),
        process_(
            {XATM_TCC_WORKLOAD_BIN, "--tm-id", s.tm_id(), "--log", s.log_path().string(), "--ack", ack_path_.string(),
             "--tables", s.bank().suffix, "--wallet-account", wallet.account(), "--threads", std::to_string(o.threads),
             "--transfers", std::to_string(o.transfers), "--token-prefix", "w" + ack_path_.extension().string().substr(1),
             "--doom-every", std::to_string(o.doom_every)},
            [&] {
              std::vector<std::string> env{"XATM_CRASH_PG=" + xatm::test::servers().pg,
                                           "XATM_CRASH_MARIA=" + xatm::test::servers().mysql,
                                           "XATM_TCC_WALLET_URL=" + wallet.url()};
              if (!o.crash_at.empty()) env.push_back("XATM_CRASH_AT=" + o.crash_at);
              return env;
            }(),
            s.next_file("workload-out"), s.next_file("workload-err")) {}

  xatm::test::exit_status wait(std::chrono::milliseconds timeout = 60s) { return process_.wait(timeout); }
  xatm::test::exit_status kill() { return process_.kill(); }
  xatm::test::ack_log acks() const { return xatm::test::read_acks(ack_path_); }
  std::string err() const { return process_.err(); }

 private:
  std::filesystem::path ack_path_;
  child_process process_;
};

// What recovery did with one gtrid's wallet branch ("confirm", "cancel" or "" for nothing).
struct recovered {
  std::string wallet_action;
  bool heuristic = false;
};

// A restarted coordinator: a transaction manager on the same log with the RMs and the wallet
// registered, recover_now() until nothing is unresolved.
recovered recover_by_restart(scenario& s, wallet_process& wallet, const std::string& gtrid) {
  recovered seen;
  auto tm = open_transaction_manager(s);
  tm->register_tcc("wallet", xatm::make_http_participant(wallet.url()));
  // Generous: under TSan on a loaded 2-core machine, the servers' noticing of a killed
  // coordinator's sessions and every round trip are slow. The bound is for convergence, not speed.
  const auto deadline = clock_type::now() + 120s;
  for (;;) {
    auto report = tm->recover_now();
    for (const auto& item : report.items) {
      if (item.gtrid == gtrid && item.rm_name == "wallet") seen.wallet_action = item.action;
    }
    seen.heuristic = seen.heuristic || report.heuristic();
    if (!report.unresolved()) break;
    if (clock_type::now() >= deadline) {
      std::string left;
      for (const auto& item : report.items) {
        if (item.result == xatm::recovery_result::unresolved) {
          left += "\n  " + item.rm_name + " " + item.xid + " " + item.gtrid + ": " + item.detail;
        }
      }
      for (const auto& rm : report.unreachable_rms) left += "\n  unreachable: " + rm;
      FAIL("recovery by restart left work unresolved for 120 s:" << left << "\n" << wallet.health());
    }
    std::this_thread::sleep_for(100ms);
  }
  tm->begin().rollback();
  return seen;
}

// xatm-recover --tcc wallet=URL until it exits 0.
recovered recover_by_tool(scenario& s, const wallet_process& wallet, const std::string& gtrid) {
  recovered seen;
  const auto deadline = clock_type::now() + 30s;
  for (;;) {
    child_process tool({XATM_RECOVER_BIN, "--log", s.log_path().string(), "--rm",
                        "pg=postgresql:" + xatm::test::servers().pg, "--rm",
                        "maria=mariadb:" + xatm::test::servers().mysql, "--tcc", "wallet=" + wallet.url(), "--json"},
                       {}, s.next_file("tool-out"), s.next_file("tool-err"));
    const auto status = tool.wait(60s);
    const std::string out = tool.out();
    for (std::size_t at = out.find(gtrid); at != std::string::npos; at = out.find(gtrid, at + 1)) {
      const auto line_start = out.rfind('\n', at) + 1;
      const std::string line = out.substr(line_start, out.find('\n', at) - line_start);
      if (line.find("\"rm\":\"wallet\"") == std::string::npos) continue;
      if (line.find("\"action\":\"confirm\"") != std::string::npos) seen.wallet_action = "confirm";
      if (line.find("\"action\":\"cancel\"") != std::string::npos) seen.wallet_action = "cancel";
    }
    seen.heuristic = seen.heuristic || (status.exited && status.code == 3);
    if (status.exited && status.code == 0) break;
    REQUIRE_MESSAGE((status.exited && status.code == 1 && clock_type::now() < deadline),
                    "xatm-recover " << status.describe() << "\n" << out << tool.err());
    std::this_thread::sleep_for(100ms);
  }
  return seen;
}

struct tcc_point_case {
  const char* point;
  int doom_every;       // 2: every second transfer is refused at PREPARE (to reach the cancels)
  bool committed;       // the transfer in flight committed (its reservation is taken)
  const char* actions;  // what recovery may do with its wallet branch: "confirm", "cancel", "" (nothing
                        // left: the branch was final or never recorded), '|' between alternatives
};

constexpr tcc_point_case tcc_points[] = {
    // Not recorded yet: no try was sent; the XA branches are rolled back by presumed abort.
    {"tcc_before_record", 0, false, ""},
    // Recorded, try maybe not sent: cancelled (an empty cancel at the wallet).
    {"tcc_after_record", 0, false, "cancel"},
    {"tcc_after_try", 0, false, "cancel"},
    {"before_decision_write", 0, false, "cancel"},
    // The decision is durable: confirmed, whatever had happened to the XA branches.
    {"after_decision_durable", 0, true, "confirm"},
    {"tcc_after_a_confirm", 0, true, "confirm"},  // confirmed once more: a duplicate at the barrier
    {"after_first_commit", 0, true, "confirm|"},  // the confirm may have finished before the crash
    {"before_complete_mark", 0, true, "confirm|"},
    // A refused PREPARE rolls back; the crash comes after the wallet's cancel.
    {"tcc_after_a_cancel", 2, false, "cancel"},
};

bool allowed(const std::string& actions, const std::string& action) {
  std::size_t start = 0;
  for (;;) {
    const auto bar = actions.find('|', start);
    if (actions.substr(start, bar == std::string::npos ? std::string::npos : bar - start) == action) return true;
    if (bar == std::string::npos) return false;
    start = bar + 1;
  }
}

}  // namespace

TEST_CASE("a crash at every TCC step is recovered by a restart and by xatm-recover --tcc") {
  std::string table;
  for (const auto& c : tcc_points) {
    for (recovery_path path : {recovery_path::library, recovery_path::tool}) {
      const std::string point = c.point;
      const std::string via = path == recovery_path::library ? "restart" : "xatm-recover";
      CAPTURE(point);
      CAPTURE(via);
      scenario s("tcc_" + point + "_" + (path == recovery_path::library ? "r" : "t"));
      wallet_process wallet(s, "acct_" + s.name());
      tcc_workload w(s, wallet, {.crash_at = point + ":3", .doom_every = c.doom_every});
      const auto status = w.wait();
      REQUIRE_MESSAGE(status.killed_by_sigkill(), status.describe() << "\n" << w.err());
      const auto acks = w.acks();
      REQUIRE(acks.in_flight().size() == 1);
      const std::string token = acks.in_flight().front();
      const std::string gtrid = acks.gtrids.at(token);

      const recovered seen =
          path == recovery_path::library ? recover_by_restart(s, wallet, gtrid) : recover_by_tool(s, wallet, gtrid);
      CHECK_FALSE(seen.heuristic);
      CHECK_MESSAGE(allowed(c.actions, seen.wallet_action), "recovery did '" << seen.wallet_action << "'");
      CHECK(ledger_has(s.bank(), token) == c.committed);
      check_tcc_invariants(s, wallet, "after a crash at " + point + ", recovered by " + via);
      table += "  " + point + " (" + via + "): wallet branch " +
               (seen.wallet_action.empty() ? std::string("untouched") : seen.wallet_action == "confirm" ? std::string("confirmed") : std::string("cancelled")) + ", transfer " +
               (c.committed ? "committed" : "rolled back") + "\n";
    }
  }
  MESSAGE("what recovery did at each TCC crash point:\n" << table);
}

TEST_CASE("random kills of the coordinator and of the wallet under load leave nothing reserved") {
  const char* configured = std::getenv("XATM_TCC_KILL_ROUNDS");
  const int rounds = configured != nullptr ? std::max(1, std::atoi(configured)) : 3;
  scenario s("tcc_random_kills");
  wallet_process wallet(s, "acct_" + s.name());
  std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<int> run_ms(300, 1500);
  for (int round = 0; round < rounds; ++round) {
    tcc_workload w(s, wallet, {.threads = 4, .transfers = 0, .crash_at = "", .doom_every = 7});
    std::this_thread::sleep_for(std::chrono::milliseconds(run_ms(random)));
    if (round % 2 == 1) {
      // The wallet dies under load and comes back: tries fail (rolled back), confirms wait.
      wallet.kill();
      std::this_thread::sleep_for(std::chrono::milliseconds(run_ms(random) / 3));
      wallet.restart();
      std::this_thread::sleep_for(std::chrono::milliseconds(run_ms(random)));
    }
    const auto status = w.kill();
    CHECK_MESSAGE(status.killed_by_sigkill(), status.describe() << "\n" << w.err());
  }
  const auto by_restart = recover_by_restart(s, wallet, "");
  CHECK_FALSE(by_restart.heuristic);
  const auto acks = s.acks();
  MESSAGE(rounds << " rounds: " << acks.count(xatm::test::ack_state::committed) << " transfers acknowledged committed, "
                 << committed_transfers(s) << " in the ledger");
  CHECK(acks.count(xatm::test::ack_state::committed) > 0);
  check_tcc_invariants(s, wallet, "after random kills, recovered by a restart");
}

TEST_CASE("xatm-recover pointed at another wallet changes nothing there; the right one then cancels") {
  scenario s("tcc_wrong_wallet");
  wallet_process wallet(s, "acct_" + s.name());
  {
    // A first transfer pins the wallet's database in the log.
    tcc_workload first(s, wallet, {.threads = 1, .transfers = 2, .crash_at = "", .doom_every = 0});
    REQUIRE(first.wait().exited);
  }
  tcc_workload w(s, wallet, {.threads = 1, .transfers = 5, .crash_at = "tcc_after_try:2", .doom_every = 0});
  const auto status = w.wait();
  REQUIRE_MESSAGE(status.killed_by_sigkill(), status.describe() << "\n" << w.err());
  CHECK(read_wallet(s, wallet.account()).reserved >= 1);  // the transfer in flight reserved

  wallet_process other(s, "acct_" + s.name(), /*on_mariadb=*/true);
  auto tool = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv{XATM_RECOVER_BIN, "--log", s.log_path().string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    child_process run(argv, {}, s.next_file("tool-out"), s.next_file("tool-err"));
    auto ended = run.wait(60s);
    return std::make_pair(ended, run.out() + run.err());
  };
  const std::string pg = "pg=postgresql:" + xatm::test::servers().pg;
  const std::string maria = "maria=mariadb:" + xatm::test::servers().mysql;

  // --tcc alone: the tool cannot see whether the TM that recorded it still runs: refused.
  auto [alone, alone_out] = tool({"--tcc", "wallet=" + wallet.url()});
  CHECK_MESSAGE((alone.exited && alone.code == 2), alone.describe() << "\n" << alone_out);

  // The other wallet answers "wrong database" and does nothing; the branch stays in the log.
  auto [wrong, wrong_out] = tool({"--rm", pg, "--rm", maria, "--tcc", "wallet=" + other.url()});
  CHECK_MESSAGE((wrong.exited && wrong.code == 1), wrong.describe() << "\n" << wrong_out);
  CHECK(wrong_out.find("wrong_database") != std::string::npos);
  auto other_rows = xatm::test::observe_maria()->exec("SELECT count(*) FROM xatm_tcc_barrier WHERE gtrid LIKE '" +
                                                       s.tm_id() + ".%'");
  REQUIRE(other_rows.ok());
  CHECK(other_rows.value().rows.at(0).at(0).value_or("") == "0");
  // The branch in flight is still recorded (a finished one's completion may have been queued
  // still when the coordinator died: its record is there too, and confirmed again later).
  const auto acks = w.acks();
  REQUIRE(acks.in_flight().size() == 1);
  const std::string in_flight = acks.gtrids.at(acks.in_flight().front());
  auto records = xatm::detail::read_tcc_branches(s.log_path().string(), "");
  REQUIRE(records.ok());
  CHECK(std::any_of(records.value().begin(), records.value().end(),
                    [&](const auto& record) { return record.gtrid == in_flight; }));

  // The right wallet: cancelled, nothing reserved.
  auto [right, right_out] = tool({"--rm", pg, "--rm", maria, "--tcc", "wallet=" + wallet.url()});
  CHECK_MESSAGE((right.exited && right.code == 0), right.describe() << "\n" << right_out);
  check_tcc_invariants(s, wallet, "after recovery with the wrong wallet, then the right one");
}
