// Shared by the crash tests of the protocols decided by marker rows (three_phase_crash_test.cpp,
// marker_crash_test.cpp): the servers seen from outside, the coordinator process
// (xatm-marker-workload) started, frozen and killed, and terminators (xatm-recover --terminate
// with a tm_id of its own and no log) run until they are done. Test-only; one test thread.
#pragma once

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "crash/crash_harness.h"
#include "support/invariants.h"
#include "support/observers.h"
#include "support/servers.h"
#include "xatm/connection_settings.h"
#include "mysql/mysql.h"
#include "postgresql/postgresql.h"
#include "xatm/transaction_manager.h"

#ifndef XATM_MARKER_WORKLOAD_BIN
#error "XATM_MARKER_WORKLOAD_BIN must name the xatm-marker-workload binary (set by tests/CMakeLists.txt)"
#endif

namespace xatm::marker_harness {

using crash_test::child_process;
using crash_test::exit_status;
namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;
using clock = std::chrono::steady_clock;

using xatm::test::temp_dir;

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Waits until the child is frozen (SIGSTOP from a ":stop" crash point). WNOWAIT leaves every
// state change to child_process, which reaps it later.
inline bool wait_until_stopped(child_process& child, seconds limit) {
  const auto deadline = clock::now() + limit;
  while (clock::now() < deadline) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(child.pid()), &info, WSTOPPED | WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == child.pid()) {
      return info.si_code == CLD_STOPPED;  // anything else: it ended instead
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  return false;
}

// ---- the servers, seen from outside --------------------------------------------------------

inline std::unique_ptr<resource_manager> observe(bool postgres) {
  const std::string& conninfo = postgres ? test::servers().pg : test::servers().mysql;
  auto rm = postgres ? postgresql::connect("observer", connection_settings::parse(conninfo).value())
                     : mysql::connect("observer", connection_settings::parse(conninfo).value());
  if (!rm.ok()) FAIL("connect: " << rm.error().describe());
  return std::move(rm).value();
}

inline std::vector<std::string> column(resource_manager& rm, const std::string& sql) {
  auto rows = rm.exec(sql);
  if (!rows.ok()) FAIL(sql << ": " << rows.error().describe());
  std::vector<std::string> values;
  for (const auto& row : rows.value().rows) values.push_back(row.at(0).value_or("NULL"));
  return values;
}

// The marker rows of a gtrid on one server ("P", "A"; empty: none).
inline std::vector<std::string> markers_on(bool postgres, const std::string& gtrid) {
  return column(*observe(postgres), "SELECT state FROM xatm_marker WHERE gtrid = '" + gtrid + "'");
}

inline bool token_on(bool postgres, const test::transfer_bank& bank, const std::string& token) {
  return column(*observe(postgres), "SELECT count(*) FROM " + bank.ledger_table() + " WHERE token = '" + token + "'")
             .at(0) == "1";
}

// Waits until MariaDB has noticed that a dead coordinator's sessions ended: until then their
// prepared branches answer "retry" to everybody else.
inline void wait_for_maria_sessions_to_end(const std::vector<long>& ids) {
  if (ids.empty()) return;
  std::string list;
  for (long id : ids) list += (list.empty() ? "" : ", ") + std::to_string(id);
  auto maria = observe(false);
  const auto deadline = clock::now() + seconds(20);
  while (column(*maria, "SELECT count(*) FROM information_schema.processlist WHERE id IN (" + list + ")").at(0) !=
         "0") {
    if (clock::now() > deadline) FAIL("MariaDB sessions " << list << " still attached after 20 s");
    std::this_thread::sleep_for(milliseconds(20));
  }
}

// ---- the coordinator -----------------------------------------------------------------------

struct workload_plan {
  std::string crash_at;  // XATM_CRASH_AT ("" for none)
  commit_protocol protocol = commit_protocol::three_phase;
  bool maria_first = false;      // enlist MariaDB first (the arbiter or decision branch); else PostgreSQL
  int recovery_interval_ms = 0;  // the workload's background recovery (0: only at startup)
  int precommit_timeout_ms = 3'600'000;
  int first_account = 1;
  int accounts = 16;
  int threads = 1;
  long transfers = 0;  // per thread; 0: until killed
  int doom_every = 0;
  std::string token_prefix;
};

// One xatm-marker-workload process with a tm_id, a log and an ack file of its own.
struct coordinator {
  std::string tm_id;
  fs::path log;
  fs::path acks;
  std::unique_ptr<child_process> process;

