// The commit-marker protocol under crashes, stalls and races, against the real servers
// (docs/commit-marker.md, docs/design.md section 12). The coordinator is xatm-marker-workload
// (marker_workload.cpp) in commit-marker mode: transfers from PostgreSQL to MariaDB whose first
// enlisted branch carries the decision row. The test kills it at every crash point and lets three
// kinds of recoverer finish: the same TM restarted on its log, another instance (another tm_id,
// a log of its own) and xatm-recover --terminate with the coordinator's log deleted. It freezes a
// coordinator inside its decision branch while a terminator races it, leaves several dead for two
// racing terminators, kills coordinators and database servers at random under load, and kills one
// of two service instances sharing the databases. Every case ends with the crash suite's
// invariants (support/invariants.h): a token in PostgreSQL iff in MariaDB, acknowledged commits
// present, acknowledged rollbacks absent, money conserved, nothing left prepared.
//
// Needs a build with -DXATM_CRASH_POINTS=ON and the `servers` fixture. XATM_MARKER_CRASH_ROUNDS
// sets the number of random-kill rounds (default 12).
#include <doctest/doctest.h>
#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "crash/crash_harness.h"
#include "crash/marker_harness.h"
#include "support/invariants.h"
#include "support/observers.h"
#include "support/servers.h"
#include "support/temp_dir.h"
#include "xatm/transaction_manager.h"

using namespace xatm;                  // NOLINT(google-build-using-namespace): test file
using namespace xatm::marker_harness;  // NOLINT(google-build-using-namespace): test file
using xatm::test::temp_dir;

namespace {

// Who finishes a dead coordinator's work.
enum class recoverer { same_tm_restarted, other_instance, tool_without_log };

const char* recoverer_name(recoverer who) {
  switch (who) {
    case recoverer::same_tm_restarted: return "the same TM restarted";
    case recoverer::other_instance: return "another instance";
    case recoverer::tool_without_log: return "xatm-recover --terminate, log deleted";
  }
  return "?";
}

tm_options marker_options(const std::string& tm_id, const fs::path& log) {
  tm_options options;
  options.tm_id = tm_id;
  options.log_path = log.string();
  options.protocol = commit_protocol::commit_marker;  // its recovery terminates others' branches
  options.precommit_timeout = milliseconds(400);
  options.recovery_interval = milliseconds(0);
  return options;
}

// Recovery runs of a transaction manager until nothing is left unresolved (or 10 runs).
void recover_until_done(transaction_manager& tm) {
  for (int run = 0; run < 10; ++run) {
    const recovery_report report = tm.recover_now();
    if (!report.unresolved()) return;
    std::this_thread::sleep_for(milliseconds(500));
  }
  FAIL("recovery still left work unresolved after 10 runs");
}

// Finishes a dead coordinator's work the way `who` does; answers the log to check the
// invariants against (the coordinator's own, or an empty one when it is gone).
fs::path recover_by(recoverer who, const fs::path& dir, const coordinator& c, const std::string& tag) {
  switch (who) {
    case recoverer::same_tm_restarted: {
      transaction_manager tm(marker_options(c.tm_id, c.log));
      tm.register_rm("pg", "postgresql", test::servers().pg);
      tm.register_rm("maria", "mariadb", test::servers().mysql);
      recover_until_done(tm);
      return c.log;
    }
    case recoverer::other_instance: {
      delete_log(c);
      transaction_manager tm(marker_options(unique_id("cmother" + tag + "-"), dir / ("other" + tag + ".db")));
      tm.register_rm("pg", "postgresql", test::servers().pg);
      tm.register_rm("maria", "mariadb", test::servers().mysql);
      recover_until_done(tm);
      return empty_log(dir);
    }
    case recoverer::tool_without_log: {
      delete_log(c);
      const termination t = terminate_with_tool(dir, unique_id("cmterm" + tag + "-"), "0.4");
      INFO("terminator:\n" << t.output);
      return empty_log(dir);
    }
  }
  return {};
}

// What a crash at one point of a commit-marker transfer ends as. Before the decision branch's
// one-phase commit nothing is decided: its row dies with its session, and whoever finds the
// prepared branch inserts A and rolls it back. From that commit on the transaction is committed.
struct point_case {
  const char* crash_at;
  bool committed;
  const char* marker;  // the row at the decision RM afterwards: "" none, "A", or "A?" (A iff a
                       // branch had been prepared); a P row of a finished transaction is deleted
};

// Transfers 0..3 on one thread, the fourth doomed; ":3" dies in the third transfer.
constexpr point_case point_cases[] = {
    {"after_start:3", false, ""},                      // one branch active: the RMs undo it
    {"before_prepare:3", false, ""},                   // ended, nothing prepared
    {"marker_before_decision_insert:3", false, "A?"},  // the prepare sent, maybe done
    {"after_first_prepare:3", false, "A"},             // prepared; the row inserted, not committed
    {"marker_after_decision_insert:3", false, "A"},    // the same, just before the commit point
    {"marker_after_decision_commit:3", true, ""},      // the commit point passed: commit the other
    {"after_first_commit:3", true, ""},                // committed everywhere
    {"after_all_committed:3", true, ""},
    {"before_complete_mark:3", true, ""},
};

void create_marker_tables(const fs::path& dir) {
  child_process install({XATM_RECOVER_BIN, "--install-schema", "--rm", "pg=postgresql:" + test::servers().pg, "--rm",
                         "maria=mariadb:" + test::servers().mysql},
                        {}, dir / "install.out", dir / "install.err");
  const exit_status status = install.wait(seconds(30));
  INFO(install.out() << install.err());
  REQUIRE(status.exited);
  REQUIRE(status.code == 0);
}

}  // namespace

