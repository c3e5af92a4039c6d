// Three-phase mode under crashes, stalls and races, against the real servers (docs/three-phase.md,
// docs/design.md section 7). The coordinator is xatm-marker-workload (marker_workload.cpp): it runs
// three-phase transfers from PostgreSQL (branch 1, so the arbiter) to MariaDB and acknowledges
// every outcome in a file. The test kills it at every crash point or at random instants, freezes
// it with SIGSTOP, or leaves several of them dead at once; then it throws the coordinator's log
// away and lets terminators that never saw that log (xatm-recover --terminate with a tm_id of its
// own and no log, or another transaction_manager's recovery) finish the work from the markers
// alone, and checks the crash suite's invariants (support/invariants.h): a token is in
// PostgreSQL iff in MariaDB, acknowledged commits present, acknowledged rollbacks absent, money
// conserved, nothing of the coordinator left prepared. Processes and xatm-recover's JSON go
// through the crash harness (crash_harness.h).
//
// Needs a build with -DXATM_CRASH_POINTS=ON and the `servers` fixture. XATM_3PC_CRASH_ROUNDS sets
// the number of random-kill rounds (default 30).
#include <doctest/doctest.h>
#include <signal.h>
#include <stdlib.h>
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
#include "crash/marker_harness.h"
#include "support/invariants.h"
#include "support/observers.h"
#include "support/servers.h"
#include "support/temp_dir.h"
#include "xatm/connection_settings.h"
#include "mysql/mysql.h"
#include "postgresql/postgresql.h"
#include "xatm/transaction_manager.h"

using namespace xatm;                  // NOLINT(google-build-using-namespace): test file
using namespace xatm::marker_harness;  // NOLINT(google-build-using-namespace): test file
using xatm::test::temp_dir;

// ---- every crash point ---------------------------------------------------------------------

namespace {

// What a crash at one point of a three-phase transaction ends as, once a terminator that has
// neither the coordinator nor its log is done. Before the P marker is at the arbiter nothing is
// decided: the terminator inserts A and rolls back what is prepared. From the P marker on, the
// transaction is committed: the terminator finds P and commits what is left.
struct point_case {
  const char* crash_at;
  bool committed;              // the in-flight transfer's outcome
  const char* arbiter_marker;  // the row at the arbiter (PostgreSQL) afterwards: "", "A" or "P"
  std::size_t min_finished;    // branches the terminator commits or rolls back
  std::size_t max_finished;
};

// The workload does transfers 0..3 on one thread, the fourth doomed (refused at CanCommit). ":3"
// dies in the third transfer (t-0-2) at the points passed once per transfer; after_start is
// passed once per enlist, so after_start:3 dies right after the first branch of the second
// transfer. Branches are prepared and committed in parallel and the "first" points fire at the
// first answer, so at those the other branch may or may not be prepared (or committed) yet.
constexpr point_case point_cases[] = {
    {"after_start:3", false, "", 0, 0},              // one branch active, none prepared: the RMs undo it
    {"before_prepare:3", false, "", 0, 0},           // ended, none prepared
    {"after_first_prepare:3", false, "A", 1, 2},     // prepared, no P: the terminator's A wins
    {"after_all_prepared:3", false, "A", 2, 2},      // CanCommit done, no P: the terminator's A wins
    {"after_arbiter_precommit:3", true, "P", 2, 2},  // the commit point is passed: P at the arbiter only
    {"after_all_precommit:3", true, "P", 2, 2},      // P everywhere, noted in the (lost) log
    {"after_first_commit:3", true, "P", 0, 1},       // committed where not already
    {"after_all_committed:3", true, "P", 0, 0},      // nothing left to do
    {"before_complete_mark:3", true, "P", 0, 0},     // nothing left to do
};

}  // namespace

