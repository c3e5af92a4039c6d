// Three-phase mode against the real servers: a commit goes through CanCommit, PreCommit (the
// P marker at the arbiter) and DoCommit; a branch left prepared by a vanished coordinator is
// terminated by another instance from the markers alone.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <thread>

#include "core/identity.h"
#include "core/markers.h"
#include "core/recovery.h"
#include "postgresql/postgresql_backend.h"
#include "sqlite/sqlite_decision_store.h"
#include "support/servers.h"
#include "support/temp_dir.h"
#include "xatm/connection_settings.h"
#include "xatm/error.h"
#include "mysql/mysql.h"
#include "postgresql/postgresql.h"
#include "xatm/transaction_manager.h"

using namespace xatm;

namespace {

using xatm::test::temp_dir;

std::string unique(const std::string& prefix) { return prefix + std::to_string(::getpid()); }

void register_both(transaction_manager& tm) {
  tm.register_rm("pg", "postgresql", test::servers().pg);
  tm.register_rm("maria", "mariadb", test::servers().mysql);
}

std::size_t count(connection& rm, const std::string& sql) {
  return std::stoul(rm.exec(sql).value().rows.at(0).at(0).value());
}

}  // namespace

TEST_CASE("3PC: a commit pre-commits at the arbiter, then commits everywhere") {
  temp_dir dir;
  tm_options options{.tm_id = unique("p3a"), .log_path = (dir.path / "log.db").string()};
  options.protocol = commit_protocol::three_phase;
  options.recovery_interval = std::chrono::milliseconds(0);
  transaction_manager tm(options);
  register_both(tm);
  auto pg = tm.connect("pg");
  auto maria = tm.connect("maria");
  pg->exec("CREATE TABLE IF NOT EXISTS p3_items (id varchar(80) PRIMARY KEY)").value();
  maria->exec("CREATE TABLE IF NOT EXISTS p3_items (id varchar(80) PRIMARY KEY) ENGINE=InnoDB").value();
  std::string gtrid;
  {
    auto tx = tm.begin();
    gtrid = tx.gtrid();
    CHECK(gtrid.ends_with(".p3"));
    tx.enlist(*pg);
    tx.enlist(*maria);
    pg->exec("INSERT INTO p3_items VALUES ('" + gtrid + "')").value();
    maria->exec("INSERT INTO p3_items VALUES ('" + gtrid + "')").value();
    CHECK(tx.commit() == commit_outcome::committed);
  }
  CHECK(count(*pg, "SELECT count(*) FROM p3_items WHERE id = '" + gtrid + "'") == 1);
  CHECK(count(*maria, "SELECT count(*) FROM p3_items WHERE id = '" + gtrid + "'") == 1);
  // The markers are there until the next recovery run deletes them (lazily).
  CHECK(count(*pg, "SELECT count(*) FROM xatm_marker WHERE gtrid = '" + gtrid + "' AND state = 'P'") == 1);
  CHECK(count(*maria, "SELECT count(*) FROM xatm_marker WHERE gtrid = '" + gtrid + "' AND state = 'P'") == 1);
  (void)tm.recover_now();
  CHECK(count(*pg, "SELECT count(*) FROM xatm_marker WHERE gtrid = '" + gtrid + "'") == 0);
  CHECK(count(*maria, "SELECT count(*) FROM xatm_marker WHERE gtrid = '" + gtrid + "'") == 0);
}