TEST_CASE("commit-marker: a crash at every point, recovered by the same TM, another instance and the tool") {
  temp_dir dir;
  const test::transfer_bank bank{.suffix = "cmpoints"};
  bank.create();
  create_marker_tables(dir.path);
  int run = 0;
  for (const bool maria_decides : {false, true}) {
    for (const point_case& point : point_cases) {
      for (const recoverer who :
           {recoverer::same_tm_restarted, recoverer::other_instance, recoverer::tool_without_log}) {
        ++run;
        const std::string tag = std::to_string(run);
        CAPTURE(point.crash_at);
        CAPTURE(recoverer_name(who));
        CAPTURE(maria_decides);
        const workload_plan plan{.crash_at = point.crash_at,
                                 .protocol = commit_protocol::commit_marker,
                                 .maria_first = maria_decides,
                                 .transfers = 4,
                                 .doom_every = 4,
                                 .token_prefix = "pt" + tag};
        const coordinator c = start_coordinator(dir.path, unique_id("cmpt" + tag + "-"), bank, plan);
        const exit_status died = c.process->wait(seconds(60));
        INFO("coordinator: " << died.describe() << "\n" << c.output());
        REQUIRE_MESSAGE(died.killed_by_sigkill(), "not killed at " << point.crash_at);
        const test::ack_log acks = c.read_acks();
        REQUIRE(acks.in_flight().size() == 1);
        const std::string token = acks.in_flight().front();
        const std::string gtrid = acks.gtrids.at(token);
        CHECK(gtrid.ends_with(".cm"));
        CHECK(acks.count(test::ack_state::committed) >= 1);
        wait_for_maria_sessions_to_end(acks.maria_connections);
        const bool was_prepared = !test::prepared_branches_of(c.tm_id).empty();

        const fs::path log = recover_by(who, dir.path, c, tag);

        check_token(bank, token, point.committed);
        const bool decider_is_pg = !maria_decides;
        const std::string expected =
            std::string_view(point.marker) == "A?" ? (was_prepared ? "A" : "") : std::string(point.marker);
        CHECK(markers_on(decider_is_pg, gtrid) ==
              (expected.empty() ? std::vector<std::string>{} : std::vector<std::string>{expected}));
        // Nothing is ever written at the RM of the prepared branch.
        CHECK(markers_on(!decider_is_pg, gtrid).empty());
        CHECK(test::prepared_branches_of(c.tm_id).empty());
        check_invariants_after(bank, c, log);
      }
    }
  }
  bank.drop();
}

