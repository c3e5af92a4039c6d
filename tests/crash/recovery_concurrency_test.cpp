// Recovery against recovery, and against a live TM: two xatm-recover runs started at once on one
// log never both act (one exits 4 "busy", or the second finds nothing left when the first was
// already done), and the tool refuses a log that a running transaction manager holds, in another
// process or in this one, without touching anything. Needs the `servers` fixture.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <string>
#include <utility>

#include "crash/crash_harness.h"

using namespace xatm::crash_test;  // NOLINT(google-build-using-namespace): test file

namespace {

constexpr int exit_clean = 0;
constexpr int exit_busy = 4;

bool acted(const recovery_line& line) { return line.result == "committed" || line.result == "rolled_back"; }

// The tool runs with --json: a busy log is its error object on stdout, code "busy".
bool says_busy(const std::string& out) { return out.find("\"code\": \"busy\"") != std::string::npos; }

}  // namespace

TEST_CASE("two xatm-recover runs at once: one acts, the other is busy, no branch is resolved twice") {
  scenario s("two_tools");
  int overlapped = 0;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    CAPTURE(attempt);
    leave_prepared_work(s);  // four branches: two to commit, two to roll back

    tool_process first(s);
    tool_process second(s);
    const auto first_status = first.wait();
    const auto second_status = second.wait();
    INFO("first: " << first_status.describe() << "\n" << first.out() << first.err());
    INFO("second: " << second_status.describe() << "\n" << second.out() << second.err());
    REQUIRE(first_status.exited);
    REQUIRE(second_status.exited);
    const std::pair codes{first_status.code, second_status.code};
    CHECK((codes == std::pair{exit_clean, exit_busy} || codes == std::pair{exit_busy, exit_clean} ||
           codes == std::pair{exit_clean, exit_clean}));
    if (first_status.code == exit_busy) CHECK(says_busy(first.out()));
    if (second_status.code == exit_busy) CHECK(says_busy(second.out()));
    overlapped += first_status.code == exit_busy || second_status.code == exit_busy ? 1 : 0;

    // Every branch acted on once, by one of them.
    std::multiset<std::string> resolved;
    for (const auto* tool : {&first, &second}) {
      for (const auto& line : parse_tool_report(tool->out(), s.tm_id())) {
        if (acted(line)) resolved.insert(line.rm + " " + line.gtrid);
      }
    }
    CHECK(resolved.size() == 4);
    CHECK(std::set<std::string>(resolved.begin(), resolved.end()).size() == resolved.size());
    check_invariants(s, "after two concurrent xatm-recover runs");
  }
  MESSAGE("two xatm-recover runs overlapped (one answered busy) in " << overlapped << " of 3 attempts");
}

TEST_CASE("xatm-recover refuses a log held by a running transaction manager and touches nothing") {
  scenario s("tool_vs_tm");

  SUBCASE("a TM in another process") {
    const leftovers left = leave_prepared_work(s);
    // A live workload TM, kept from recovering at its start so that the work is still there.
    workload_options options;
    options.transfers = 0;  // until killed
    options.first_account = 1;
    options.last_account = 4;  // away from the leftovers' locks
    options.skip_startup_recovery = true;
    workload live(s, options);
    live.wait_ready();
    tool_process tool(s);
    const auto status = tool.wait();
    CHECK_MESSAGE((status.exited && status.code == exit_busy), status.describe() << "\n" << tool.out() << tool.err());
    CHECK(says_busy(tool.out()));
    CHECK(parse_tool_report(tool.out(), s.tm_id()).empty());
    // The leftovers are still prepared (the live TM's own transfers may be prepared beside them).
    const auto prepared = xatm::test::prepared_branches_of(s.tm_id());
    CHECK(std::count(prepared.begin(), prepared.end(), left.to_commit.gtrid) == 2);
    CHECK(std::count(prepared.begin(), prepared.end(), left.to_roll_back.gtrid) == 2);
    // Once the TM is gone the tool may act.
    CHECK(live.kill().killed_by_sigkill());
    recover_with_tool(s);
    check_invariants(s, "after the live TM was killed and xatm-recover ran");
  }

  SUBCASE("a TM in this process") {
    const leftovers left = leave_prepared_work(s);
    {
      const auto tm = open_transaction_manager(s);
      tool_process tool(s);
      const auto status = tool.wait();
      CHECK_MESSAGE((status.exited && status.code == exit_busy), status.describe() << "\n" << tool.out() << tool.err());
      CHECK(says_busy(tool.out()));
      CHECK(xatm::test::prepared_branches_of(s.tm_id()).size() == 4);
      // The TM that holds the log recovers by itself.
      const auto report = tm->recover_now();
      CHECK_FALSE(report.unresolved());
    }
    check_invariants(s, "after the TM holding the log recovered");
    CHECK(ledger_has(s.bank(), left.to_commit.token));
    CHECK_FALSE(ledger_has(s.bank(), left.to_roll_back.token));
  }
}