TEST_CASE("3PC: a crash at every point, then termination without the coordinator's log") {
  temp_dir dir;
  const test::transfer_bank bank{.suffix = "p3points"};
  bank.create();
  {
    // The marker tables, as a DBA would create them.
    child_process install({XATM_RECOVER_BIN, "--install-schema", "--rm", "pg=postgresql:" + test::servers().pg, "--rm",
                           "maria=mariadb:" + test::servers().mysql},
                          {}, dir.path / "install.out", dir.path / "install.err");
    const exit_status status = install.wait(seconds(30));
    INFO(install.out() << install.err());
    REQUIRE(status.exited);
    REQUIRE(status.code == 0);
  }
  int run = 0;
  for (const point_case& c : point_cases) {
    ++run;
    CAPTURE(c.crash_at);
    const std::string tm_id = unique_id("p3pt" + std::to_string(run) + "-");
    const workload_plan plan{
        .crash_at = c.crash_at, .transfers = 4, .doom_every = 4, .token_prefix = "pt" + std::to_string(run)};
    const coordinator coordinator = start_coordinator(dir.path, tm_id, bank, plan);
    const exit_status died = coordinator.process->wait(seconds(60));
    INFO("coordinator: " << died.describe() << "\n" << coordinator.output());
    REQUIRE_MESSAGE(died.killed_by_sigkill(),
                    "not killed at " << c.crash_at << ": is libxatm built with -DXATM_CRASH_POINTS=ON?");
    const test::ack_log acks = coordinator.read_acks();
    REQUIRE(acks.in_flight().size() == 1);
    const std::string token = acks.in_flight().front();
    const std::string gtrid = acks.gtrids.at(token);
    CHECK(gtrid.ends_with(".p3"));
    CHECK(acks.count(test::ack_state::committed) >= 1);

    delete_log(coordinator);
    wait_for_maria_sessions_to_end(acks.maria_connections);
    const termination t = terminate_with_tool(dir.path, unique_id("p3term" + std::to_string(run) + "-"), "1");
    INFO("terminator:\n" << t.output);

    // The expected outcome for this point, the same on both databases.
    check_token(bank, token, c.committed);
    const auto actions = t.actions_on(gtrid);
    CHECK(actions.size() >= c.min_finished);
    CHECK(actions.size() <= c.max_finished);
    for (const auto& action : actions) CHECK(action == (c.committed ? "committed" : "rolled_back"));
    if (std::string_view(c.arbiter_marker) == "A") {
      // An A row stays (docs/three-phase.md): a coordinator stalled before its P could wake.
      CHECK(markers_on(true, gtrid) == std::vector<std::string>{"A"});
    } else {
      // Nothing decided, or P and every branch committed: the terminator deleted the rows of the
      // finished transaction with the run that finished it.
      CHECK(markers_on(true, gtrid).empty());
    }
    // A is only ever written at the arbiter; elsewhere there were P hints at most, and they went.
    CHECK(markers_on(false, gtrid).empty());
    check_invariants_after(bank, coordinator, empty_log(dir.path));
  }
  bank.drop();
}

// ---- a stalled coordinator -------------------------------------------------------------------

namespace {}  // namespace

TEST_CASE("3PC: a coordinator frozen after CanCommit loses to a terminator's A and reports the abort") {
  temp_dir dir;
  const test::transfer_bank bank{.suffix = "p3stall_a", .accounts = 2};
  bank.create();
  const std::string tm_id = unique_id("p3stallA-");
  const auto [c, token, gtrid] = freeze_at(dir.path, bank, tm_id, "after_all_prepared");
  CHECK(test::prepared_branches_of(tm_id).size() == 2);  // CanCommit done: both voted yes
  CHECK(markers_on(true, gtrid).empty());                // PreCommit not begun

  // The coordinator is silent: after two sightings 0.5 s apart a terminator aborts it. It rolls
  // the PostgreSQL branch back at once; MariaDB's is still attached to the frozen session and
  // answers retry (unresolved, exit 1) until that session ends.
  termination first{"p3stallA-term", dir.path, {}, {}};
  {
    auto run = start_terminator(first, "0.5");
    finish_run(first, *run);
  }
  INFO("terminator:\n" << first.output);
  CHECK(first.exit_codes.back() == 1);
  CHECK(markers_on(true, gtrid) == std::vector<std::string>{"A"});
  for (const auto& line : first.lines_of(tm_id)) {
    CHECK(line.result == (line.rm == "pg" ? "rolled_back" : "unresolved"));
  }
  CHECK(first.actions_on(gtrid) == std::vector<std::string>{"rolled_back"});
  CHECK_FALSE(token_on(true, bank, token));

  // The coordinator wakes up, tries to pre-commit, finds A, aborts and says so.
  REQUIRE(::kill(c.process->pid(), SIGCONT) == 0);
  const exit_status ended = c.process->wait(seconds(60));
  CHECK_MESSAGE((ended.exited && ended.code == 0), ended.describe() << "\n" << c.output());
  CHECK(c.read_acks().tokens.at(token) == test::ack_state::rolled_back);
  const std::string why = reasons(c.acks)[token];
  CHECK_MESSAGE(why.find("terminated it while this coordinator was stalled") != std::string::npos, why);
  CHECK_MESSAGE(why.find("marker A at the arbiter") != std::string::npos, why);
  CHECK_FALSE(token_on(true, bank, token));
  CHECK_FALSE(token_on(false, bank, token));
  CHECK(markers_on(true, gtrid) == std::vector<std::string>{"A"});  // the late P never replaced it

  // One more termination pass: nothing of it is left prepared anywhere.
  terminate_until_done(first, "0.5");
  CHECK(first.actions_on(gtrid) == std::vector<std::string>{"rolled_back"});  // nothing more was done
  CHECK(test::prepared_branches_of(tm_id).empty());
  check_invariants_after(bank, c, empty_log(dir.path));
  bank.drop();
}

