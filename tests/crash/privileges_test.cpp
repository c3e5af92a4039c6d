// The database privileges xatm needs, as README and docs/recovery.md list them, checked on the
// real servers with users that hold exactly those and nothing more:
//  - MariaDB 10.11: SELECT, INSERT, UPDATE, DELETE, CREATE on the application's database and
//    PROCESS. XA RECOVER and XA COMMIT/ROLLBACK of a detached branch need nothing more (MySQL 8's
//    XA_RECOVER_ADMIN does not exist on MariaDB: granting it is a syntax error).
//  - PostgreSQL 15: a LOGIN role with the application's table privileges. COMMIT PREPARED and
//    ROLLBACK PREPARED need the role that prepared the transaction or a superuser, so recovery
//    must run as the service's own role: another role leaves the branch prepared and says why.
// A crashed workload (crash_workload.cpp, as the service's role) leaves a decided and an undecided
// transaction prepared on both servers; recovery then runs with the least-privileged users.
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <string>

#include "crash/crash_harness.h"
#include "support/observers.h"
#include "support/servers.h"
#include "xatm/connection_settings.h"
#include "xatm/recovery.h"
#include "xatm/transaction_manager.h"

using namespace xatm::crash_test;  // NOLINT(google-build-using-namespace): test file

namespace {

constexpr const char* least_user = "xatm_least";
constexpr const char* least_maria_password = "least pw";

template <typename Connection>
void run_sql(Connection& rm, const std::string& sql) {
  auto done = rm.exec(sql);
  REQUIRE_MESSAGE(done.ok(), sql << ": " << done.error().describe());
}

// A MariaDB user with the documented grants only, on the test database.
void create_least_maria_user() {
  auto root = xatm::test::observe_maria(xatm::test::servers().mysql_root);
  run_sql(*root, std::string("DROP USER IF EXISTS '") + least_user + "'@'localhost'");
  run_sql(*root,
          std::string("CREATE USER '") + least_user + "'@'localhost' IDENTIFIED BY '" + least_maria_password + "'");
  run_sql(*root, std::string("GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON xatm_test.* TO '") + least_user +
                     "'@'localhost'");
  run_sql(*root, std::string("GRANT PROCESS ON *.* TO '") + least_user + "'@'localhost'");
}

// A PostgreSQL role that may log in and use the test tables, and is not a superuser.
void create_least_pg_role() {
  auto admin = xatm::test::observe_pg();
  run_sql(*admin, std::string("DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '") + least_user +
                      "') THEN DROP OWNED BY " + least_user + "; DROP ROLE " + least_user + "; END IF; END $$");
  run_sql(*admin, std::string("CREATE ROLE ") + least_user + " LOGIN NOSUPERUSER");
  run_sql(*admin, std::string("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ") + least_user);
}

// The servers' connection strings with the least-privileged users instead of the test's own.
std::string least_pg() {
  auto settings = xatm::connection_settings::parse(xatm::test::servers().pg).value();
  settings.set("user", least_user);
  return settings.to_conninfo();
}

std::string least_maria() {
  auto settings = xatm::connection_settings::parse(xatm::test::servers().mysql).value();
  settings.set("user", least_user);
  settings.set("password", least_maria_password);
  return settings.to_conninfo();
}

// A TM on the scenario's log whose "pg" and "maria" connect as the least-privileged users;
// background recovery off.
std::unique_ptr<xatm::transaction_manager> least_privileged_tm(const scenario& s) {
  xatm::tm_options options;
  options.tm_id = s.tm_id();
  options.log_path = s.log_path().string();
  options.recovery_interval = std::chrono::milliseconds(0);
  auto tm = std::make_unique<xatm::transaction_manager>(options);
  tm->register_rm("pg", "postgresql", least_pg());
  tm->register_rm("maria", "mariadb", least_maria());
  return tm;
}

const xatm::recovery_item* item_for(const xatm::recovery_report& report, const std::string& rm,
                                    const std::string& gtrid) {
  auto found = std::find_if(report.items.begin(), report.items.end(),
                            [&](const auto& item) { return item.rm_name == rm && item.gtrid == gtrid; });
  return found == report.items.end() ? nullptr : &*found;
}

}  // namespace