TEST_CASE("commit-marker: a coordinator frozen before its decision insert loses to a terminator's A and says so") {
  temp_dir dir;
  const test::transfer_bank bank{.suffix = "cmstall_a", .accounts = 2};
  bank.create();
  const std::string tm_id = unique_id("cmstallA-");
  const workload_plan plan{.crash_at = "marker_before_decision_insert:stop",
                           .protocol = commit_protocol::commit_marker,
                           .accounts = bank.accounts,
                           .transfers = 1,
                           .token_prefix = "stall"};
  coordinator c = start_coordinator(dir.path, tm_id, bank, plan);
  REQUIRE_MESSAGE(wait_until_stopped(*c.process, seconds(60)), c.output());
  const test::ack_log acks = c.read_acks();
  REQUIRE(acks.in_flight().size() == 1);
  const std::string token = acks.in_flight().front();
  const std::string gtrid = acks.gtrids.at(token);
  // The MariaDB branch's prepare was sent before the freeze; wait until the server did it.
  for (int i = 0; i < 100 && test::prepared_branches_of(tm_id).empty(); ++i)
    std::this_thread::sleep_for(milliseconds(50));
  REQUIRE(test::prepared_branches_of(tm_id).size() == 1);

  // The terminator inserts A at the decision RM (PostgreSQL) and rolls back the prepared branch,
  // or, still attached to the frozen MariaDB session, leaves it for a later run.
  termination t{unique_id("cmstallA-term-"), dir.path, {}, {}};
  {
    auto first = start_terminator(t, "0.5");
    finish_run(t, *first);
  }
  INFO("terminator:\n" << t.output);
  CHECK(markers_on(true, gtrid) == std::vector<std::string>{"A"});

  // The coordinator wakes: its plain insert meets the A row and it rolls everything back.
  REQUIRE(::kill(c.process->pid(), SIGCONT) == 0);
  const exit_status ended = c.process->wait(seconds(60));
  CHECK_MESSAGE((ended.exited && ended.code == 0), ended.describe() << "\n" << c.output());
  CHECK(c.read_acks().tokens.at(token) == test::ack_state::rolled_back);
  const std::string why = reasons(c.acks)[token];
  CHECK_MESSAGE(why.find("another xatm instance terminated the transaction") != std::string::npos, why);
  terminate_until_done(t, "0.5");
  CHECK_FALSE(token_on(true, bank, token));
  CHECK_FALSE(token_on(false, bank, token));
  CHECK(markers_on(true, gtrid) == std::vector<std::string>{"A"});
  CHECK(test::prepared_branches_of(tm_id).empty());
  check_invariants_after(bank, c, empty_log(dir.path));
  bank.drop();
}

TEST_CASE("commit-marker: a terminator waiting on a frozen coordinator's uncommitted row follows its commit") {
  // Frozen with its decision row inserted but not committed: a terminator's insert-if-absent
  // waits on that row. The coordinator wakes while the terminator waits and commits: the
  // terminator's insert does nothing, it reads P, and it commits (or finds committed) the
  // prepared branch. Exactly one row wins and both sides agree.
  temp_dir dir;
  const test::transfer_bank bank{.suffix = "cmstall_p", .accounts = 2};
  bank.create();
  for (const bool maria_decides : {false, true}) {
    CAPTURE(maria_decides);
    const std::string tm_id = unique_id(std::string("cmstallP") + (maria_decides ? "m" : "p") + "-");
    const workload_plan plan{.crash_at = "marker_after_decision_insert:stop",
                             .protocol = commit_protocol::commit_marker,
                             .maria_first = maria_decides,
                             .accounts = bank.accounts,
                             .transfers = 1,
                             .token_prefix = std::string("stallp") + (maria_decides ? "m" : "p")};
    coordinator c = start_coordinator(dir.path, tm_id, bank, plan);
    REQUIRE_MESSAGE(wait_until_stopped(*c.process, seconds(60)), c.output());
    const test::ack_log acks = c.read_acks();
    REQUIRE(acks.in_flight().size() == 1);
    const std::string token = acks.in_flight().front();
    const std::string gtrid = acks.gtrids.at(token);
    REQUIRE(test::prepared_branches_of(tm_id).size() == 1);

    termination t{unique_id(std::string("cmstallP-term") + (maria_decides ? "m" : "p") + "-"), dir.path, {}, {}};
    auto run = start_terminator(t, "0.3");
    std::this_thread::sleep_for(milliseconds(1500));  // two sightings, then waiting on the row lock
    REQUIRE(::kill(c.process->pid(), SIGCONT) == 0);
    finish_run(t, *run);
    const exit_status ended = c.process->wait(seconds(60));
    INFO("terminator:\n" << t.output);
    CHECK_MESSAGE((ended.exited && ended.code == 0), ended.describe() << "\n" << c.output());
    CHECK(c.read_acks().tokens.at(token) == test::ack_state::committed);
    CHECK(t.actions_on(gtrid) != std::vector<std::string>{"rolled_back"});
    terminate_until_done(t, "0.3");
    CHECK(token_on(true, bank, token));
    CHECK(token_on(false, bank, token));
    CHECK(test::prepared_branches_of(tm_id).empty());
    const auto rows = markers_on(!maria_decides, gtrid);
    CHECK((rows.empty() || rows == std::vector<std::string>{"P"}));
    check_invariants_after(bank, c, empty_log(dir.path));
  }
  bank.drop();
}

