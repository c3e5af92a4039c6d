// xatm-crash-workload: the process the crash tests kill. It opens a transaction manager on a
// decision log, registers PostgreSQL ("pg") and MariaDB ("maria"), and runs transfers of the
// crash bank (support/invariants.h) on several threads until it has done its share, dies at a
// crash point (XATM_CRASH_AT, read once per process), or is killed by the test.
//
//   xatm-crash-workload --tm-id ID --log PATH --ack PATH --tables SUFFIX [--accounts FIRST-LAST]
//                       [--threads T] [--transfers N (per thread; 0: until killed)]
//                       [--token-prefix P] [--doom-every K] [--skip-startup-recovery]
//                       [--commit-retry-ms MS] [--prepare-timeout-ms MS]
//   connection strings: $XATM_CRASH_PG and $XATM_CRASH_MARIA (kept off the command line)
//
// Every outcome goes to the ack file with one write() per line (O_APPEND), so that what the
// process acknowledged survives its death: `<token> begun <gtrid>` before the branches start,
// then `<token> committed|pending|rolled_back|aborted|in_doubt|heuristic|log_failure|unknown
// <gtrid>`. `# ready <pid>` follows the startup recovery; `# maria_connection <id>` and
// `# pg_connection <pid>` name each server session, so that the test can wait until the servers
// have finished what the dead process sent and noticed its death.
// --doom-every K: every K-th transfer writes a PostgreSQL ledger row for account 0, which the
// deferred foreign key refuses at PREPARE: an acknowledged rollback.
// --accounts: the accounts it moves money between (default 1-16); two runs with disjoint ranges
// never wait for each other's row locks (a branch left prepared holds its locks until recovery).
// --skip-startup-recovery: the RMs look unreachable during the startup recovery, so that what an
// earlier crash left prepared stays prepared (the tests pile up work for one recovery run).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "console_log.h"
#include "core/tm_access.h"
#include "crash/workload_common.h"
#include "support/invariants.h"
#include "xatm/connection_settings.h"
#include "xatm/error.h"
#include "mysql/mysql.h"
#include "postgresql/postgresql.h"
#include "xatm/transaction_manager.h"

