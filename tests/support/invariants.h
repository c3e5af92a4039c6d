// support/invariants.h: the transfer bank of the crash tests and the one invariant checker they
// all use (docs/design.md section 10).
//
// A transfer moves money from an account in PostgreSQL to an account in MariaDB and writes a
// ledger row with the same unique token on both sides. The workload process acknowledges the
// outcome of every commit() in an append-only ack file; after recovery, check_invariants() holds
// the databases, the RMs' prepared lists and the decision log against those acknowledgements.
// Call these from the test's main thread, with the `servers` fixture running.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace xatm::test {

// The tables `crash_<suffix>_accounts(id, balance)` and `crash_<suffix>_ledger(token, account,
// amount)`, on both servers. PostgreSQL's ledger references its accounts through a deferred
// foreign key, so a ledger row for account 0 (which does not exist) fails at PREPARE TRANSACTION:
// that is how the workload makes a transfer that is refused at commit time.
struct transfer_bank {
  std::string suffix;  // [a-z0-9_]+, unique per scenario
  int accounts = 16;
  long initial_balance = 1'000'000;

  std::string accounts_table() const { return "crash_" + suffix + "_accounts"; }
  std::string ledger_table() const { return "crash_" + suffix + "_ledger"; }
  // The sum of every balance on both servers, which no transfer changes.
  long initial_total() const { return 2L * accounts * initial_balance; }

  // Drops and creates both tables on both servers and fills the accounts.
  void create() const;
  // Drops both tables on both servers (best effort: failures are ignored).
  void drop() const noexcept;
};

// One line of the ack file is `<token> <state> <gtrid>`; `# maria_connection <id>` and
// `# pg_connection <pid>` lines name the workload's server sessions and `# ready <pid>` says it
// started transferring.
enum class ack_state {
  begun,        // began, no outcome yet (in flight when the process died)
  committed,    // commit() returned committed
  pending,      // commit() returned completion_pending: committed, recovery finishes it
  rolled_back,  // commit() threw rolled_back_error or timeout_error
  aborted,      // failed before commit() (SQL or connection error) and was rolled back
  in_doubt,     // commit() threw in_doubt_error
  heuristic,    // commit() threw heuristic_error
  log_failure,  // commit() threw log_failure_error
  unknown,      // commit() threw something else
};

inline constexpr const char* ack_state_names[] = {"begun",    "committed", "pending",     "rolled_back", "aborted",
                                                  "in_doubt", "heuristic", "log_failure", "unknown"};
inline const char* ack_state_name(ack_state state) { return ack_state_names[static_cast<int>(state)]; }

struct ack_log {
  std::map<std::string, ack_state> tokens;    // the last state written for each token
  std::map<std::string, std::string> gtrids;  // token -> gtrid
  std::vector<long> maria_connections;        // CONNECTION_ID() of each MariaDB session opened
  std::vector<long> pg_connections;           // pg_backend_pid() of each PostgreSQL session opened
  bool ready = false;

  // Tokens that began and got no outcome: in flight when the process died.
  std::vector<std::string> in_flight() const;
  std::size_t count(ack_state state) const;
};

// Reads an ack file; a missing file reads as empty. A torn last line (the writer died inside
// write()) is ignored.
ack_log read_acks(const std::filesystem::path& path);

struct invariant_check {
  std::vector<std::string> violations;  // empty: every invariant holds
  std::size_t tokens_present = 0;       // ledger rows on PostgreSQL
  std::size_t acknowledged = 0;         // tokens with an outcome
  bool ok() const { return violations.empty(); }
  std::string describe() const;  // one line per violation
};

// The invariants, after recovery:
//  - a token is in PostgreSQL's ledger iff it is in MariaDB's, with opposite amounts;
//  - acknowledged commits (and completion pending) are present, acknowledged rollbacks and
//    aborts absent; a heuristic acknowledgement is itself a violation;
//  - the sum of balances over both servers is conserved, and each side's balances agree with its
//    own ledger;
//  - no prepared branch of `tm_id` is left on either server;
//  - the decision log at `log_path` holds no pending decision (read with a read-only SQLite
//    connection: the log's owner must be closed so that its completions reached the file).
invariant_check check_invariants(const transfer_bank& bank, const std::string& tm_id,
                                 const std::filesystem::path& log_path, const ack_log& acks);

// The gtrids of tm_id's branches prepared on PostgreSQL and on MariaDB (one entry per branch).
std::vector<std::string> prepared_branches_of(const std::string& tm_id);

// Rolls back every branch of tm_id still prepared on either server (cleanup after a failed
// test, so that its locks do not block the next one). Best effort.
void roll_back_prepared_of(const std::string& tm_id) noexcept;

}  // namespace xatm::test