  test::ack_log read_acks() const { return test::read_acks(acks); }
  std::string output() const { return process->out() + process->err(); }
};

inline coordinator start_coordinator(const fs::path& parent, const std::string& tm_id, const test::transfer_bank& bank,
                                     const workload_plan& plan) {
  const fs::path dir = parent / tm_id;
  fs::create_directories(dir);
  coordinator c{tm_id, dir / "coordinator.db", dir / "acks", nullptr};
  std::vector<std::string> env{"XATM_CRASH_PG=" + test::servers().pg, "XATM_CRASH_MARIA=" + test::servers().mysql};
  if (!plan.crash_at.empty()) env.push_back("XATM_CRASH_AT=" + plan.crash_at);
  c.process = std::make_unique<child_process>(
      std::vector<std::string>{XATM_MARKER_WORKLOAD_BIN,
                               "--tm-id",
                               tm_id,
                               "--log",
                               c.log.string(),
                               "--ack",
                               c.acks.string(),
                               "--tables",
                               bank.suffix,
                               "--first-account",
                               std::to_string(plan.first_account),
                               "--accounts",
                               std::to_string(plan.accounts),
                               "--threads",
                               std::to_string(plan.threads),
                               "--transfers",
                               std::to_string(plan.transfers),
                               "--doom-every",
                               std::to_string(plan.doom_every),
                               "--token-prefix",
                               plan.token_prefix,
                               "--protocol",
                               plan.protocol == commit_protocol::commit_marker ? "commit-marker" : "three-phase",
                               "--first",
                               plan.maria_first ? "maria" : "pg",
                               "--recovery-interval-ms",
                               std::to_string(plan.recovery_interval_ms),
                               "--precommit-timeout-ms",
                               std::to_string(plan.precommit_timeout_ms)},
      env, dir / "out", dir / "err");
  return c;
}

// The coordinator's host is gone, and its decision log with it.
inline void delete_log(const coordinator& c) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal", ".lock"}) {
    std::error_code ignored;  // a file SQLite never created is fine
    fs::remove(c.log.string() + suffix, ignored);
  }
  REQUIRE_FALSE(fs::exists(c.log));
}

// `# why <token> <message>`: what commit() threw, per token.
inline std::map<std::string, std::string> reasons(const fs::path& acks) {
  std::map<std::string, std::string> why;
  std::istringstream lines(read_file(acks));
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("# why ", 0) != 0) continue;
    const auto space = line.find(' ', 6);
    if (space != std::string::npos) why[line.substr(6, space - 6)] = line.substr(space + 1);
  }
  return why;
}

// ---- terminators ---------------------------------------------------------------------------

// The runs of one terminator: xatm-recover --terminate with a tm_id of its own and a log path
// where no log exists (it terminates by the markers alone).
struct termination {
  std::string tm_id;
  fs::path dir;
  std::vector<int> exit_codes;  // one per run
  std::string output;           // every run's JSON

  fs::path log() const { return dir / (tm_id + ".db"); }  // may stay absent: nothing to remember
  // What it reported for one coordinator's branches.
  std::vector<crash_test::recovery_line> lines_of(const std::string& coordinator_tm_id) const {
    return crash_test::parse_tool_report(output, coordinator_tm_id);
  }
  // The branches of `gtrid` it finished, as "committed" or "rolled_back".
  std::vector<std::string> actions_on(const std::string& gtrid) const {
    std::vector<std::string> actions;
    for (const auto& line : crash_test::parse_tool_report(output, gtrid.substr(0, gtrid.find('.')))) {
      if (line.gtrid == gtrid && (line.result == "committed" || line.result == "rolled_back")) {
        actions.push_back(line.result);
      }
    }
    return actions;
  }
};