TEST_CASE("3PC: another instance terminates a vanished coordinator's branches from the markers") {
  temp_dir dir;
  // A "coordinator" that prepared two branches and vanished before pre-committing: its
  // branches are prepared by hand with three-phase XIDs (arbiter: pg).
  const std::string gtrid = unique("gone") + ".1.1.p3";
  xid on_pg(xatm_format_id, gtrid, "1@pg");
  xid on_maria(xatm_format_id, gtrid, "2@pg");
  {
    auto pg = postgresql::connect("pg", connection_settings::parse(test::servers().pg).value()).value();
    auto maria = mysql::connect("maria", connection_settings::parse(test::servers().mysql).value()).value();
    REQUIRE(pg->start(on_pg).ok());
    REQUIRE(pg->exec("INSERT INTO p3_items VALUES ('" + gtrid + "')").ok());
    REQUIRE(pg->end(on_pg).ok());
    REQUIRE(pg->prepare(on_pg).ok());
    REQUIRE(maria->start(on_maria).ok());
    REQUIRE(maria->exec("INSERT INTO p3_items VALUES ('" + gtrid + "')").ok());
    REQUIRE(maria->end(on_maria).ok());
    REQUIRE(maria->prepare(on_maria).ok());
  }  // both sessions end: the coordinator is gone
  tm_options options{.tm_id = unique("terminator"), .log_path = (dir.path / "log.db").string()};
  options.terminate_others = true;  // a two-phase TM terminates other TMs' branches only when told to
  options.precommit_timeout = std::chrono::milliseconds(200);
  options.recovery_interval = std::chrono::milliseconds(0);
  transaction_manager terminator(options);
  register_both(terminator);
  auto first = terminator.recover_now();  // first sighting: nothing done yet
  CHECK(first.unresolved());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto second = terminator.recover_now();
  std::size_t rolled_back = 0;
  for (const auto& item : second.items) {
    if (item.gtrid == gtrid) {
      CHECK(item.result == recovery_result::rolled_back);
      ++rolled_back;
    }
  }
  CHECK(rolled_back == 2);
  auto pg = terminator.connect("pg");
  CHECK(count(*pg, "SELECT count(*) FROM xatm_marker WHERE gtrid = '" + gtrid + "' AND state = 'A'") == 1);
  CHECK(count(*pg, "SELECT count(*) FROM p3_items WHERE id = '" + gtrid + "'") == 0);
}

TEST_CASE("3PC: recovery forgets its sightings of branches that are no longer prepared") {
  // A long-running TM sees other coordinators' branches prepared all the time; once they are
  // finished, the sightings that time their termination must go, or the map grows for ever.
  temp_dir dir;
  const std::string gtrid = unique("sighted") + ".1.1.p3";
  xid on_pg(xatm_format_id, gtrid, "1@pg");
  auto settings = connection_settings::parse(test::servers().pg).value();
  auto pg = postgresql::connect("pg", settings).value();
  REQUIRE(pg->exec("CREATE TABLE IF NOT EXISTS p3_items (id varchar(80) PRIMARY KEY)").ok());
  REQUIRE(pg->start(on_pg).ok());
  REQUIRE(pg->exec("INSERT INTO p3_items VALUES ('" + gtrid + "')").ok());
  REQUIRE(pg->end(on_pg).ok());
  REQUIRE(pg->prepare(on_pg).ok());

  auto log = detail::sqlite_decision_store::open({(dir.path / "log.db").string(), unique("watcher"), {}});
  REQUIRE(log.ok());
  std::map<std::string, std::chrono::steady_clock::time_point> sightings;
  detail::recovery_context context;
  context.tm_id = unique("watcher");
  context.log = log.value().get();
  context.rms.emplace("pg", [settings] { return postgresql::connect("pg", settings); });
  context.terminate_others = true;
  context.precommit_timeout = std::chrono::hours(1);  // never acts here: it only watches
  context.first_seen = &sightings;
  const std::string sighting = "pg " + on_pg.to_string();  // other tests' leftovers may be sighted too
  (void)detail::run_recovery(context);                     // the report is not what this test is about
  CHECK(sightings.contains(sighting));
  REQUIRE(pg->rollback(on_pg).ok());  // its coordinator finished it
  (void)detail::run_recovery(context);
  CHECK_FALSE(sightings.contains(sighting));
}

