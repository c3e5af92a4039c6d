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
#include "mysql/mysql.h"
#include "mysql/mysql_backend.h"
#include "postgresql/postgresql.h"
#include "xatm/connection_settings.h"
#include "xatm/recovery.h"
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

  explicit marker_tm(const std::string& tm_id, const std::string& decision_rm = {}, bool early = false) {
    tm_options options{.tm_id = unique(tm_id), .log_path = (dir.path / "log.db").string()};
    options.early_acknowledgement = early;
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

// A transaction begun with a branch on `first` (the decision RM) and one on `second`, each
// having written an item: what the guard tests commit.
struct written_pair {
  std::unique_ptr<connection> first;
  std::unique_ptr<connection> second;
  global_transaction tx;
  std::string gtrid;
};

written_pair begin_pair(marker_tm& t, const std::string& first_rm, const std::string& second_rm) {
  auto first = t.tm->connect(first_rm);
  auto second = t.tm->connect(second_rm);
  create_items(*first);
  create_items(*second);
  auto tx = t.tm->begin();
  const std::string gtrid = tx.gtrid();
  tx.enlist(*first);
  tx.enlist(*second);
  REQUIRE(first->exec("INSERT INTO cm_items VALUES ('" + gtrid + "')").ok());
  REQUIRE(second->exec("INSERT INTO cm_items VALUES ('" + gtrid + "')").ok());
  return {std::move(first), std::move(second), std::move(tx), gtrid};
}

}  // namespace