TEST_CASE("3PC: a coordinator frozen after PreCommit is finished by another TM's recovery and reports the commit") {
  temp_dir dir;
  const test::transfer_bank bank{.suffix = "p3stall_p", .accounts = 2};
  bank.create();
  const std::string tm_id = unique_id("p3stallP-");
  const auto [c, token, gtrid] = freeze_at(dir.path, bank, tm_id, "after_arbiter_precommit");
  CHECK(markers_on(true, gtrid) == std::vector<std::string>{"P"});  // the commit point is passed
  CHECK(markers_on(false, gtrid).empty());                          // the hint is not written yet

  // The terminator this time: another transaction manager (another tm_id, its own log) whose
  // recovery sees the branches prepared twice, precommit_timeout apart.
  const fs::path terminator_log = dir.path / "terminator.db";
  {
    tm_options options;
    options.tm_id = unique_id("p3stallP-term-");
    options.log_path = terminator_log.string();
    options.protocol = commit_protocol::three_phase;  // a three-phase TM terminates others' branches
    options.precommit_timeout = milliseconds(500);
    options.recovery_interval = milliseconds(0);
    transaction_manager terminator(options);
    terminator.register_rm("pg", "postgresql", test::servers().pg);
    terminator.register_rm("maria", "mariadb", test::servers().mysql);
    auto results_for = [&](const recovery_report& report) {
      std::map<std::string, recovery_result> results;
      for (const auto& item : report.items) {
        if (item.gtrid == gtrid) results[item.rm_name] = item.result;
      }
      return results;
    };
    const auto first = results_for(terminator.recover_now());  // the first sighting: too early to act
    REQUIRE(first.contains("pg"));
    CHECK(first.at("pg") == recovery_result::unresolved);
    std::this_thread::sleep_for(milliseconds(600));
    const auto second = results_for(terminator.recover_now());
    REQUIRE(second.contains("pg"));
    CHECK(second.at("pg") == recovery_result::committed);  // P at the arbiter
    // MariaDB's branch is still attached to the frozen session: retry, unresolved.
    if (second.contains("maria")) CHECK(second.at("maria") == recovery_result::unresolved);
    CHECK(token_on(true, bank, token));

    // The coordinator wakes up and commits what is left; its PostgreSQL branch is already gone,
    // which after the commit point means committed.
    REQUIRE(::kill(c.process->pid(), SIGCONT) == 0);
    const exit_status ended = c.process->wait(seconds(60));
    CHECK_MESSAGE((ended.exited && ended.code == 0), ended.describe() << "\n" << c.output());
    CHECK(c.read_acks().tokens.at(token) == test::ack_state::committed);
    CHECK(token_on(true, bank, token));
    CHECK(token_on(false, bank, token));

    // One more recovery pass: nothing of it is prepared any more, nothing to do.
    CHECK(results_for(terminator.recover_now()).empty());
    CHECK(test::prepared_branches_of(tm_id).empty());
  }  // closed: its log is complete on disk
  check_invariants_after(bank, c, terminator_log);
  bank.drop();
}

// ---- racing terminators ----------------------------------------------------------------------