TEST_CASE("3PC: marker and identity tables created by a DBA work for a user that may only read, insert and delete") {
  // PostgreSQL 15 lets ordinary users create nothing in the public schema, and CREATE TABLE IF
  // NOT EXISTS asks for that right even when the table exists: the TM and the terminators must
  // not need it once the table is there.
  temp_dir dir;
  auto admin = postgresql::connect("pg", connection_settings::parse(test::servers().pg).value()).value();
  const std::string role = unique("p3dml");
  REQUIRE(admin->exec("CREATE TABLE IF NOT EXISTS p3_items (id varchar(80) PRIMARY KEY)").ok());
  REQUIRE(admin->exec(detail::postgresql_backend().marker_table_ddl()).ok());
  REQUIRE(admin->exec(detail::postgresql_backend().identity_table_ddl()).ok());
  REQUIRE(admin->exec("REVOKE CREATE ON SCHEMA public FROM PUBLIC").ok());
  REQUIRE(admin->exec("CREATE ROLE \"" + role + "\" LOGIN").ok());
  REQUIRE(admin->exec("GRANT SELECT, INSERT, DELETE ON xatm_marker TO \"" + role + "\"").ok());
  REQUIRE(admin->exec("GRANT SELECT, INSERT ON xatm_identity TO \"" + role + "\"").ok());
  REQUIRE(admin->exec("GRANT SELECT, INSERT ON p3_items TO \"" + role + "\"").ok());
  std::string conninfo = test::servers().pg;
  const auto user = conninfo.find("user=xatm");
  REQUIRE(user != std::string::npos);
  conninfo.replace(user, 9, "user=" + role);

  tm_options options;
  options.tm_id = unique("p3dml");
  options.log_path = (dir.path / "log.db").string();
  options.protocol = commit_protocol::three_phase;
  options.precommit_timeout = std::chrono::milliseconds(200);
  options.recovery_interval = std::chrono::milliseconds(0);
  {
    transaction_manager tm(options);
    tm.register_rm("pg", "postgresql", conninfo);
    tm.register_rm("maria", "mariadb", test::servers().mysql);
    auto pg = tm.connect("pg");
    auto maria = tm.connect("maria");
    REQUIRE(maria->exec("CREATE TABLE IF NOT EXISTS p3_items (id varchar(80) PRIMARY KEY) ENGINE=InnoDB").ok());
    auto tx = tm.begin();
    const std::string gtrid = tx.gtrid();
    tx.enlist(*pg);
    tx.enlist(*maria);
    REQUIRE(pg->exec("INSERT INTO p3_items VALUES ('" + gtrid + "')").ok());
    REQUIRE(maria->exec("INSERT INTO p3_items VALUES ('" + gtrid + "')").ok());
    CHECK(tx.commit() == commit_outcome::committed);  // the P insert at the arbiter worked
    CHECK(count(*admin, "SELECT count(*) FROM xatm_marker WHERE gtrid = '" + gtrid + "' AND state = 'P'") == 1);
    (void)tm.recover_now();  // its lazy deletion of the markers needs no right to create either
    CHECK(count(*admin, "SELECT count(*) FROM xatm_marker WHERE gtrid = '" + gtrid + "'") == 0);
  }

  // A terminator with the same rights reads the arbiter and writes its A there. (Only the user
  // who prepared a PostgreSQL transaction, or a superuser, may finish it: the same role here.)
  const std::string gtrid = unique("dmlgone") + ".1.1.p3";
  xid on_pg(xatm_format_id, gtrid, "1@pg");
  {
    auto pg = postgresql::connect("pg", connection_settings::parse(conninfo).value()).value();
    REQUIRE(pg->start(on_pg).ok());
    REQUIRE(pg->exec("INSERT INTO p3_items VALUES ('" + gtrid + "')").ok());
    REQUIRE(pg->end(on_pg).ok());
    REQUIRE(pg->prepare(on_pg).ok());
  }
  options.tm_id = unique("p3dmlterm");
  options.log_path = (dir.path / "terminator.db").string();
  transaction_manager terminator(options);
  terminator.register_rm("pg", "postgresql", conninfo);
  (void)terminator.recover_now();  // the first sighting
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  bool rolled_back = false;
  for (const auto& item : terminator.recover_now().items) {
    if (item.gtrid == gtrid) rolled_back = item.result == recovery_result::rolled_back;
  }
  CHECK(rolled_back);
  CHECK(count(*admin, "SELECT count(*) FROM xatm_marker WHERE gtrid = '" + gtrid + "' AND state = 'A'") == 1);
  CHECK(count(*admin, "SELECT count(*) FROM p3_items WHERE id = '" + gtrid + "'") == 0);
  (void)admin->exec("DROP OWNED BY \"" + role + "\"");  // best effort cleanup: the servers are throwaway
  (void)admin->exec("DROP ROLE \"" + role + "\"");
}
