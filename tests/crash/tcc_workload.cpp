// xatm-tcc-workload: the coordinator that the TCC crash tests kill (tcc_crash_test.cpp). It opens
// a two-phase transaction manager, registers PostgreSQL ("pg"), MariaDB ("maria") and the wallet
// service ("wallet", a TCC participant over HTTP, examples/wallet_service.cpp), and runs transfers
// of the crash bank (support/invariants.h) with one TCC branch each: the XA debit and credit,
// then two reservations of 1 in the wallet (two TCC branches, so that a crash can fall between
// their confirms), on several threads, until it has done its share, dies at
// a crash point (XATM_CRASH_AT), or is killed by the test.
//
//   xatm-tcc-workload --tm-id ID --log PATH --ack PATH --tables SUFFIX --wallet-account NAME
//                     [--threads T] [--transfers N (per thread; 0: until killed)]
//                     [--token-prefix P] [--doom-every K]
//   connection strings: $XATM_CRASH_PG and $XATM_CRASH_MARIA; the wallet's base URL:
//   $XATM_TCC_WALLET_URL (kept off the command line)
//
// With --transfers 0 --threads 0 it only runs the startup recovery (a restarted coordinator) and
// exits. The ack file is the crash workloads' (workload_common.h). --doom-every K: every K-th
// transfer is refused at PREPARE (after its try): an acknowledged rollback whose TCC branch is
// cancelled.
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
#include "xatm/tcc.h"
#include "xatm/transaction_manager.h"

namespace {

using xatm::test::ack_state;
using xatm::workload::ack_file;
using xatm::workload::required_env;

// TCC branches per transfer, each reserving 1 (tcc_crash_test.cpp counts on it).
constexpr int tcc_branches_per_transfer = 2;

struct options : xatm::workload::common_options {
  std::string wallet_account;
};

options parse(int argc, char** argv) {
  options parsed;
  xatm::workload::parse_arguments(argc, argv, parsed, [&](const std::string& arg, const auto& next) {
    if (arg != "--wallet-account") return false;
    parsed.wallet_account = next();
    return true;
  });
  if (parsed.wallet_account.empty()) xatm::workload::usage("--wallet-account is required");
  return parsed;
}

// What commit() said, into the ack file.
void commit_and_ack(xatm::global_transaction& tx, const ack_file& acks, const std::string& token) {
  const std::string gtrid = tx.gtrid();
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

// One transfer: debit on PostgreSQL, credit on MariaDB, the same ledger token on both, and a
// reservation of 1 in the wallet as each of two TCC branches.
void transfer(xatm::transaction_manager& tm, xatm::connection& pg, xatm::connection& maria, const options& opts,
              const ack_file& acks, const std::string& token, int from, int to, long amount, bool doomed) {
  const xatm::workload::transfer_sql bank(opts.tables);
  auto tx = tm.begin();
  const std::string gtrid = tx.gtrid();
  acks.ack(token, ack_state::begun, gtrid);
  try {
    tx.enlist(pg);
    tx.enlist(maria);
    pg.exec(bank.debit(from, amount)).value();
    pg.exec(bank.ledger_row(token, doomed ? 0 : from, -amount)).value();
    maria.exec(bank.credit(to, amount)).value();
    maria.exec(bank.ledger_row(token, to, amount)).value();
    for (int branch = 0; branch < tcc_branches_per_transfer; ++branch) {
      tx.enlist_tcc("wallet", "account=" + opts.wallet_account + ";amount=1");
    }
  } catch (const xatm::rolled_back_error& e) {
    acks.ack(token, ack_state::rolled_back, gtrid, e);  // the try did not succeed: all rolled back
    return;
  } catch (const std::exception& e) {
    acks.ack(token, ack_state::aborted, gtrid, e);  // tx's destructor rolls back and cancels
    throw;
  }
  commit_and_ack(tx, acks, token);
}

void run_worker(xatm::transaction_manager& tm, const options& opts, const ack_file& acks, int thread) {
  xatm::workload::run_transfer_loop(tm, opts, acks, thread, 1, 16,
                                    [&](xatm::connection& pg, xatm::connection& maria, const std::string& token,
                                        int from, int to, long amount, bool doomed) {
                                      transfer(tm, pg, maria, opts, acks, token, from, to, amount, doomed);
                                    });
}

}  // namespace

int main(int argc, char** argv) {
  xatm::workload::set_program("xatm-tcc-workload", "tcc_workload.cpp");
  const options opts = parse(argc, argv);
  const char* level = std::getenv("XATM_WORKLOAD_LOG");
  xatm::tools::install_console_log(level != nullptr ? level : "error");
  auto start = [&opts]() {
    xatm::tm_options tm_options;
    tm_options.tm_id = opts.tm_id;
    tm_options.log_path = opts.log_path;
    tm_options.prepare_timeout = std::chrono::seconds(5);
    tm_options.commit_retry_window = std::chrono::seconds(1);
    tm_options.rm_call_timeout = std::chrono::seconds(5);
    tm_options.recovery_interval = std::chrono::milliseconds(0);  // the startup recovery only
    auto tm = std::make_unique<xatm::transaction_manager>(tm_options);
    tm->register_rm("pg", "postgresql", required_env("XATM_CRASH_PG"));
    tm->register_rm("maria", "mariadb", required_env("XATM_CRASH_MARIA"));
    tm->register_tcc("wallet", xatm::make_http_participant(required_env("XATM_TCC_WALLET_URL")));
    tm->begin().rollback();  // the first begin() runs the startup recovery
    return tm;
  };
  return xatm::workload::run_workers(opts, start, [&opts](xatm::transaction_manager& tm, const ack_file& acks, int t) {
    run_worker(tm, opts, acks, t);
  });
}