inline std::unique_ptr<child_process> start_terminator(const termination& t, const char* precommit_timeout) {
  const std::string run = std::to_string(t.exit_codes.size() + 1);
  return std::make_unique<child_process>(
      std::vector<std::string>{XATM_RECOVER_BIN, "--terminate", "--tm-id", t.tm_id, "--log", t.log().string(),
                               "--precommit-timeout", precommit_timeout, "--json", "--rm",
                               "pg=postgresql:" + test::servers().pg, "--rm", "maria=mariadb:" + test::servers().mysql},
      std::vector<std::string>{}, t.dir / (t.tm_id + "." + run + ".json"), t.dir / (t.tm_id + "." + run + ".err"));
}

// Waits for one run; 0 (all done) and 1 (something unresolved: run again) are the only
// acceptable exit codes. 3 would be a heuristic outcome: a violation in itself.
inline void finish_run(termination& t, child_process& run) {
  const exit_status status = run.wait(seconds(60));
  INFO("xatm-recover --terminate: " << status.describe() << "\n" << run.out() << run.err());
  REQUIRE(status.exited);
  CHECK(status.code <= 1);
  t.exit_codes.push_back(status.code);
  t.output += run.out();
}

// Runs the terminator until it exits 0; exit 1 (a branch still attached to a MariaDB session
// that has not ended yet, or busy being finished by another terminator) is retried.
inline void terminate_until_done(termination& t, const char* precommit_timeout) {
  do {
    if (!t.exit_codes.empty()) std::this_thread::sleep_for(milliseconds(300));
    auto run = start_terminator(t, precommit_timeout);
    finish_run(t, *run);
  } while (t.exit_codes.back() == 1 && t.exit_codes.size() < 5);
  CHECK_MESSAGE(t.exit_codes.back() == 0, "still unresolved after " << t.exit_codes.size() << " runs:\n" << t.output);
}

inline termination terminate_with_tool(const fs::path& dir, const std::string& tm_id, const char* precommit_timeout) {
  termination t{tm_id, dir, {}, {}};
  terminate_until_done(t, precommit_timeout);
  return t;
}

// An empty decision log in `dir`. check_invariants() wants the coordinator's log, which is gone
// (and a terminator without a log keeps none): a log that holds nothing stands in for it.
inline fs::path empty_log(const fs::path& dir) {
  const fs::path path = dir / "empty-log.db";
  if (!fs::exists(path)) {
    tm_options options;
    options.tm_id = "p3-empty";
    options.log_path = path.string();
    options.recovery_interval = milliseconds(0);
    const transaction_manager nobody(options);  // creates the log; closing it leaves it clean
  }
  return path;
}

inline void check_invariants_after(const test::transfer_bank& bank, const coordinator& c, const fs::path& log) {
  const test::ack_log acks = c.read_acks();
  const test::invariant_check check = test::check_invariants(bank, c.tm_id, log, acks);
  INFO("coordinator " << c.tm_id << ": " << acks.count(test::ack_state::committed) << " commits and "
                      << acks.count(test::ack_state::rolled_back) << " rollbacks acknowledged, "
                      << acks.in_flight().size() << " in flight");
  CHECK_MESSAGE(check.ok(), check.describe());
  if (!check.ok()) test::roll_back_prepared_of(c.tm_id);  // so that the next case is not blocked
}

// tm_ids (and so gtrids and marker rows) that no earlier run against the same servers used.
inline std::string unique_id(const std::string& prefix) {
  static const std::string salt = [] {
    std::ostringstream text;
    text << std::hex << (std::random_device()() & 0xffffffU);
    return text.str();
  }();
  return prefix + salt;
}

