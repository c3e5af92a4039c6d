// The bank transfer a service would write: money leaves an account in PostgreSQL and arrives in
// an account in MariaDB, with a ledger row on each side, atomically. Run by `tools/xatm.sh demo`.
//
//   XATM_DEMO_PG='host=... dbname=...' XATM_DEMO_MYSQL='unix_socket=... user=...' xatm-demo [log-dir]
//
// It makes a few transfers, one that fails (insufficient funds: rolled back on both databases),
// and prints the balances and ledgers as each database sees them.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include "console_log.h"
#include "xatm/error.h"
#include "xatm/transaction_manager.h"

namespace {

std::string required_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    std::cerr << "xatm-demo: set " << name << " to a connection string\n";
    std::exit(2);
  }
  return value;
}

// A fresh schema on both sides: alice (PostgreSQL) starts with 100, bob (MariaDB) with 0.
// The CHECK constraint is what refuses an overdraft.
void create_accounts(xatm::transaction_manager& tm) {
  auto pg = tm.connect("payments_pg");
  pg->exec(
        "DROP TABLE IF EXISTS ledger; DROP TABLE IF EXISTS accounts;"
        "CREATE TABLE accounts (id text PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0));"
        "CREATE TABLE ledger (token text PRIMARY KEY, account text NOT NULL, amount bigint NOT NULL);"
        "INSERT INTO accounts VALUES ('alice', 100)")
      .value();
  auto maria = tm.connect("ledger_mariadb");
  for (const char* sql :
       {"DROP TABLE IF EXISTS ledger", "DROP TABLE IF EXISTS accounts",
        "CREATE TABLE accounts (id varchar(32) PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0)) "
        "ENGINE=InnoDB",
        "CREATE TABLE ledger (token varchar(64) PRIMARY KEY, account varchar(32) NOT NULL, amount bigint NOT NULL) "
        "ENGINE=InnoDB",
        "INSERT INTO accounts VALUES ('bob', 0)"}) {
    maria->exec(sql).value();
  }
}

// Moves `amount` from alice (PostgreSQL) to bob (MariaDB). Either both sides change or neither.
// The connections are the caller's, reused from one transfer to the next: a connection carries
// one transaction at a time, and after commit() or a rollback it is free for the next one.
void transfer(xatm::transaction_manager& tm, xatm::connection& pg, xatm::connection& maria, long amount,
              const std::string& token) {
  std::cout << "\n== transfer " << token << ": " << amount << " from alice (PostgreSQL) to bob (MariaDB)\n";
  try {
    auto tx = tm.begin();
    tx.enlist(maria);
    tx.enlist(pg);
    const std::string n = std::to_string(amount);
    maria.exec("UPDATE accounts SET balance = balance + " + n + " WHERE id = 'bob'").value();
    maria.exec("INSERT INTO ledger VALUES ('" + token + "', 'bob', " + n + ")").value();
    // An overdraft violates the CHECK constraint here: exec() throws, `tx` is destroyed
    // unfinished, and both branches roll back, including bob's credit above.
    pg.exec("UPDATE accounts SET balance = balance - " + n + " WHERE id = 'alice'").value();
    pg.exec("INSERT INTO ledger VALUES ('" + token + "', 'alice', -" + n + ")").value();
    auto outcome = tx.commit();
    std::cout << "   " << tx.gtrid() << ": "
              << (outcome == xatm::commit_outcome::committed ? "committed on both databases"
                                                             : "committed; completion pending (recovery finishes it)")
              << "\n";
  } catch (const xatm::in_doubt_error& e) {
    std::cout << "   IN DOUBT (check the data): " << e.what() << "\n";
  } catch (const xatm::error& e) {
    std::cout << "   rolled back on both databases: " << e.what() << "\n";
  }
}

void print_state(xatm::connection& pg, xatm::connection& maria) {
  auto alice = pg.exec("SELECT balance FROM accounts WHERE id = 'alice'").value();
  auto bob = maria.exec("SELECT balance FROM accounts WHERE id = 'bob'").value();
  auto pg_ledger = pg.exec("SELECT string_agg(token, ' ' ORDER BY token) FROM ledger").value();
  auto maria_ledger = maria.exec("SELECT group_concat(token ORDER BY token SEPARATOR ' ') FROM ledger").value();
  long total = std::stol(*alice.rows.at(0).at(0)) + std::stol(*bob.rows.at(0).at(0));
  std::cout << "\nPostgreSQL: alice = " << *alice.rows.at(0).at(0)
            << ", ledger: " << pg_ledger.rows.at(0).at(0).value_or("(empty)") << "\n"
            << "MariaDB:    bob   = " << *bob.rows.at(0).at(0)
            << ", ledger: " << maria_ledger.rows.at(0).at(0).value_or("(empty)") << "\n"
            << "total = " << total << (total == 100 ? " (conserved)" : " (NOT CONSERVED)") << "\n";
}

}  // namespace

// xatm-demo [run|crash|show] LOG_DIR
//   run    fresh accounts, four transfers (one refused), balances
//   crash  one more transfer in a process that dies right after the decision is durable (run it
//          with XATM_CRASH_AT=after_decision_durable in a build with crash points)
//   show   balances and ledgers only (no transaction manager, no recovery)
int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "run";
  if (mode != "run" && mode != "crash" && mode != "show") {
    std::cerr << "usage: xatm-demo [run|crash|show] [LOG_DIR]\n";
    return 2;
  }
  // The protocol steps (end, prepare, decision durable, commit) show on stderr as they happen.
  const char* level = std::getenv("XATM_DEMO_LOG_LEVEL");
  xatm::tools::install_console_log(level != nullptr ? level
                                   : mode == "show" ? "warning"
                                                    : "info",
                                   /*show_protocol=*/mode != "show");
  std::cout << std::unitbuf;  // keep the story and the log lines in order
  std::filesystem::path log_dir = argc > 2 ? argv[2] : std::filesystem::temp_directory_path() / "xatm-demo";
  std::filesystem::create_directories(log_dir);
  std::filesystem::permissions(log_dir, std::filesystem::perms::owner_all);
  try {
    xatm::tm_options options{.tm_id = "demo", .log_path = (log_dir / "decisions.db").string()};
    if (mode == "crash") options.recovery_interval = std::chrono::milliseconds(0);
    xatm::transaction_manager tm(options);
    tm.register_rm("payments_pg", "postgresql", required_env("XATM_DEMO_PG"));
    tm.register_rm("ledger_mariadb", "mariadb", required_env("XATM_DEMO_MYSQL"));
    if (mode == "run") create_accounts(tm);
    // One connection per database for the whole run, as a service keeps them in its pool.
    auto pg = tm.connect("payments_pg");
    auto maria = tm.connect("ledger_mariadb");
    if (mode == "run") {
      transfer(tm, *pg, *maria, 30, "t1");
      transfer(tm, *pg, *maria, 20, "t2");
      transfer(tm, *pg, *maria, 500, "t3");  // alice has 50 left: refused, nothing moves on either side
      transfer(tm, *pg, *maria, 25, "t4");
    } else if (mode == "crash") {
      transfer(tm, *pg, *maria, 10, "t5");  // with XATM_CRASH_AT set, the process is killed inside commit()
      std::cout << "   (the process was expected to die inside commit)\n";
    }
    print_state(*pg, *maria);
    if (mode == "run") {
      auto stats = tm.statistics();
      std::cout << "\ncommitted " << stats.committed << ", rolled back " << stats.rolled_back << ", decisions logged "
                << stats.decisions_logged << " in " << stats.log_batches << " log batches\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "xatm-demo: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