TEST_CASE("MariaDB 10.11 has no XA_RECOVER_ADMIN privilege: granting it is a syntax error") {
  auto root = xatm::test::observe_maria(xatm::test::servers().mysql_root);
  create_least_maria_user();
  auto granted = root->exec(std::string("GRANT XA_RECOVER_ADMIN ON *.* TO '") + least_user + "'@'localhost'");
  REQUIRE_FALSE(granted.ok());
  CHECK(granted.error().describe().find("syntax") != std::string::npos);
}

TEST_CASE("recovery with the documented least privileges: MariaDB resolves, PostgreSQL needs the preparing role") {
  scenario s("privileges", 8);
  const leftovers left = leave_prepared_work(s);
  // After the bank tables exist: the role gets privileges on them.
  create_least_maria_user();
  create_least_pg_role();

  {
    auto tm = least_privileged_tm(s);
    const auto report = tm->recover_now();
    CHECK(report.identity_mismatches.empty());
    CHECK(report.unreachable_rms.empty());
    CHECK_FALSE(report.heuristic());

    // MariaDB: the least-privileged user lists the other user's branches and resolves them.
    const auto* maria_commit = item_for(report, "maria", left.to_commit.gtrid);
    const auto* maria_rollback = item_for(report, "maria", left.to_roll_back.gtrid);
    REQUIRE(maria_commit != nullptr);
    REQUIRE(maria_rollback != nullptr);
    CHECK(maria_commit->result == xatm::recovery_result::committed);
    CHECK(maria_rollback->result == xatm::recovery_result::rolled_back);

    // PostgreSQL: another role than the one that prepared is refused by the server; the branches
    // stay prepared, reported unresolved with the server's reason, and nothing is guessed.
    const auto* pg_commit = item_for(report, "pg", left.to_commit.gtrid);
    const auto* pg_rollback = item_for(report, "pg", left.to_roll_back.gtrid);
    REQUIRE(pg_commit != nullptr);
    REQUIRE(pg_rollback != nullptr);
    CHECK(pg_commit->result == xatm::recovery_result::unresolved);
    CHECK(pg_rollback->result == xatm::recovery_result::unresolved);
    INFO(pg_commit->detail);
    CHECK(pg_commit->detail.find("permission denied") != std::string::npos);
    CHECK(report.unresolved());
  }

  // The service's own role finishes the job, and every invariant holds.
  const auto summary = recover_with_library(s);
  CHECK(summary.outcome_of(left.to_commit.gtrid) == "committed");
  CHECK(summary.outcome_of(left.to_roll_back.gtrid) == "rolled back");
  CHECK(ledger_has(s.bank(), left.to_commit.token));
  CHECK_FALSE(ledger_has(s.bank(), left.to_roll_back.token));
  check_invariants(s, "after recovery with least privileges");
}

TEST_CASE("a transaction across both servers commits with the least-privileged users") {
  scenario s("privileges_tx", 4);
  create_least_maria_user();
  create_least_pg_role();
  auto tm = least_privileged_tm(s);
  auto pg = tm->connect("pg");
  auto maria = tm->connect("maria");
  auto tx = tm->begin();
  tx.enlist(*pg);
  tx.enlist(*maria);
  run_sql(*pg, "UPDATE " + s.bank().accounts_table() + " SET balance = balance - 1 WHERE id = 1");
  run_sql(*maria, "UPDATE " + s.bank().accounts_table() + " SET balance = balance + 1 WHERE id = 1");
  CHECK(tx.commit() == xatm::commit_outcome::committed);
}
