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

#include "core/recovery.h"
#include "support/servers.h"
#include "xatm/connection_settings.h"
#include "xatm/error.h"
#include "xatm/mysql.h"
#include "xatm/postgresql.h"
#include "xatm/transaction_manager.h"

using namespace xatm;

namespace {

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "xatm-3pc-XXXXXX").string();
    path = ::mkdtemp(pattern.data());
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
};

std::string unique(const std::string& prefix) { return prefix + std::to_string(::getpid()); }

void register_both(transaction_manager& tm) {
  tm.register_rm("pg", "postgresql", test::servers().pg);
  tm.register_rm("maria", "mariadb", test::servers().mysql);
}

std::size_t count(resource_manager& rm, const std::string& sql) {
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

  auto log = detail::decision_log::open({(dir.path / "log.db").string(), unique("watcher"), {}});
  REQUIRE(log.ok());
  std::map<std::string, std::chrono::steady_clock::time_point> sightings;
  detail::recovery_context context;
  context.tm_id = unique("watcher");
  context.log = log.value().get();
  context.rms.emplace("pg", [settings] { return postgresql::connect("pg", settings); });
  context.terminate_others = true;
  context.precommit_timeout = std::chrono::hours(1);  // never acts here: it only watches
  context.first_seen = &sightings;
  (void)detail::run_recovery(context);  // the report is not what this test is about
  CHECK(sightings.size() == 1);
  REQUIRE(pg->rollback(on_pg).ok());  // its coordinator finished it
  (void)detail::run_recovery(context);
  CHECK(sightings.empty());
}
