// RM crashes: MariaDB killed with kill -9 and PostgreSQL stopped immediately (its crash-like
// shutdown), under running transfers and under branches a crashed TM left prepared. Prepared
// branches must survive the server crash and be resolved as the decision log says; transfers cut
// off in phase 1 or 2 must end consistently; the TM must go on working once the server is back.
// Runs alone (RUN_SERIAL): it takes the servers down. Needs the `servers` fixture.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>

#include "crash/crash_harness.h"
#include "support/servers.h"

using namespace xatm::crash_test;  // NOLINT(google-build-using-namespace): test file
using xatm::test::ack_state;

namespace {

enum class server { mariadb, postgresql };

std::string server_name(server victim) { return victim == server::mariadb ? "mariadb" : "postgresql"; }

void crash(server victim) {
  if (victim == server::mariadb) {
    xatm::test::kill_mysql();
  } else {
    xatm::test::stop_pg_immediate();
  }
}

// Whatever happens in a case (a failed REQUIRE throws), the servers are up again after it, for
// the scenario's cleanup, the next case and the tests that run after this one: declare it after
// the scenario.
struct servers_back_up {
  servers_back_up() = default;
  servers_back_up(const servers_back_up&) = delete;
  servers_back_up& operator=(const servers_back_up&) = delete;
  ~servers_back_up() {
    try {
      restart_both();
    } catch (const std::exception& e) {
      MESSAGE("could not restart the servers: " << e.what());
    } catch (...) {
      // wait_for_servers() failed the test already; a destructor must not throw.
    }
  }
  static void restart_both() {
    xatm::test::start_mysql();  // a no-op for a server that runs
    xatm::test::start_pg();
    wait_for_servers();
  }
};

std::size_t occurrences(const std::string& text, const std::string& part) {
  std::size_t found = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++found;
  return found;
}

std::size_t count_of(const std::vector<std::string>& gtrids, const std::string& gtrid) {
  return static_cast<std::size_t>(std::count(gtrids.begin(), gtrids.end(), gtrid));
}

}  // namespace

TEST_CASE("a server crashes under 4 threads of transfers: the TM goes on after its restart, recovery converges") {
  for (server victim : {server::mariadb, server::postgresql}) {
    const std::string name = server_name(victim);
    CAPTURE(name);
    servers_back_up::restart_both();
    scenario s("outage_" + name);
    const servers_back_up guard;
    workload_options options;
    options.threads = 4;
    options.transfers = 0;  // until killed
    // Short windows, so that transfers cut off by the outage finish (or are handed to recovery)
    // while it lasts.
    options.commit_retry_window = 1000ms;
    options.prepare_timeout = 2000ms;
    options.log_level = "info";  // to count below in which phase the outage cut transfers off
    workload w(s, options);
    w.wait_ready();
    std::this_thread::sleep_for(300ms);

    // The server dies under transfers in every phase: SQL, prepare, decision, commit.
    crash(victim);
    std::this_thread::sleep_for(500ms);
    servers_back_up::restart_both();
    const auto at_restart = w.acks();
    // The workload reconnects and commits again (a few seconds at most: rows locked by branches
    // left prepared make some transfers wait for their lock timeout).
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (w.acks().count(ack_state::committed) <= at_restart.count(ack_state::committed) &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(50ms);
    }
    const auto status = w.kill();
    REQUIRE_MESSAGE(status.killed_by_sigkill(), status.describe() << "\n" << w.err());
    const auto acks = w.acks();
    CHECK_MESSAGE(acks.count(ack_state::committed) > at_restart.count(ack_state::committed),
                  "no transfer committed after " << name << " came back");

    const auto summary = recover(s, victim == server::mariadb ? recovery_path::tool : recovery_path::library);
    check_invariants(s, "after " + name + " crashed under transfers and recovery ran");
    // What the outage cut off, from the workload's log: prepares that failed (phase 1) and
    // commits that had to be retried after the decision (phase 2).
    const std::string log = w.err();
    const auto failed_prepares =
        occurrences(log, std::string("prepare failed on ") + (victim == server::mariadb ? "maria" : "pg"));
    const auto retried_commits = occurrences(log, "failed, retrying");
    MESSAGE(name << " crashed under transfers: " << acks.count(ack_state::committed) << " committed ("
                 << acks.count(ack_state::committed) - at_restart.count(ack_state::committed) << " after the restart), "
                 << acks.count(ack_state::aborted) << " aborted before commit, " << failed_prepares
                 << " rolled back at prepare, " << retried_commits << " commits retried after the decision ("
                 << acks.count(ack_state::pending) << " left completion pending), " << acks.count(ack_state::in_doubt)
                 << " in doubt, " << acks.in_flight().size() << " in flight at the kill; recovery committed "
                 << summary.count("committed") << " branches and rolled back " << summary.count("rolled_back"));
  }
}

TEST_CASE("branches a crashed TM left behind survive crashes of both servers and are resolved by the log") {
  struct crash_case {
    const char* crash_at;
    const char* outcome;  // what recovery does with the transfer in flight
    bool committed;
    std::size_t prepared;  // its branches left prepared
    recovery_path path;
  };
  constexpr crash_case cases[] = {
      // Phase 1: prepared, no decision: the servers must keep both branches, recovery rolls back.
      {"after_all_prepared:3", "rolled back", false, 2, recovery_path::tool},
      // Decision durable: the servers must keep both branches, recovery commits them.
      {"after_decision_durable:3", "committed", true, 2, recovery_path::library},
      // Phase 2 done: the servers must keep the commits; recovery only drops the decision.
      {"after_first_commit:3", "decision forgotten", true, 0, recovery_path::tool},
  };
  for (const auto& c : cases) {
    const std::string crash_at = c.crash_at;
    CAPTURE(crash_at);
    servers_back_up::restart_both();
    scenario s("rm_crash_" + crash_at.substr(0, crash_at.find(':')));
    const servers_back_up guard;
    workload w(s, {.crash_at = c.crash_at});
    const leftover in_flight = in_flight_of(w);
    CHECK(count_of(xatm::test::prepared_branches_of(s.tm_id()), in_flight.gtrid) == c.prepared);

    crash(server::mariadb);
    crash(server::postgresql);
    servers_back_up::restart_both();
    CHECK(count_of(xatm::test::prepared_branches_of(s.tm_id()), in_flight.gtrid) == c.prepared);

    const auto summary = recover(s, c.path);
    CHECK(summary.outcome_of(in_flight.gtrid) == std::string(c.outcome));
    CHECK(ledger_has(s.bank(), in_flight.token) == c.committed);
    check_invariants(s, "after a TM crash at " + crash_at + ", both servers crashed, and recovery");
  }
}
