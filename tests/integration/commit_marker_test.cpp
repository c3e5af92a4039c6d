// The commit-marker protocol against the real servers (docs/commit-marker.md): the decision is a
// row inserted in the decision branch itself, which commits in one phase; the other branches are
// prepared before it and committed after it. Each pair of databases, three branches, the guards
// of the decision insert (an A row that won, a session pointed at another schema or database),
// and the TM's log left untouched.
#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/markers.h"
#include "core/resource_manager.h"
#include "support/servers.h"
#include "support/temp_dir.h"
#include "xatm/error.h"
#include "xatm/transaction_manager.h"

using namespace xatm;  // NOLINT(google-build-using-namespace): test file

namespace {

using xatm::test::temp_dir;

std::string unique(const std::string& prefix) { return prefix + std::to_string(::getpid()); }

struct marker_tm {
  temp_dir dir;
  std::unique_ptr<transaction_manager> tm;

  explicit marker_tm(const std::string& tm_id, const std::string& decision_rm = {}) {
    tm_options options{.tm_id = unique(tm_id), .log_path = (dir.path / "log.db").string()};
    options.protocol = commit_protocol::commit_marker;
    options.decision_rm = decision_rm;
    options.recovery_interval = std::chrono::milliseconds(0);
    tm = std::make_unique<transaction_manager>(options);
    tm->register_rm("pg", "postgresql", test::servers().pg);
    tm->register_rm("pg2", "postgresql", test::servers().pg2);
    tm->register_rm("maria", "mariadb", test::servers().mysql);
    tm->register_rm("maria2", "mariadb", test::servers().mysql2);
  }
};

bool is_postgresql(const std::string& rm) { return rm.starts_with("pg"); }

std::size_t count(connection& rm, const std::string& sql) {
  auto rows = rm.exec(sql);
  REQUIRE_MESSAGE(rows.ok(), sql << ": " << rows.error().describe());
  return std::stoul(rows.value().rows.at(0).at(0).value());
}

void create_items(connection& rm) {
  const std::string ddl = "CREATE TABLE IF NOT EXISTS cm_items (id varchar(80) PRIMARY KEY)";
  REQUIRE(rm.exec(is_postgresql(rm.name()) ? ddl : ddl + " ENGINE=InnoDB").ok());
}

std::size_t items(connection& rm, const std::string& gtrid) {
  return count(rm, "SELECT count(*) FROM cm_items WHERE id = '" + gtrid + "'");
}

std::size_t markers(connection& rm, const std::string& gtrid, const std::string& state = "") {
  return count(rm, "SELECT count(*) FROM xatm_marker WHERE gtrid = '" + gtrid + "'" +
                       (state.empty() ? "" : " AND state = '" + state + "'"));
}

// One transaction writing an item on each of `rms` (in enlist order), committed.
std::string commit_items(marker_tm& t, std::vector<std::unique_ptr<connection>>& connections) {
  auto tx = t.tm->begin();
  const std::string gtrid = tx.gtrid();
  for (auto& c : connections) {
    tx.enlist(*c);
    REQUIRE(c->exec("INSERT INTO cm_items VALUES ('" + gtrid + "')").ok());
  }
  CHECK(tx.commit() == commit_outcome::committed);
  return gtrid;
}

}  // namespace

TEST_CASE("commit-marker: every pair of databases and three branches commit with the row in the decision branch") {
  const std::vector<std::vector<std::string>> layouts = {
      {"pg", "maria"}, {"maria", "pg"}, {"pg", "pg2"}, {"maria", "maria2"}, {"maria", "pg", "pg2"}};
  int round = 0;
  for (const auto& layout : layouts) {
    std::string name;
    for (const auto& rm : layout) name += rm + " ";
    CAPTURE(name);
    marker_tm t("cmpair" + std::to_string(++round) + "-");
    std::vector<std::unique_ptr<connection>> connections;
    for (const auto& rm : layout) {
      connections.push_back(t.tm->connect(rm));
      create_items(*connections.back());
    }
    const std::string gtrid = commit_items(t, connections);
    CHECK(gtrid.ends_with(".cm"));
    for (auto& c : connections) CHECK(items(*c, gtrid) == 1);
    // The row is at the decision RM (the first enlisted) only.
    CHECK(markers(*connections.front(), gtrid, "P") == 1);
    for (std::size_t i = 1; i < connections.size(); ++i) {
      // (An RM that never had a marker table has no row either.)
      if (connections[i]->exec("SELECT 1 FROM xatm_marker WHERE 1 = 0").ok())
        CHECK(markers(*connections[i], gtrid) == 0);
    }
    // No decision went to the TM's own log.
    CHECK(t.tm->statistics().decisions_logged == 0);
    CHECK(t.tm->statistics().committed == 1);
    // The row goes once every branch is final, off the commit path.
    (void)t.tm->recover_now();
    CHECK(markers(*connections.front(), gtrid) == 0);
  }
}

TEST_CASE("commit-marker: a transaction whose only writer is the decision branch is a one-phase commit, no row") {
  marker_tm t("cmone");
  auto pg = t.tm->connect("pg");
  auto maria = t.tm->connect("maria");
  create_items(*pg);
  auto tx = t.tm->begin();
  const std::string gtrid = tx.gtrid();
  tx.enlist(*pg);
  tx.enlist(*maria);
  REQUIRE(pg->exec("INSERT INTO cm_items VALUES ('" + gtrid + "')").ok());
  REQUIRE(maria->exec("SELECT 1").ok());
  CHECK(tx.commit() == commit_outcome::committed);
  CHECK(items(*pg, gtrid) == 1);
  CHECK(markers(*pg, gtrid) == 0);
  CHECK(t.tm->statistics().one_phase == 1);
}

