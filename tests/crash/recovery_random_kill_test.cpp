// Random kills: the transfer workload on 8 threads is SIGKILLed by the test at a random instant
// (uniformly 50..600 ms after it started transferring), recovery runs (the library and the
// xatm-recover binary in turn), and every invariant of support/invariants.h must hold after every
// round. One log and one tm_id serve all rounds, as for a service that keeps crashing and
// restarting. Every 10th transfer is refused at prepare, so that acknowledged rollbacks are
// checked too.
//
//   XATM_CRASH_ROUNDS  number of rounds (default 50; hundreds for a long local run)
//   XATM_CRASH_SEED    the random seed (printed; set it to replay a run's kill instants)
// Needs the `servers` fixture.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>

#include "crash/crash_harness.h"

using namespace xatm::crash_test;  // NOLINT(google-build-using-namespace): test file
using xatm::test::ack_state;

namespace {

unsigned long env_number(const char* name, unsigned long fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::stoul(value) : fallback;
}

}  // namespace

TEST_CASE("8 threads killed at random instants: every round recovers and keeps every invariant") {
  const unsigned long rounds = env_number("XATM_CRASH_ROUNDS", 50);
  const auto seed = static_cast<unsigned>(env_number("XATM_CRASH_SEED", std::random_device{}()));
  std::mt19937 random(seed);
  std::uniform_int_distribution<int> kill_after_ms(50, 600);

  scenario s("random_kills");
  unsigned long violations = 0;
  std::size_t in_flight_at_kill = 0;
  std::size_t branches_committed = 0;
  std::size_t branches_rolled_back = 0;
  std::size_t decisions_forgotten = 0;
  int recovery_runs = 0;
  workload_options options;
  options.threads = 8;
  options.transfers = 0;  // until killed
  options.doom_every = 10;
  for (unsigned long round = 1; round <= rounds; ++round) {
    CAPTURE(round);
    CAPTURE(seed);
    workload w(s, options);
    w.wait_ready();
    std::this_thread::sleep_for(std::chrono::milliseconds(kill_after_ms(random)));
    const auto status = w.kill();
    // Anything else means it died by itself: a crash of the workload or the library.
    REQUIRE_MESSAGE(status.killed_by_sigkill(), status.describe() << "\n" << w.err());
    in_flight_at_kill += w.acks().in_flight().size();

    const auto path = round % 2 == 0 ? recovery_path::tool : recovery_path::library;
    const auto summary = recover(s, path);
    recovery_runs += summary.runs;
    branches_committed += summary.count("committed");
    branches_rolled_back += summary.count("rolled_back");
    for (const auto& line : summary.lines) decisions_forgotten += line.state == "gone" ? 1 : 0;

    const auto check = s.check();
    if (!check.ok()) {
      ++violations;
      FAIL_CHECK("round " << round << " (seed " << seed << ", recovered by the " << recovery_path_name(path) << "):\n"
                          << check.describe());
    }
  }
  const auto acks = s.acks();
  MESSAGE(rounds << " rounds (seed " << seed << "), " << violations << " with invariant violations; "
                 << acks.count(ack_state::committed) << " transfers acknowledged committed, "
                 << acks.count(ack_state::rolled_back) << " rolled back, " << acks.count(ack_state::aborted)
                 << " aborted, " << acks.count(ack_state::pending) << " completion pending; " << in_flight_at_kill
                 << " in flight at the kills; recovery committed " << branches_committed << " branches, rolled back "
                 << branches_rolled_back << ", forgot " << decisions_forgotten << " finished decisions, in "
                 << recovery_runs << " recovery runs");
  CHECK(violations == 0);
  CHECK(acks.count(ack_state::committed) > rounds);  // the rounds did real work
  CHECK(acks.count(ack_state::rolled_back) > 0);     // and the doomed transfers were refused
}