TEST_CASE("commit-marker: every pair of databases and three branches commit with the row in the decision branch") {
  const std::vector<std::vector<std::string>> layouts = {
      {"pg", "maria"}, {"maria", "pg"}, {"pg", "pg2"}, {"maria", "maria2"}, {"maria", "pg", "pg2"}};
  int round = 0;
  for (const bool early : {false, true})
    for (const auto& layout : layouts) {
      std::string name;
      for (const auto& rm : layout) name += rm + " ";
      CAPTURE(name);
      CAPTURE(early);
      marker_tm t("cmpair" + std::to_string(++round) + "-", {}, early);
      std::vector<std::unique_ptr<connection>> connections;
      for (const auto& rm : layout) {
        connections.push_back(t.tm->connect(rm));
        create_items(*connections.back());
      }
      (void)commit_items(t, connections);  // twice: the second meets the first's commits still in flight
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
      CHECK(t.tm->statistics().committed == 2);
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
  auto [maria, pg, tx, gtrid] = begin_pair(t, "maria", "pg");  // MariaDB decides
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

// ---- what a hostile review found: each a way to split or misreport, now refused -------------

namespace {

std::unique_ptr<resource_manager> raw(const std::string& dialect, const std::string& conninfo) {
  auto settings = connection_settings::parse(conninfo).value();
  auto rm = dialect == "postgresql" ? postgresql::connect("raw", settings) : mysql::connect("raw", settings);
  REQUIRE_MESSAGE(rm.ok(), rm.error().describe());
  return std::move(rm).value();
}

std::string first_value(connection& rm, const std::string& sql) {
  auto rows = rm.exec(sql);
  REQUIRE_MESSAGE(rows.ok(), sql << ": " << rows.error().describe());
  return rows.value().rows.at(0).at(0).value();
}

// The tag a bqual carries for a database: its identity after "db-", 12 characters.
std::string identity_tag(connection& rm) {
  return first_value(rm, "SELECT database_id FROM xatm_identity").substr(3, 12);
}

// A terminator with no log: xatm-recover --terminate's work, in process.
recovery_report terminate_without_log() {
  offline_recovery_options options;
  options.terminate = true;
  options.precommit_timeout = std::chrono::milliseconds(200);
  options.rms = {{"pg", "postgresql:" + test::servers().pg}, {"maria", "mariadb:" + test::servers().mysql}};
  return recover_offline(options);
}

}  // namespace

TEST_CASE("commit-marker: a terminator never reads an uncommitted decision row, whatever the server's isolation") {
  // A MariaDB server whose default isolation is READ UNCOMMITTED: a terminator that read the
  // coordinator's uncommitted P would commit its prepared branches, and the decision branch
  // could still roll back. xatm's own sessions force READ COMMITTED.
  auto root = raw("mariadb", test::servers().mysql_root);
  const std::string old_isolation = first_value(*root, "SELECT @@GLOBAL.tx_isolation");
  REQUIRE(root->exec("SET GLOBAL tx_isolation = 'READ-UNCOMMITTED'").ok());
  auto restore = [&] { (void)root->exec("SET GLOBAL tx_isolation = '" + old_isolation + "'"); };
  try {
    marker_tm t("cmru");  // installs the tables on both
    auto maria = t.tm->connect("maria");
    auto pg_app = t.tm->connect("pg");
    create_items(*pg_app);
    const std::string gtrid = unique("cmrudead") + ".abcdefghijkl.1.cm";
    // A coordinator, inside its decision branch on MariaDB: the row inserted, not committed.
    auto holder = raw("mariadb", test::servers().mysql);
    REQUIRE(holder->exec("BEGIN").ok());
    REQUIRE(holder->exec("INSERT INTO xatm_marker (gtrid, state, branches) VALUES ('" + gtrid + "', 'P', 'maria,pg')")
                .ok());
    // Its other branch, prepared on PostgreSQL.
    auto pg = raw("postgresql", test::servers().pg);
    const xid branch(xatm_format_id, gtrid, "2@maria@" + identity_tag(*maria));
    REQUIRE(pg->start(branch).ok());
    REQUIRE(pg->exec("INSERT INTO cm_items VALUES ('" + gtrid + "')").ok());
    REQUIRE(pg->end(branch).ok());
    REQUIRE(pg->prepare(branch).ok());

    // The terminator waits on the row (5 s), gives up, and decides nothing.
    const recovery_report first = terminate_without_log();
    bool unresolved = false;
    for (const auto& item : first.items) {
      if (item.gtrid == gtrid) unresolved = item.result == recovery_result::unresolved;
    }
    CHECK(unresolved);
    CHECK(items(*pg_app, gtrid) == 0);
    // The coordinator commits: now the terminator commits the prepared branch.
    REQUIRE(holder->exec("COMMIT").ok());
    (void)terminate_without_log();
    CHECK(items(*pg_app, gtrid) == 1);
    REQUIRE(maria->exec("DELETE FROM xatm_marker WHERE gtrid = '" + gtrid + "'").ok());
  } catch (...) {
    restore();
    throw;
  }
  restore();
}

TEST_CASE("commit-marker: a decision branch the application ended behind xatm's back gets no row committed alone") {
  // The application ended its transaction on the decision connection itself (a COMMIT on
  // PostgreSQL, XA END + XA ROLLBACK on MariaDB). The decision insert would then run in a
  // transaction of its own and commit a P for a transaction that is rolled back.
  SUBCASE("PostgreSQL") {
    marker_tm t("cmbehindp");
    auto [pg, maria, tx, gtrid] = begin_pair(t, "pg", "maria");
    REQUIRE(pg->exec("COMMIT").ok());  // behind xatm's back
    CHECK_THROWS(tx.commit());
    CHECK(markers(*pg, gtrid) == 0);
    CHECK(items(*maria, gtrid) == 0);
  }
  SUBCASE("MariaDB") {
    marker_tm t("cmbehindm");
    auto [maria, pg, tx, gtrid] = begin_pair(t, "maria", "pg");
    const std::string xa = "'" + gtrid + "','1@maria@" + identity_tag(*maria) + "'," + std::to_string(xatm_format_id);
    REQUIRE(maria->exec("XA END " + xa).ok());
    REQUIRE(maria->exec("XA ROLLBACK " + xa).ok());
    CHECK_THROWS(tx.commit());
    CHECK(markers(*maria, gtrid) == 0);
    CHECK(items(*pg, gtrid) == 0);
  }
}

TEST_CASE("commit-marker: another instance keeps a live coordinator's decision row, deletes a dead one's") {
  // A live coordinator whose decision commit lost its reply settles by its row; deleting it
  // under that coordinator would turn a commit into a reported rollback.
  marker_tm live("cmlive");
  auto pg = live.tm->connect("pg");
  (void)live.tm->begin();  // takes its leases
  const std::string gtrid = live.tm->tm_id() + "." + live.tm->incarnation_id() + ".999.cm";
  const std::string identity = first_value(*pg, "SELECT database_id FROM xatm_identity");
  REQUIRE(
      pg->exec("INSERT INTO xatm_marker (gtrid, state, branches) VALUES ('" + gtrid + "', 'P', 'pg=" + identity + "')")
          .ok());
  marker_tm other("cmother");
  (void)other.tm->recover_now();
  CHECK(markers(*pg, gtrid) == 1);  // its coordinator's lease is held
  live.tm.reset();                  // the coordinator is gone
  (void)other.tm->recover_now();
  CHECK(markers(*pg, gtrid) == 0);
}

TEST_CASE("commit-marker: a marker table unfit to decide is refused, and the transaction rolls back") {
  SUBCASE("PostgreSQL: the session finds another schema's xatm_marker first") {
    auto admin = raw("postgresql", test::servers().pg);
    const std::string schema = unique("shadow");
    REQUIRE(admin->exec("CREATE SCHEMA IF NOT EXISTS " + schema).ok());
    REQUIRE(admin->exec("CREATE TABLE IF NOT EXISTS " + schema + ".xatm_marker (LIKE public.xatm_marker)").ok());
    temp_dir dir;
    tm_options options{.tm_id = unique("cmshadow"), .log_path = (dir.path / "log.db").string()};
    options.protocol = commit_protocol::commit_marker;
    options.recovery_interval = std::chrono::milliseconds(0);
    {
      transaction_manager tm(options);
      tm.register_rm("pg", "postgresql", test::servers().pg + " options='-c search_path=" + schema + ",public'");
      tm.register_rm("maria", "mariadb", test::servers().mysql);
      auto pg = tm.connect("pg");
      auto maria = tm.connect("maria");
      create_items(*maria);
      REQUIRE(pg->exec("CREATE TABLE IF NOT EXISTS public.cm_items (id varchar(80) PRIMARY KEY)").ok());
      auto tx = tm.begin();
      const std::string gtrid = tx.gtrid();
      tx.enlist(*pg);
      tx.enlist(*maria);
      REQUIRE(pg->exec("INSERT INTO public.cm_items VALUES ('" + gtrid + "')").ok());
      REQUIRE(maria->exec("INSERT INTO cm_items VALUES ('" + gtrid + "')").ok());
      try {
        (void)tx.commit();
        FAIL("committed with a marker table terminators would not read");
      } catch (const rolled_back_error& e) {
        CHECK(std::string(e.what()).find("not fit to decide") != std::string::npos);
      }
      CHECK(items(*maria, gtrid) == 0);
    }
    REQUIRE(admin->exec("DROP SCHEMA " + schema + " CASCADE").ok());
  }
  SUBCASE("MariaDB: a marker table that is not transactional") {
    marker_tm t("cmmyisam");
    {
      auto admin = t.tm->connect("maria2");
      REQUIRE(admin->exec(detail::mariadb_backend().marker_table_ddl()).ok());
      REQUIRE(admin->exec("ALTER TABLE xatm_marker ENGINE=Aria").ok());
    }
    auto [maria2, pg, tx, gtrid] = begin_pair(t, "maria2", "pg");
    CHECK_THROWS_AS(tx.commit(), rolled_back_error);
    CHECK(items(*pg, gtrid) == 0);
    CHECK(items(*maria2, gtrid) == 0);
    REQUIRE(maria2->exec("ALTER TABLE xatm_marker ENGINE=InnoDB").ok());
  }
}

TEST_CASE("commit-marker: a read-only decision branch takes no row") {
  for (const char* reader : {"maria", "pg"}) {
    CAPTURE(reader);
    marker_tm t(std::string("cmro") + reader);
    auto first = t.tm->connect(reader);
    auto writer = t.tm->connect(std::string(reader) == "pg" ? "maria" : "pg");
    create_items(*writer);
    auto tx = t.tm->begin();
    const std::string gtrid = tx.gtrid();
    tx.enlist(*first);  // the decision branch, which only reads
    tx.enlist(*writer);
    REQUIRE(first->exec("SELECT 1").ok());
    REQUIRE(writer->exec("INSERT INTO cm_items VALUES ('" + gtrid + "')").ok());
    CHECK(tx.commit() == commit_outcome::committed);
    CHECK(items(*writer, gtrid) == 1);
    if (std::string(reader) == "maria") {
      // MariaDB's session tracker saw no write: ended first, read-only, and the writer alone
      // committed in one phase, as with two-phase commit.
      CHECK(t.tm->statistics().one_phase == 1);
      CHECK(markers(*first, gtrid) == 0);
    } else {
      // PostgreSQL says so only in answer to the insert: the writer was being prepared by then,
      // so the row went to the decision RM on the TM's own connection.
      CHECK(markers(*first, gtrid, "P") == 1);
    }
  }
}