TEST_CASE("commit-marker: an A row that won first makes the decision insert fail: everything rolls back") {
  // A terminator that found the prepared branch of a stalled coordinator wrote A first.
  marker_tm t("cmlost");
  auto maria = t.tm->connect("maria");
  auto pg = t.tm->connect("pg");
  create_items(*maria);
  create_items(*pg);
  auto tx = t.tm->begin();
  const std::string gtrid = tx.gtrid();
  tx.enlist(*maria);  // the decision branch
  tx.enlist(*pg);
  REQUIRE(maria->exec("INSERT INTO cm_items VALUES ('" + gtrid + "')").ok());
  REQUIRE(pg->exec("INSERT INTO cm_items VALUES ('" + gtrid + "')").ok());
  auto other = t.tm->connect("maria");
  REQUIRE(other->exec("INSERT INTO xatm_marker (gtrid, state, branches) VALUES ('" + gtrid + "', 'A', 'pg')").ok());
  CHECK_THROWS_AS(tx.commit(), rolled_back_error);
  CHECK(items(*maria, gtrid) == 0);
  CHECK(items(*pg, gtrid) == 0);
  CHECK(markers(*other, gtrid, "A") == 1);
  CHECK(count(*pg, "SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE '%" + gtrid + "%'") == 0);
  // The A row is the terminator's; recovery keeps it (a stalled coordinator could still wake).
  REQUIRE(other->exec("DELETE FROM xatm_marker WHERE gtrid = '" + gtrid + "'").ok());
}

TEST_CASE("commit-marker: the decision row reaches the verified database whatever the session points at") {
  // The application's PostgreSQL session may put another schema first in its search_path, and its
  // MariaDB session may USE another database: each holds an xatm_marker table of its own. The row
  // must go where terminators look, or a terminator would read "no row" and abort a committed
  // transaction.
  SUBCASE("PostgreSQL search_path") {
    marker_tm t("cmpath");
    auto pg = t.tm->connect("pg");
    auto maria = t.tm->connect("maria");
    create_items(*pg);
    create_items(*maria);
    const std::string schema = unique("decoy");
    REQUIRE(pg->exec("CREATE SCHEMA IF NOT EXISTS " + schema).ok());
    REQUIRE(pg->exec("CREATE TABLE IF NOT EXISTS " + schema + ".xatm_marker (LIKE public.xatm_marker)").ok());
    REQUIRE(pg->exec("CREATE TABLE IF NOT EXISTS " + schema + ".xatm_identity (LIKE public.xatm_identity)").ok());
    REQUIRE(pg->exec("SET search_path = " + schema + ", public").ok());
    std::vector<std::unique_ptr<connection>> connections;
    connections.push_back(std::move(pg));
    connections.push_back(std::move(maria));
    const std::string gtrid = commit_items(t, connections);
    CHECK(count(*connections[0], "SELECT count(*) FROM public.xatm_marker WHERE gtrid = '" + gtrid + "'") == 1);
    CHECK(count(*connections[0], "SELECT count(*) FROM " + schema + ".xatm_marker") == 0);
    REQUIRE(connections[0]->exec("DROP SCHEMA " + schema + " CASCADE").ok());
  }
  SUBCASE("MariaDB USE") {
    marker_tm t("cmuse");
    auto maria = t.tm->connect("maria");
    auto pg = t.tm->connect("pg");
    create_items(*pg);
    REQUIRE(maria->exec("CREATE TABLE IF NOT EXISTS xatm_test2.cm_items (id varchar(80) PRIMARY KEY)").ok());
    REQUIRE(maria->exec("CREATE TABLE IF NOT EXISTS xatm_test2.xatm_marker LIKE xatm_test.xatm_marker").ok());
    REQUIRE(maria->exec("USE xatm_test2").ok());
    std::vector<std::unique_ptr<connection>> connections;
    connections.push_back(std::move(maria));
    connections.push_back(std::move(pg));
    const std::string gtrid = commit_items(t, connections);
    CHECK(count(*connections[0], "SELECT count(*) FROM xatm_test.xatm_marker WHERE gtrid = '" + gtrid + "'") == 1);
    CHECK(count(*connections[0], "SELECT count(*) FROM xatm_test2.xatm_marker WHERE gtrid = '" + gtrid + "'") == 0);
  }
}

TEST_CASE("commit-marker: a decision RM with no branch in the transaction gets the row on the TM's own connection") {
  marker_tm t("cmaway", "pg2");
  auto pg = t.tm->connect("pg");
  auto maria = t.tm->connect("maria");
  auto pg2 = t.tm->connect("pg2");
  create_items(*pg);
  create_items(*maria);
  std::vector<std::unique_ptr<connection>> connections;
  connections.push_back(std::move(pg));
  connections.push_back(std::move(maria));
  const std::string gtrid = commit_items(t, connections);
  CHECK(markers(*pg2, gtrid, "P") == 1);
  CHECK(markers(*connections[0], gtrid) == 0);
  CHECK(t.tm->statistics().decisions_logged == 0);
  (void)t.tm->recover_now();
  CHECK(markers(*pg2, gtrid) == 0);
}

TEST_CASE("commit-marker: bad settings are refused before anything is sent") {
  marker_tm t("cmbad", "nosuchrm");
  auto pg = t.tm->connect("pg");
  auto tx = t.tm->begin();
  CHECK_THROWS_AS(tx.enlist(*pg), configuration_error);
  CHECK(pg->exec("SELECT 1").ok());  // no branch was started on it
}