// A coordinator that froze (SIGSTOP) in its one transfer at `point`, and that transfer.
struct frozen_coordinator {
  coordinator c;
  std::string token;
  std::string gtrid;
};

inline frozen_coordinator freeze_at(const fs::path& dir, const test::transfer_bank& bank, const std::string& tm_id,
                                    const std::string& point) {
  const workload_plan plan{
      .crash_at = point + ":stop", .accounts = bank.accounts, .transfers = 1, .token_prefix = "stall"};
  frozen_coordinator frozen{start_coordinator(dir, tm_id, bank, plan), {}, {}};
  REQUIRE_MESSAGE(wait_until_stopped(*frozen.c.process, seconds(60)),
                  "not frozen at " << point << ": " << frozen.c.output());
  const test::ack_log acks = frozen.c.read_acks();
  REQUIRE(acks.in_flight().size() == 1);
  frozen.token = acks.in_flight().front();
  frozen.gtrid = acks.gtrids.at(frozen.token);
  return frozen;
}

// The transfer `token` is on both databases (committed) or on neither.
inline void check_token(const test::transfer_bank& bank, const std::string& token, bool committed) {
  CHECK(token_on(true, bank, token) == committed);
  CHECK(token_on(false, bank, token) == committed);
}

// Waits until the workload finished its startup recovery and runs transfers.
inline void wait_until_ready(const coordinator& c) {
  const auto ready_by = clock::now() + seconds(30);
  while (!c.read_acks().ready) {
    if (auto ended = c.process->poll()) FAIL("the workload ended: " << ended->describe() << "\n" << c.output());
    REQUIRE_MESSAGE(clock::now() < ready_by, "the workload did not start within 30 s");
    std::this_thread::sleep_for(milliseconds(5));
  }
}

// Two terminators started at once, each run again until it is done.
struct terminator_race {
  termination a;
  termination b;

  // What both did to `gtrid`'s branches ("committed" / "rolled_back"), together.
  std::vector<std::string> actions_on(const std::string& gtrid) const {
    std::vector<std::string> actions = a.actions_on(gtrid);
    const auto more = b.actions_on(gtrid);
    actions.insert(actions.end(), more.begin(), more.end());
    return actions;
  }
};

inline terminator_race race_terminators(const fs::path& dir, const std::string& a_id, const std::string& b_id) {
  terminator_race race{{a_id, dir, {}, {}}, {b_id, dir, {}, {}}};
  {
    auto a_run = start_terminator(race.a, "0.5");
    auto b_run = start_terminator(race.b, "0.5");
    finish_run(race.a, *a_run);
    finish_run(race.b, *b_run);
  }
  // One that answered 1 (a branch the other was finishing at that instant) runs again.
  if (race.a.exit_codes.back() != 0) terminate_until_done(race.a, "0.5");
  if (race.b.exit_codes.back() != 0) terminate_until_done(race.b, "0.5");
  return race;
}

// After a race: the deciding row (on PostgreSQL or MariaDB) is the one the protocol says (a P
// may already be deleted by the terminator that saw every branch final, an A stays), the
// `branches` prepared ones were finished exactly once between both terminators, all the same
// way, and the bank agrees.
inline void check_race_outcome(const terminator_race& race, const test::transfer_bank& bank, const coordinator& c,
                               const std::string& gtrid, const std::string& token, bool committed,
                               bool row_on_postgresql, std::size_t branches, const fs::path& empty) {
  CAPTURE(gtrid);
  const auto rows = markers_on(row_on_postgresql, gtrid);
  if (committed) {
    CHECK((rows.empty() || rows == std::vector<std::string>{"P"}));
  } else {
    CHECK(rows == std::vector<std::string>{"A"});
  }
  const std::vector<std::string> actions = race.actions_on(gtrid);
  CHECK(actions.size() == branches);
  for (const auto& action : actions) CHECK(action == (committed ? "committed" : "rolled_back"));
  check_token(bank, token, committed);
  check_invariants_after(bank, c, empty);
}

}  // namespace xatm::marker_harness