TEST_CASE("commit-marker: two terminators racing on the same transactions agree, one action per branch") {
  temp_dir dir;
  const test::transfer_bank bank{.suffix = "cmrace", .accounts = 12};
  bank.create();
  std::vector<coordinator> coordinators;
  std::vector<bool> commits;
  for (int k = 0; k < 6; ++k) {
    commits.push_back(k % 2 == 1);
    const workload_plan plan{
        .crash_at = commits.back() ? "marker_after_decision_commit:2" : "marker_after_decision_insert:2",
        .protocol = commit_protocol::commit_marker,
        .maria_first = k >= 3,
        .first_account = 2 * k + 1,
        .accounts = 2,
        .transfers = 3,
        .token_prefix = "race" + std::to_string(k)};
    coordinators.push_back(start_coordinator(dir.path, unique_id("cmrace" + std::to_string(k) + "-"), bank, plan));
  }
  std::vector<std::string> tokens;
  std::vector<std::string> gtrids;
  for (const auto& c : coordinators) {
    const exit_status died = c.process->wait(seconds(60));
    INFO("coordinator " << c.tm_id << ": " << died.describe() << "\n" << c.output());
    REQUIRE(died.killed_by_sigkill());
    const test::ack_log acks = c.read_acks();
    REQUIRE(acks.in_flight().size() == 1);
    tokens.push_back(acks.in_flight().front());
    gtrids.push_back(acks.gtrids.at(tokens.back()));
    delete_log(c);
    wait_for_maria_sessions_to_end(acks.maria_connections);
  }
  const terminator_race race = race_terminators(dir.path, unique_id("cmraceA-"), unique_id("cmraceB-"));
  INFO("terminator A:\n" << race.a.output << "\nterminator B:\n" << race.b.output);
  // The row at the decision RM (PostgreSQL for the first three); the one prepared branch finished once.
  for (std::size_t k = 0; k < coordinators.size(); ++k) {
    check_race_outcome(race, bank, coordinators[k], gtrids[k], tokens[k], commits[k], k < 3, 1, empty_log(dir.path));
  }
  bank.drop();
}

namespace {

// Runs one random-kill round of an 8-thread commit-marker workload; `crash_server`, if given,
// kills a database server mid-load first and starts it again. Answers the violations found.
std::size_t random_round(const fs::path& dir, const test::transfer_bank& bank, int round, std::mt19937& random,
                         const std::function<void()>& crash_server, std::size_t& acknowledged) {
  std::uniform_int_distribution<int> run_for_ms(50, 700);
  const std::string tm_id = unique_id("cmr" + std::to_string(round) + "-");
  const workload_plan plan{.crash_at = "",
                           .protocol = commit_protocol::commit_marker,
                           .maria_first = round % 2 == 0,
                           .threads = 8,
                           .doom_every = 7,
                           .token_prefix = "r" + std::to_string(round)};
  const coordinator c = start_coordinator(dir, tm_id, bank, plan);
  wait_until_ready(c);
  std::this_thread::sleep_for(milliseconds(run_for_ms(random)));
  if (crash_server) {
    crash_server();
    std::this_thread::sleep_for(milliseconds(run_for_ms(random)));
  }
  const exit_status died = c.process->kill();
  CHECK_MESSAGE(died.killed_by_sigkill(), died.describe() << "\n" << c.output());
  const test::ack_log acks = c.read_acks();
  delete_log(c);
  wait_for_maria_sessions_to_end(acks.maria_connections);
  const termination t = terminate_with_tool(dir / tm_id, "cmrt" + std::to_string(round), "0.4");
  INFO("terminator:\n" << t.output);
  const test::invariant_check check = test::check_invariants(bank, tm_id, empty_log(dir), acks);
  CHECK_MESSAGE(check.ok(), check.describe());
  acknowledged += check.acknowledged;
  // Rows converge: no P row of a finished transaction is left once the terminator is done.
  for (const bool postgres : {true, false}) {
    const auto leftover =
        column(*observe(postgres), "SELECT gtrid FROM xatm_marker WHERE state = 'P' AND gtrid LIKE '" + tm_id + ".%'");
    CHECK_MESSAGE(leftover.empty(), leftover.size() << " P rows of finished transactions left");
  }
  if (!check.ok()) test::roll_back_prepared_of(tm_id);
  return check.violations.size();
}

}  // namespace

