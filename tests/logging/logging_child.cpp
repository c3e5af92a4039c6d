// logging/logging_child.cpp: a service that links xatm, sets up its logging one way, then runs
// one two-phase transaction over PostgreSQL and MariaDB whose PostgreSQL branch raises a NOTICE
// and a WARNING (so libpq has notices to hand out). logging_service_test reads what it printed.
//
//   xatm-logging-child quiet          configures no logging at all
//   xatm-logging-child stderr         xatm::log_to_stderr() (warning)
//   xatm-logging-child boost-fallback xatm::log_to_boost_log(debug) and no sink: what Boost.Log's
//                                     fallback sink prints when a library's records reach a core
//                                     nobody configured (the control for "quiet")
//
// Environment: XATM_LOGGING_PG and XATM_LOGGING_MARIA, the connection strings; XATM_LOGGING_DIR,
// a private directory (mode 0700) for the decision log. Exits 0 after the commit; on any failure
// it exits 2 and says why on stderr.
#include <exception>
#include <iostream>
#include <stdexcept>
#include <string>
#include <string_view>

#include "support/required_env.h"
#include "xatm/logging.h"
#include "xatm/transaction_manager.h"

namespace {

using xatm::test::required_env;

void run_transaction() {
  xatm::tm_options options;
  options.tm_id = "logging-child";
  options.log_path = required_env("XATM_LOGGING_DIR") + "/decisions.db";
  xatm::transaction_manager tm(options);
  tm.register_rm("pg", "postgresql", required_env("XATM_LOGGING_PG"));
  tm.register_rm("maria", "mariadb", required_env("XATM_LOGGING_MARIA"));
  auto pg = tm.connect("pg");
  auto maria = tm.connect("maria");
  // The second run's CREATE ... IF NOT EXISTS makes PostgreSQL send a notice of its own.
  pg->exec("CREATE TABLE IF NOT EXISTS xatm_logging_probe (n int)").value();
  maria->exec("CREATE TABLE IF NOT EXISTS xatm_logging_probe (n int) ENGINE=InnoDB").value();
  auto tx = tm.begin();
  tx.enlist(*pg);
  tx.enlist(*maria);
  pg->exec("DO $$ BEGIN RAISE NOTICE 'xatm-logging-child notice'; END $$").value();
  pg->exec("DO $$ BEGIN RAISE WARNING 'xatm-logging-child warning'; END $$").value();
  pg->exec("INSERT INTO xatm_logging_probe VALUES (1)").value();
  maria->exec("INSERT INTO xatm_logging_probe VALUES (1)").value();
  if (tx.commit() != xatm::commit_outcome::committed) throw std::runtime_error("commit left completion pending");
}

}  // namespace

int main(int argc, char** argv) {
  const std::string_view mode = argc == 2 ? argv[1] : "";
  if (mode == "stderr") {
    xatm::log_to_stderr();
  } else if (mode == "boost-fallback") {
    xatm::log_to_boost_log(xatm::log_level::debug);
  } else if (mode != "quiet") {
    std::cerr << "usage: xatm-logging-child quiet|stderr|boost-fallback\n";
    return 2;
  }
  try {
    run_transaction();
  } catch (const std::exception& e) {
    std::cerr << "xatm-logging-child: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