namespace {

using xatm::test::ack_state;
using xatm::workload::ack_file;
using xatm::workload::required_env;
using xatm::workload::usage;

struct options : xatm::workload::common_options {
  int first_account = 1;
  int last_account = 16;
  bool skip_startup_recovery = false;
  long commit_retry_ms = 1000;
  long prepare_timeout_ms = 5000;
};

options parse(int argc, char** argv) {
  options parsed;
  xatm::workload::parse_arguments(argc, argv, parsed, [&](const std::string& arg, const auto& next) {
    if (arg == "--accounts") {
      const std::string range = next();
      const auto dash = range.find('-');
      if (dash == std::string::npos) usage("--accounts needs FIRST-LAST");
      parsed.first_account = std::stoi(range.substr(0, dash));
      parsed.last_account = std::stoi(range.substr(dash + 1));
    } else if (arg == "--skip-startup-recovery")
      parsed.skip_startup_recovery = true;
    else if (arg == "--commit-retry-ms")
      parsed.commit_retry_ms = std::stol(next());
    else if (arg == "--prepare-timeout-ms")
      parsed.prepare_timeout_ms = std::stol(next());
    else
      return false;
    return true;
  });
  return parsed;
}

// One worker thread's connections, opened on demand and dropped after any failure.
struct connections {
  std::unique_ptr<xatm::connection> pg;
  std::unique_ptr<xatm::connection> maria;
};

void open_connections(xatm::transaction_manager& tm, connections& c, const ack_file& acks) {
  if (!c.pg) {
    auto pg = xatm::workload::open_pg_session(tm);
    auto pid = pg->exec("SELECT pg_backend_pid()").value();
    acks.write_line("# pg_connection " + pid.rows.at(0).at(0).value());
    c.pg = std::move(pg);
  }
  if (!c.maria) c.maria = xatm::workload::open_maria_session(tm, acks);
}

void run_worker(xatm::transaction_manager& tm, const options& opts, const ack_file& acks, int thread) {
  const xatm::workload::transfer_sql bank(opts.tables);
  auto random = xatm::workload::worker_random(thread);
  std::uniform_int_distribution<int> account(opts.first_account, opts.last_account);
  std::uniform_int_distribution<long> amount_of(1, 9);
  connections c;
  for (long i = 0; opts.transfers == 0 || i < opts.transfers; ++i) {
    const std::string token = xatm::workload::transfer_token(opts.token_prefix, thread, i);
    const bool doomed = xatm::workload::doomed_transfer(opts.doom_every, i);
    std::string gtrid = "-";
    bool committing = false;
    try {
      open_connections(tm, c, acks);
      auto tx = tm.begin();
      gtrid = tx.gtrid();
      acks.ack(token, ack_state::begun, gtrid);
      tx.enlist(*c.pg);
      tx.enlist(*c.maria);
      // PostgreSQL first, always: one lock order across both servers, so that two transfers never
      // wait for each other across them (a deadlock neither server could see).
      const int from = account(random);
      const int to = account(random);
      const long amount = amount_of(random);
      c.pg->exec(bank.debit(from, amount)).value();
      c.pg->exec(bank.ledger_row(token, doomed ? 0 : from, -amount)).value();
      c.maria->exec(bank.credit(to, amount)).value();
      c.maria->exec(bank.ledger_row(token, to, amount)).value();
      committing = true;
      const auto outcome = tx.commit();
      acks.ack(token, outcome == xatm::commit_outcome::committed ? ack_state::committed : ack_state::pending, gtrid);
      continue;
    } catch (const xatm::rolled_back_error&) {
      acks.ack(token, committing ? ack_state::rolled_back : ack_state::aborted, gtrid);
    } catch (const xatm::timeout_error&) {
      acks.ack(token, committing ? ack_state::rolled_back : ack_state::aborted, gtrid);
    } catch (const xatm::in_doubt_error&) {
      acks.ack(token, ack_state::in_doubt, gtrid);
    } catch (const xatm::heuristic_error&) {
      acks.ack(token, ack_state::heuristic, gtrid);
    } catch (const xatm::log_failure_error&) {
      acks.ack(token, ack_state::log_failure, gtrid);
    } catch (const std::exception& e) {
      // Before commit() the transaction was destroyed unfinished: rolled back, never prepared.
      if (gtrid != "-") acks.ack(token, committing ? ack_state::unknown : ack_state::aborted, gtrid);
      if (committing) std::cerr << "xatm-crash-workload: " << token << ": " << e.what() << "\n";
    }
    // After any failure: fresh connections (a server may have gone away), after a short pause.
    c = connections{};
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

int main(int argc, char** argv) {
  xatm::workload::set_program("xatm-crash-workload", "crash_workload.cpp");
  const options opts = parse(argc, argv);
  const char* level = std::getenv("XATM_WORKLOAD_LOG");
  xatm::tools::install_console_log(level != nullptr ? level : "error");
  auto start = [&opts]() {
    // Assigned one by one, not designated: tm_options grows, and a designated list would have to.
    xatm::tm_options tm_settings;
    tm_settings.tm_id = opts.tm_id;
    tm_settings.log_path = opts.log_path;
    tm_settings.prepare_timeout = std::chrono::milliseconds(opts.prepare_timeout_ms);
    tm_settings.commit_retry_window = std::chrono::milliseconds(opts.commit_retry_ms);
    tm_settings.recovery_interval = std::chrono::milliseconds(0);  // only the startup recovery runs
    auto tm = std::make_unique<xatm::transaction_manager>(tm_settings);
    // While the gate is closed the RMs answer "unreachable": only the startup recovery sees that.
    auto gate_closed = std::make_shared<std::atomic<bool>>(opts.skip_startup_recovery);
    for (const auto& [name, postgres] : {std::pair{"pg", true}, std::pair{"maria", false}}) {
      auto settings = xatm::connection_settings::parse(required_env(postgres ? "XATM_CRASH_PG" : "XATM_CRASH_MARIA"));
      xatm::detail::tm_access::register_rm(
          *tm, name,
          [name = std::string(name), is_pg = postgres, s = settings.value(),
           gate_closed]() -> xatm::result<std::unique_ptr<xatm::resource_manager>> {
            if (gate_closed->load()) {
              return xatm::make_failure(xatm::xa_code::rm_failure, "held unreachable (--skip-startup-recovery)", name);
            }
            return is_pg ? xatm::postgresql::connect(name, s) : xatm::mysql::connect(name, s);
          });
    }
    // The first begin() runs the startup recovery (where recovery's own crash points are).
    tm->begin().rollback();
    gate_closed->store(false);
    return tm;
  };
  return xatm::workload::run_workers(opts, start, [&opts](xatm::transaction_manager& tm, const ack_file& acks, int t) {
    run_worker(tm, opts, acks, t);
  });
}