TEST_CASE("commit-marker: random kills under load, then termination without the log: zero violations") {
  int rounds = 12;
  if (const char* setting = std::getenv("XATM_MARKER_CRASH_ROUNDS")) rounds = std::atoi(setting);
  REQUIRE(rounds > 0);
  temp_dir dir;
  const test::transfer_bank bank{.suffix = "cmrandom"};
  bank.create();
  const auto seed = static_cast<unsigned>(::getpid());
  std::mt19937 random(seed);
  std::size_t violations = 0;
  std::size_t acknowledged = 0;
  for (int round = 1; round <= rounds; ++round) {
    CAPTURE(round);
    violations += random_round(dir.path, bank, round, random, {}, acknowledged);
  }
  MESSAGE("random kills (seed " << seed << "): " << rounds << " rounds, " << acknowledged << " outcomes acknowledged, "
                                << violations << " violations");
  CHECK(violations == 0);
  bank.drop();
}

TEST_CASE("commit-marker: a database server crashes under load (kill -9 mariadbd, PostgreSQL immediate stop)") {
  temp_dir dir;
  const test::transfer_bank bank{.suffix = "cmrmcrash"};
  bank.create();
  std::mt19937 random(static_cast<unsigned>(::getpid()));
  std::size_t violations = 0;
  std::size_t acknowledged = 0;
  violations += random_round(
      dir.path, bank, 1, random,
      [] {
        test::kill_mysql();
        test::start_mysql();
      },
      acknowledged);
  violations += random_round(
      dir.path, bank, 2, random,
      [] {
        test::stop_pg_immediate();
        test::start_pg();
      },
      acknowledged);
  MESSAGE("server crashes: " << acknowledged << " outcomes acknowledged, " << violations << " violations");
  CHECK(violations == 0);
  bank.drop();
}

TEST_CASE("commit-marker: two service instances share the databases; one is killed, the other finishes its work") {
  temp_dir dir;
  const test::transfer_bank bank{.suffix = "cmtwo"};
  bank.create();
  // Both run commit-marker with a background recovery that terminates other TMs' branches seen
  // prepared for 1 s. Disjoint accounts: the dead one's prepared branches hold no lock the other
  // needs.
  auto plan_for = [](int first_account, const std::string& prefix) {
    return workload_plan{.crash_at = "",
                         .protocol = commit_protocol::commit_marker,
                         .recovery_interval_ms = 300,
                         .precommit_timeout_ms = 1000,
                         .first_account = first_account,
                         .accounts = 8,
                         .threads = 4,
                         .token_prefix = prefix};
  };
  const coordinator doomed = start_coordinator(dir.path, unique_id("cmtwoA-"), bank, plan_for(1, "a"));
  const coordinator survivor = start_coordinator(dir.path, unique_id("cmtwoB-"), bank, plan_for(9, "b"));
  wait_until_ready(doomed);
  wait_until_ready(survivor);
  std::this_thread::sleep_for(milliseconds(800));
  const exit_status died = doomed.process->kill();
  CHECK(died.killed_by_sigkill());
  const test::ack_log acks = doomed.read_acks();
  delete_log(doomed);  // its container is gone, with its volume
  // The survivor's recovery finishes every transaction the dead one left prepared within
  // about precommit_timeout plus two recovery intervals (and MariaDB noticing the dead sessions).
  const auto deadline = clock::now() + seconds(20);
  while (!test::prepared_branches_of(doomed.tm_id).empty() && clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(100));
  }
  CHECK_MESSAGE(test::prepared_branches_of(doomed.tm_id).empty(), "the survivor did not finish the dead one's work");
  CHECK_FALSE(survivor.process->poll().has_value());  // still serving
  const exit_status stopped = survivor.process->kill();
  CHECK(stopped.killed_by_sigkill());
  const test::ack_log survivor_acks = survivor.read_acks();
  wait_for_maria_sessions_to_end(survivor_acks.maria_connections);
  const termination t = terminate_with_tool(dir.path / survivor.tm_id, unique_id("cmtwo-term-"), "0.4");
  INFO("terminator:\n" << t.output);
  const test::invariant_check dead = test::check_invariants(bank, doomed.tm_id, empty_log(dir.path), acks);
  CHECK_MESSAGE(dead.ok(), dead.describe());
  delete_log(survivor);
  const test::invariant_check alive = test::check_invariants(bank, survivor.tm_id, empty_log(dir.path), survivor_acks);
  CHECK_MESSAGE(alive.ok(), alive.describe());
  MESSAGE("two instances: the dead one acknowledged " << dead.acknowledged << " outcomes, the survivor "
                                                      << alive.acknowledged);
  bank.drop();
}
