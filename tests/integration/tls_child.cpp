// integration/tls_child.cpp: the coordinator that tls_connection_test kills. It commits one
// transaction over TLS on PostgreSQL and MariaDB (a row with its tm_id in `tls_items` on each) and
// is killed by its crash point once the decision is durable (the test sets
// XATM_CRASH_AT=after_decision_durable), leaving both branches prepared for recovery over TLS.
//
// Environment: XATM_TLS_CHILD_LOG (the decision log), XATM_TLS_CHILD_TM (the tm_id),
// XATM_TLS_CHILD_PG and XATM_TLS_CHILD_MARIA (the connection strings). Exits 2 with the reason
// on stderr if anything fails, and 3 if the crash point did not fire.
#include <chrono>
#include <exception>
#include <iostream>
#include <string>

#include "support/required_env.h"
#include "xatm/transaction_manager.h"

using xatm::test::required_env;

int main() {
  try {
    xatm::tm_options options;
    options.tm_id = required_env("XATM_TLS_CHILD_TM");
    options.log_path = required_env("XATM_TLS_CHILD_LOG");
    options.recovery_interval = std::chrono::milliseconds(0);  // the test's recovery, not ours
    xatm::transaction_manager tm(options);
    tm.register_rm("pg", "postgresql", required_env("XATM_TLS_CHILD_PG"));
    tm.register_rm("maria", "mariadb", required_env("XATM_TLS_CHILD_MARIA"));
    auto pg = tm.connect("pg");
    auto maria = tm.connect("maria");
    auto tx = tm.begin();
    tx.enlist(*pg);
    tx.enlist(*maria);
    const std::string insert = "INSERT INTO tls_items VALUES ('" + options.tm_id + "')";
    pg->exec(insert).value();
    maria->exec(insert).value();
    (void)tx.commit();  // killed inside
  } catch (const std::exception& e) {
    std::cerr << "xatm-tls-child: " << e.what() << "\n";
    return 2;
  }
  std::cerr << "xatm-tls-child: the crash point did not fire (is XATM_CRASH_AT set?)\n";
  return 3;
}
