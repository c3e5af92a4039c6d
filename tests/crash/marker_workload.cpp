// xatm-marker-workload: the coordinator that the crash tests of the protocols decided by marker
// rows kill, freeze and race (three_phase_crash_test.cpp, marker_crash_test.cpp). It opens a
// transaction manager in three-phase or commit-marker mode, registers PostgreSQL ("pg") and
// MariaDB ("maria"), enlists one of them first (the arbiter, or the decision branch), and runs
// transfers of the crash bank (support/invariants.h) on several threads until it has done its
// share, dies or freezes at a crash point (XATM_CRASH_AT), or is killed by the test.
//
//   xatm-marker-workload --tm-id ID --log PATH --ack PATH --tables SUFFIX
//                     [--first-account A] [--accounts N] [--threads T]
//                     [--transfers N (per thread; 0: until killed)] [--token-prefix P]
//                     [--doom-every K] [--protocol three-phase|commit-marker] [--first pg|maria]
//                     [--recovery-interval-ms N (0: startup recovery only)]
//                     [--precommit-timeout-ms N (when its recovery terminates other TMs' branches)]
//   connection strings: $XATM_CRASH_PG and $XATM_CRASH_MARIA (kept off the command line)
//
// The ack file has the format read_acks() reads: `<token> begun <gtrid>` before the branches
// start, `<token> <outcome> <gtrid>` as soon as commit() returns or throws, `# ready <pid>` once
// the startup recovery is done and `# maria_connection <id>` for each MariaDB session. One more
// comment line, `# why <token> <what()>`, keeps the message of a commit() that threw, so that a
// test can check what a coordinator that lost the race to a terminator said. One write() per
// line (O_APPEND): what the process acknowledged survives its death.
// Accounts [A, A+N) only: concurrent workloads on disjoint ranges never wait for each other's
// locks, even when one of them is frozen with its branches prepared.
// --doom-every K: every K-th transfer writes a PostgreSQL ledger row for account 0, which the
// deferred foreign key refuses at PREPARE (CanCommit): an acknowledged rollback.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "console_log.h"
#include "crash/workload_common.h"
#include "support/invariants.h"
#include "xatm/error.h"
#include "xatm/transaction_manager.h"

namespace {

using xatm::test::ack_state;
using xatm::workload::ack_file;
using xatm::workload::required_env;

struct options : xatm::workload::common_options {
  int first_account = 1;
  int accounts = 16;
  xatm::commit_protocol protocol = xatm::commit_protocol::three_phase;
  bool maria_first = false;
  int recovery_interval_ms = 0;
  int precommit_timeout_ms = 3'600'000;
};

options parse(int argc, char** argv) {
  options parsed;
  xatm::workload::parse_arguments(argc, argv, parsed, [&](const std::string& arg, const auto& next) {
    if (arg == "--first-account")
      parsed.first_account = std::stoi(next());
    else if (arg == "--accounts")
      parsed.accounts = std::stoi(next());
    else if (arg == "--protocol")
      parsed.protocol =
          next() == "commit-marker" ? xatm::commit_protocol::commit_marker : xatm::commit_protocol::three_phase;
    else if (arg == "--first")
      parsed.maria_first = next() == "maria";
    else if (arg == "--recovery-interval-ms")
      parsed.recovery_interval_ms = std::stoi(next());
    else if (arg == "--precommit-timeout-ms")
      parsed.precommit_timeout_ms = std::stoi(next());
    else
      return false;
    return true;
  });
  return parsed;
}

// One transfer: debit on PostgreSQL, credit on MariaDB, the same ledger token on both. The
// arbiter (three-phase) or the decision branch (commit-marker) is branch 1's RM: PostgreSQL,
// unless --first maria.
void transfer(xatm::transaction_manager& tm, xatm::connection& pg, xatm::connection& maria, const options& opts,
              const ack_file& acks, const std::string& token, int from, int to, long amount, bool doomed) {
  const xatm::workload::transfer_sql bank(opts.tables);
  auto tx = tm.begin(opts.protocol);
  const std::string gtrid = tx.gtrid();
  acks.ack(token, ack_state::begun, gtrid);
  try {
    tx.enlist(opts.maria_first ? maria : pg);
    tx.enlist(opts.maria_first ? pg : maria);
    pg.exec(bank.debit(from, amount)).value();
    pg.exec(bank.ledger_row(token, doomed ? 0 : from, -amount)).value();
    maria.exec(bank.credit(to, amount)).value();
    maria.exec(bank.ledger_row(token, to, amount)).value();
  } catch (const std::exception& e) {
    acks.ack(token, ack_state::aborted, gtrid, e);  // tx's destructor rolls back: never prepared
    throw;
  }
  try {
    const auto outcome = tx.commit();
    acks.ack(token, outcome == xatm::commit_outcome::committed ? ack_state::committed : ack_state::pending, gtrid);
  } catch (const xatm::rolled_back_error& e) {
    acks.ack(token, ack_state::rolled_back, gtrid, e);
  } catch (const xatm::timeout_error& e) {
    acks.ack(token, ack_state::rolled_back, gtrid, e);
  } catch (const xatm::in_doubt_error& e) {
    acks.ack(token, ack_state::in_doubt, gtrid, e);
  } catch (const xatm::heuristic_error& e) {
    acks.ack(token, ack_state::heuristic, gtrid, e);
  } catch (const xatm::log_failure_error& e) {
    acks.ack(token, ack_state::log_failure, gtrid, e);
  } catch (const std::exception& e) {
    acks.ack(token, ack_state::unknown, gtrid, e);
  }
}

void run_worker(xatm::transaction_manager& tm, const options& opts, const ack_file& acks, int thread) {
  xatm::workload::run_transfer_loop(tm, opts, acks, thread, opts.first_account,
                                    opts.first_account + opts.accounts - 1,
                                    [&](xatm::connection& pg, xatm::connection& maria, const std::string& token,
                                        int from, int to, long amount, bool doomed) {
                                      transfer(tm, pg, maria, opts, acks, token, from, to, amount, doomed);
                                    });
}

}  // namespace

int main(int argc, char** argv) {
  xatm::workload::set_program("xatm-marker-workload", "marker_workload.cpp");
  const options opts = parse(argc, argv);
  const char* level = std::getenv("XATM_WORKLOAD_LOG");
  xatm::tools::install_console_log(level != nullptr ? level : "error");
  auto start = [&opts]() {
    xatm::tm_options tm_options;
    tm_options.tm_id = opts.tm_id;
    tm_options.log_path = opts.log_path;
    tm_options.protocol = opts.protocol;
    tm_options.prepare_timeout = std::chrono::seconds(5);
    tm_options.commit_retry_window = std::chrono::seconds(1);
    // By default only the startup recovery runs, and it never terminates anybody (the tests'
    // terminators do); a test of two service instances gives both a recovery that does.
    tm_options.recovery_interval = std::chrono::milliseconds(opts.recovery_interval_ms);
    tm_options.precommit_timeout = std::chrono::milliseconds(opts.precommit_timeout_ms);
    auto tm = std::make_unique<xatm::transaction_manager>(tm_options);
    tm->register_rm("pg", "postgresql", required_env("XATM_CRASH_PG"));
    tm->register_rm("maria", "mariadb", required_env("XATM_CRASH_MARIA"));
    tm->begin().rollback();  // the first begin() runs the startup recovery
    return tm;
  };
  return xatm::workload::run_workers(opts, start, [&opts](xatm::transaction_manager& tm, const ack_file& acks, int t) {
    run_worker(tm, opts, acks, t);
  });
}