TEST_CASE("3PC: two terminators racing on the same transactions: one outcome each, never both") {
  temp_dir dir;
  const test::transfer_bank bank{.suffix = "p3race", .accounts = 12};
  bank.create();
  for (int round = 1; round <= 2; ++round) {
    CAPTURE(round);
    // Six dead coordinators, one transfer of each left prepared: three killed before the commit
    // point (after CanCommit), three right after it (P at the arbiter, nowhere else). Disjoint
    // accounts: no coordinator waits for another's locks.
    std::vector<coordinator> coordinators;
    std::vector<bool> commits;
    for (int k = 0; k < 6; ++k) {
      commits.push_back(k % 2 == 1);
      const workload_plan plan{.crash_at = commits.back() ? "after_arbiter_precommit:2" : "after_all_prepared:2",
                               .first_account = 2 * k + 1,
                               .accounts = 2,
                               .transfers = 3,
                               .token_prefix = "race" + std::to_string(round) + "-" + std::to_string(k)};
      const std::string tm_id = unique_id("p3race" + std::to_string(round) + std::to_string(k) + "-");
      coordinators.push_back(start_coordinator(dir.path, tm_id, bank, plan));
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

    // Two terminators at once, with different tm_ids and logs of their own. One that answers 1
    // (a branch the other was finishing at that instant) runs again.
    // Two terminators at once, with different tm_ids and logs of their own.
    const terminator_race race =
        race_terminators(dir.path, "p3raceA" + std::to_string(round), "p3raceB" + std::to_string(round));
    INFO("terminator A:\n" << race.a.output << "\nterminator B:\n" << race.b.output);

    // At the arbiter (PostgreSQL); both branches finished once.
    for (std::size_t k = 0; k < coordinators.size(); ++k) {
      check_race_outcome(race, bank, coordinators[k], gtrids[k], tokens[k], commits[k], true, 2, empty_log(dir.path));
    }
  }
  bank.drop();
}

// ---- random kills under load -----------------------------------------------------------------

TEST_CASE("3PC: random kills under load, then termination without the log: zero violations") {
  int rounds = 30;
  if (const char* setting = std::getenv("XATM_3PC_CRASH_ROUNDS")) rounds = std::atoi(setting);
  REQUIRE(rounds > 0);
  temp_dir dir;
  const test::transfer_bank bank{.suffix = "p3random"};
  bank.create();
  const auto seed = static_cast<unsigned>(::getpid());
  std::mt19937 random(seed);
  std::uniform_int_distribution<int> run_for_ms(50, 700);
  std::size_t violations = 0;
  std::size_t acknowledged = 0;
  std::size_t in_flight = 0;
  std::size_t leftover_markers = 0;
  std::map<std::string, std::size_t> finished_by_terminators;  // "committed" / "rolled_back" -> branches
  for (int round = 1; round <= rounds; ++round) {
    CAPTURE(round);
    const std::string tm_id = unique_id("p3r" + std::to_string(round) + "-");
    const workload_plan plan{
        .crash_at = "", .threads = 4, .doom_every = 7, .token_prefix = "r" + std::to_string(round)};
    const coordinator c = start_coordinator(dir.path, tm_id, bank, plan);
    wait_until_ready(c);
    std::this_thread::sleep_for(milliseconds(run_for_ms(random)));
    const exit_status died = c.process->kill();
    CHECK_MESSAGE(died.killed_by_sigkill(), died.describe() << "\n" << c.output());
    const test::ack_log acks = c.read_acks();
    delete_log(c);
    wait_for_maria_sessions_to_end(acks.maria_connections);
    const termination t = terminate_with_tool(dir.path / tm_id, "p3rt" + std::to_string(round), "0.5");
    INFO("terminator:\n" << t.output);
    for (const auto& line : t.lines_of(tm_id)) {
      if (line.result == "committed" || line.result == "rolled_back") ++finished_by_terminators[line.result];
    }
    const test::invariant_check check = test::check_invariants(bank, tm_id, empty_log(dir.path), acks);
    CHECK_MESSAGE(check.ok(), check.describe());
    violations += check.violations.size();
    // Markers converge: the terminator deleted the P rows of every transaction it saw finished.
    const auto prepared_pg = test::prepared_gtrids(*observe(true), tm_id);
    const auto prepared_maria = test::prepared_gtrids(*observe(false), tm_id);
    for (const bool postgres : {true, false}) {
      for (const auto& gtrid :
           column(*observe(postgres),
                  "SELECT gtrid FROM xatm_marker WHERE state = 'P' AND gtrid LIKE '" + tm_id + ".%'")) {
        const bool unfinished = prepared_pg.contains(gtrid) || prepared_maria.contains(gtrid);
        CHECK_MESSAGE(unfinished,
                      "P marker of a finished transaction left on " << (postgres ? "pg" : "maria") << ": " << gtrid);
        leftover_markers += unfinished ? 0 : 1;
      }
    }
    acknowledged += check.acknowledged;
    in_flight += acks.in_flight().size();
    if (!check.ok()) test::roll_back_prepared_of(tm_id);
  }
  MESSAGE("random kills (seed " << seed << "): " << rounds << " rounds, " << acknowledged << " outcomes acknowledged, "
                                << in_flight << " transfers in flight at the kills, "
                                << finished_by_terminators["committed"] << " branches committed and "
                                << finished_by_terminators["rolled_back"] << " rolled back by terminators, "
                                << violations << " violations, " << leftover_markers
                                << " P markers of finished transactions left");
  CHECK(violations == 0);
  bank.drop();
}
