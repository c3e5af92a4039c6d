// Recovery after a crash at every named point of the two-phase protocol, and after a crash inside
// recovery itself. A workload process (crash_workload.cpp) runs transfers PostgreSQL -> MariaDB
// and SIGKILLs itself at the point (XATM_CRASH_AT=<point>:3, so that earlier transfers finished);
// recovery runs once through the library (a new transaction_manager on the same log) and once
// through the xatm-recover binary; then the invariants of support/invariants.h must hold and the
// transfer that was in flight must have the outcome its crash point dictates: before the decision
// is durable, presumed abort; after it, commit. Needs the `servers` fixture.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "crash/crash_harness.h"

using namespace xatm::crash_test;  // NOLINT(google-build-using-namespace): test file

namespace {

// What recovery must do with the transfer in flight at each crash point (docs/design.md section 4).
struct crash_point_case {
  const char* point;
  const char* outcome;      // recovery_summary::outcome_of() of the in-flight transaction
  const char* alternative;  // another correct outcome, when the RMs race the crash (or nullptr)
  bool committed;           // the in-flight transfer is in both ledgers afterwards
};

constexpr crash_point_case crash_points[] = {
    // Before any prepare: the RMs roll the dead session's branches back by themselves.
    {"after_start", "nothing", nullptr, false},
    {"before_prepare", "nothing", nullptr, false},
    // Prepared without a decision: presumed abort. (At the first prepare's answer the other
    // PREPARE was sent too: its RM finishes it after the crash.)
    {"after_first_prepare", "rolled back", nullptr, false},
    {"after_all_prepared", "rolled back", nullptr, false},
    {"before_decision_write", "rolled back", nullptr, false},
    // The decision is durable: commit.
    {"after_decision_durable", "committed", nullptr, true},
    // At the first commit's answer the other COMMIT was sent too: its RM normally finishes it
    // after the crash, and recovery only drops the COMMIT record; if it still finds the branch
    // prepared, it commits it.
    {"after_first_commit", "decision forgotten", "committed", true},
    // The branches committed already; only the COMMIT record is left, and recovery drops it.
    {"after_all_committed", "decision forgotten", nullptr, true},
    {"before_complete_mark", "decision forgotten", nullptr, true},
};

}  // namespace

TEST_CASE("a crash at every point of the two-phase protocol is recovered by the library and by the tool") {
  std::string table;
  for (const auto& c : crash_points) {
    for (recovery_path path : {recovery_path::library, recovery_path::tool}) {
      const std::string point = c.point;
      const std::string via = recovery_path_name(path);
      CAPTURE(point);
      CAPTURE(via);
      scenario s("point_" + point + "_" + via);
      workload w(s, {.crash_at = point + ":3"});
      const leftover in_flight = in_flight_of(w);                    // dead by SIGKILL at the point
      CHECK(w.acks().count(xatm::test::ack_state::committed) >= 1);  // after some finished work

      const auto summary = recover(s, path);
      const std::string outcome = summary.outcome_of(in_flight.gtrid);
      CHECK_MESSAGE((outcome == c.outcome || (c.alternative != nullptr && outcome == c.alternative)),
                    "recovery's outcome: " << outcome);
      CHECK(ledger_has(s.bank(), in_flight.token) == c.committed);
      check_invariants(s, "after a crash at " + point + ", recovered by the " + via);
      table += "  " + point + " (" + via + "): " + outcome + ", " + std::to_string(summary.count("committed")) +
               " branches committed, " + std::to_string(summary.count("rolled_back")) + " rolled back\n";
    }
  }
  MESSAGE("what recovery did with the transfer in flight at each crash point:\n" << table);
}

TEST_CASE("recovery killed after its scan or after its first action converges when run again") {
  for (const std::string point : {"recovery_after_scan", "recovery_after_first_resolve"}) {
    for (recovery_path path : {recovery_path::tool, recovery_path::library}) {
      const std::string via = recovery_path_name(path);
      CAPTURE(point);
      CAPTURE(via);
      scenario s(point + "_" + via);
      const leftovers left = leave_prepared_work(s);

      // xatm-recover, or a TM process whose first begin() runs recovery, dies inside recovery.
      exit_status status;
      std::string output;
      if (path == recovery_path::tool) {
        tool_process crashing(s, point);
        status = crashing.wait();
        output = crashing.out() + crashing.err();
      } else {
        workload crashing(s, {.crash_at = point});
        status = crashing.wait();
        output = crashing.err();
        CHECK_FALSE(crashing.acks().ready);
      }
      CHECK_MESSAGE(status.killed_by_sigkill(), status.describe() << "\n" << output);
      // After the scan nothing was done yet; after the first action exactly one branch is resolved.
      const std::size_t expected_left = point == "recovery_after_scan" ? 4 : 3;
      CHECK(xatm::test::prepared_branches_of(s.tm_id()).size() == expected_left);

      // Run again: it resolves exactly what is left and converges.
      const auto summary = recover(s, path);
      CHECK(summary.count("committed") + summary.count("rolled_back") == expected_left);
      check_invariants(s, "after recovery (" + via + ") was killed at " + point + " and run again");
      CHECK(ledger_has(s.bank(), left.to_commit.token));
      CHECK_FALSE(ledger_has(s.bank(), left.to_roll_back.token));
    }
  }
}
