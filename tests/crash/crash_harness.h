// crash/crash_harness.h: what every crash test does: set up a scenario (a private decision log,
// a tm_id of its own, fresh bank tables), run the workload process (crash_workload.cpp) until a
// crash point or the test kills it, recover (through the library or the xatm-recover binary),
// and check the invariants of support/invariants.h.
//
// The workload and the tool run as separate processes (posix_spawn): crash points read
// XATM_CRASH_AT once per process, and a SIGKILL must hit a whole process. The test process never
// has XATM_CRASH_AT set itself. Use everything here from the test's main thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/child_process.h"
#include "support/invariants.h"
#include "support/temp_dir.h"
#include "xatm/transaction_manager.h"

namespace xatm::crash_test {

using namespace std::chrono_literals;

// Child processes (support/child_process.h), by their short names here.
using test::child_process;
using test::exit_status;

// One scenario's world: a private 0700 dir (decision log, ack files, tool output), a tm_id no
// other test uses, fresh bank tables named after the scenario. The destructor rolls back what a
// failed test left prepared, drops the tables and removes the dir.
class scenario {
 public:
  // name: [a-z0-9_]+, unique among the crash tests (it names the tables).
  explicit scenario(std::string name, int accounts = 16);
  ~scenario();
  scenario(const scenario&) = delete;
  scenario& operator=(const scenario&) = delete;

  const std::string& name() const { return name_; }
  const std::string& tm_id() const { return tm_id_; }
  const test::transfer_bank& bank() const { return bank_; }
  std::filesystem::path log_path() const { return dir_.path / "decisions.db"; }
  // A fresh file in the scenario's dir: "<stem>.<n>".
  std::filesystem::path next_file(const std::string& stem);
  // What every workload run of this scenario acknowledged.
  test::ack_log acks() const;
  // check_invariants() over the scenario's bank, tm_id, log and acknowledgements.
  test::invariant_check check() const;

 private:
  std::string name_;
  std::string tm_id_;
  test::temp_dir dir_{"xatm-recovery-crash"};  // 0700, as the log demands
  test::transfer_bank bank_;
  int files_ = 0;
};

// Checks the invariants; each violation fails the test, naming the scenario and `when`.
void check_invariants(const scenario& s, const std::string& when);

struct workload_options {
  int threads = 1;
  long transfers = 20;   // per thread; 0: until killed
  std::string crash_at;  // XATM_CRASH_AT for the child; empty: none
  int doom_every = 0;    // every K-th transfer is refused at prepare (0: none)
  // The accounts it uses (default: all of the bank's). Runs with disjoint ranges never wait for
  // each other's locks, which branches left prepared hold until they are resolved.
  int first_account = 1;
  int last_account = 0;  // 0: the bank's last
  bool skip_startup_recovery = false;
  std::chrono::milliseconds commit_retry_window = 1000ms;
  std::chrono::milliseconds prepare_timeout = 5000ms;
  std::string log_level = "error";  // the workload's xatm log on its stderr (see err())
};

// One run of xatm-crash-workload on the scenario's log, with an ack file of its own.
class workload {
 public:
  workload(scenario& s, const workload_options& options);

  // Waits until the child finished its startup recovery and started transferring. Fails the
  // test if it ends first or takes longer than `timeout`.
  void wait_ready(std::chrono::milliseconds timeout = 30s);
  // Waits until the child ends by itself (a crash point), then until MariaDB has noticed that
  // its sessions are gone (a prepared branch stays attached to its session until then).
  exit_status wait(std::chrono::milliseconds timeout = 60s);
  // SIGKILL now; then as wait().
  exit_status kill();
  // This run's acknowledgements.
  test::ack_log acks() const;
  std::string err() const { return process_.err(); }

 private:
  void wait_for_sessions_gone() const;

  std::filesystem::path ack_path_;
  child_process process_;
};

// A transfer a crashed workload left in flight.
struct leftover {
  std::string token;
  std::string gtrid;
};
// Waits for a workload that must die at its crash point and answers its one transfer in flight.
leftover in_flight_of(workload& w);

// Two leftovers of two crashed TM processes on the scenario's log: a transfer whose decision is
// durable (prepared on both RMs: recovery must commit it) and one prepared without a decision
// (recovery must roll it back). The second process is kept from recovering the first one's work
// at its start (--skip-startup-recovery); they use disjoint accounts, so that it never waits for
// the first one's locks. Four branches of the scenario's tm_id are then prepared.
struct leftovers {
  leftover to_commit;
  leftover to_roll_back;
};
leftovers leave_prepared_work(scenario& s);

// Starts xatm-recover --json on the scenario's log and both servers (optionally with a crash
// point set for it).
class tool_process {
 public:
  explicit tool_process(scenario& s, const std::string& crash_at = {});
  exit_status wait(std::chrono::milliseconds timeout = 60s) { return process_.wait(timeout); }
  std::string out() const { return process_.out(); }
  std::string err() const { return process_.err(); }

 private:
  child_process process_;
};

// One branch or decision a recovery run reported, for the scenario's tm_id only.
struct recovery_line {
  std::string rm;
  std::string gtrid;
  std::string state;   // "prepared" or "gone"
  std::string result;  // recovery_result_code(): "committed", "rolled_back", "already_done", ...
};

// Parses the branches of xatm-recover's --json output that belong to tm_id.
std::vector<recovery_line> parse_tool_report(const std::string& json, const std::string& tm_id);

// What recovery did, summed over its runs (a run that leaves work unresolved is repeated).
struct recovery_summary {
  std::vector<recovery_line> lines;
  int runs = 0;
  std::size_t count(const std::string& result) const;
  // What happened to one global transaction: "committed", "rolled back", "decision forgotten"
  // (its branches were all gone already, the COMMIT record was dropped), "already done by
  // someone else" (a branch vanished between the scan and the action) or "nothing".
  std::string outcome_of(const std::string& gtrid) const;
};

enum class recovery_path { library, tool };
const char* recovery_path_name(recovery_path path);

// A transaction_manager on the scenario's log (taking its lock) with "pg" and "maria"
// registered, background recovery off.
std::unique_ptr<transaction_manager> open_transaction_manager(const scenario& s);

// A new transaction_manager on the scenario's log: recover_now() until nothing is unresolved
// (a few seconds at most), then its first begin(); then it is closed. Fails the test on a
// heuristic outcome or when recovery does not converge.
recovery_summary recover_with_library(const scenario& s);
// xatm-recover until it exits 0: exit 1 (a MariaDB session not yet gone) is retried for a few
// seconds; any other exit code fails the test.
recovery_summary recover_with_tool(scenario& s);
recovery_summary recover(scenario& s, recovery_path path);

// True when the ledger on PostgreSQL holds the token.
bool ledger_has(const test::transfer_bank& bank, const std::string& token);

// Waits until both servers accept connections again (after start_mysql() / start_pg()).
void wait_for_servers(std::chrono::seconds timeout = 60s);

}  // namespace xatm::crash_test
