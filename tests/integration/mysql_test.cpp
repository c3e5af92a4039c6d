// The MariaDB adapter against the real test server: every XA verb as SQL, read-only detection
// (also for SQL run on the native handle), prepared branches outliving their connection,
// MariaDB's XAER_NOTA for a branch still attached to its session, foreign prepared
// transactions left alone, binary XIDs through XA RECOVER, deadlocks and lock wait timeouts
// inside a branch, lost connections, non-blocking verbs, bad settings, and passwords kept out of
// messages and logs. Needs the `servers` fixture.
#include <doctest/doctest.h>
#include <mysql.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "support/null_rm.h"
#include "support/adapter_checks.h"
#include "support/log_capture.h"
#include "support/result_checks.h"
#include "support/servers.h"
#include "xatm/connection_settings.h"
#include "mysql/mysql.h"
#include "core/resource_manager.h"
#include "xatm/xid.h"
#include "mysql/mysql_xid.h"

using namespace xatm;  // NOLINT(google-build-using-namespace): test file

namespace {

using std::chrono::milliseconds;

using test::log_capture;
using test::settings_of;

std::unique_ptr<resource_manager> open_rm(const std::string& conninfo = test::servers().mysql,
                                          const std::string& name = "maria") {
  return test::open_rm_with(&mysql::connect, conninfo, name);
}

// The rows of one query on a connection of its own (the test's view from outside the branch).
query_result query(const std::string& sql, const std::string& conninfo = test::servers().mysql) {
  return test::query_with(&mysql::connect, sql, conninfo);
}

std::string single_value(const std::string& sql, const std::string& conninfo = test::servers().mysql) {
  return test::single_value_of(query(sql, conninfo));
}

xid next_xid(const std::string& bqual = "1") { return test::next_test_xid("mytest", bqual); }

// What XA RECOVER says on a connection of its own.
recovered_branches recovered() {
  auto rm = open_rm(test::servers().mysql, "recovery");
  auto found = rm->recover();
  if (!found.ok()) FAIL("recover: " << found.error().describe());
  return std::move(found).value();
}

bool is_prepared(const xid& branch) {
  for (const auto& ours : recovered().ours) {
    if (ours == branch) return true;
  }
  return false;
}

// The test table; ids are random per run so that parallel runs do not collide.
void ensure_table() {
  query("CREATE TABLE IF NOT EXISTS mysqltest_items (id BIGINT PRIMARY KEY, note VARCHAR(64)) ENGINE=InnoDB");
}

constexpr const char* items_table = "mysqltest_items";

std::int64_t next_id() { return test::next_row_id(); }

std::string insert_sql(std::int64_t id) { return test::insert_row_sql(items_table, id); }

std::string select_sql(std::int64_t id) { return "SELECT note FROM mysqltest_items WHERE id = " + std::to_string(id); }

bool row_exists(std::int64_t id) {
  return single_value("SELECT count(*) FROM mysqltest_items WHERE id = " + std::to_string(id)) == "1";
}

// Starts a branch that inserts one row and ends it.
std::int64_t write_and_end(resource_manager& rm, const xid& branch) {
  return test::write_and_end_in(rm, branch, items_table);
}

// The session's id, without a statement (the branch may be ended or prepared).
std::string connection_id(resource_manager& rm) {
  MYSQL* conn = mysql::handle(rm);
  REQUIRE(conn != nullptr);
  return std::to_string(mysql_thread_id(conn));
}

// Ends a session from the server side (as an administrator would) and waits until it is gone.
void kill_connection(const std::string& id) {
  query("KILL CONNECTION " + id, test::servers().mysql_root);
  for (int attempt = 0; attempt < 100; ++attempt) {
    if (single_value("SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = " + id,
                     test::servers().mysql_root) == "0") {
      return;
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  FAIL("connection " << id << " did not end");
}

// Closes a connection and waits until the server has finished with its session, so that its
// prepared branch is detached (committable from other sessions).
void close_and_wait(std::unique_ptr<resource_manager>& rm) {
  auto id = connection_id(*rm);
  rm.reset();
  for (int attempt = 0; attempt < 100; ++attempt) {
    if (single_value("SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = " + id,
                     test::servers().mysql_root) == "0") {
      return;
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  FAIL("connection " << id << " did not end");
}

// Retries `call` while it answers xa_code::retry (a branch still attached to a session that is
// going away), for at most ten seconds.
result<void> until_not_retry(const std::function<result<void>()>& call) {
  for (int attempt = 0;; ++attempt) {
    auto answer = call();
    if (answer.ok() || answer.error().code != xa_code::retry || attempt == 200) return answer;
    std::this_thread::sleep_for(milliseconds(50));
  }
}

// Rolls back prepared branches when the test ends, whatever happened.
struct prepared_cleanup {
  std::vector<std::string> literals;  // XA ROLLBACK arguments
  ~prepared_cleanup() {
    for (const auto& literal : literals) {
      auto rm = mysql::connect("cleanup", settings_of(test::servers().mysql_root));
      if (!rm.ok()) continue;
      // Ignored: the branch is usually gone already; this is only a safety net.
      static_cast<void>(rm.value()->exec("XA ROLLBACK " + literal));
    }
  }
};

// A plain Connector/C connection as root, for what a test does behind xatm's back.
class raw_connection {
 public:
  raw_connection() : conn_(mysql_init(nullptr)) {
    REQUIRE(conn_ != nullptr);
    if (mysql_real_connect(conn_, nullptr, "root", nullptr, "xatm_test", 0, test::servers().mysql_socket.c_str(), 0) ==
        nullptr) {
      FAIL("raw connect: " << mysql_error(conn_));
    }
  }
  ~raw_connection() { mysql_close(conn_); }
  raw_connection(const raw_connection&) = delete;
  raw_connection& operator=(const raw_connection&) = delete;

  void run(const std::string& sql) {
    if (mysql_query(conn_, sql.c_str()) != 0) FAIL(sql << ": " << mysql_error(conn_));
    mysql_free_result(mysql_store_result(conn_));
  }

 private:
  MYSQL* conn_;
};

// Runs SQL on the native handle, as an application would; answers mysql_errno().
unsigned int run_native(resource_manager& rm, const std::string& sql) {
  MYSQL* conn = mysql::handle(rm);
  REQUIRE(conn != nullptr);
  if (mysql_query(conn, sql.c_str()) != 0) return mysql_errno(conn);
  mysql_free_result(mysql_store_result(conn));  // a result set, if there is one, must be read
  return 0;
}

// A resource manager that is not MariaDB's, for handle().

}  // namespace

TEST_CASE("connect detects MariaDB and hands out the native handle") {
  auto rm = open_rm();
  CHECK(rm->dialect() == "mariadb");
  CHECK(rm->connected());
  CHECK(mysql::handle(*rm) != nullptr);
  CHECK(rm->native_handle() == static_cast<void*>(mysql::handle(*rm)));
  xatm::test::null_rm other;
  CHECK(mysql::handle(other) == nullptr);
  // The session reports its transaction state: read-only detection depends on it.
  CHECK(*rm->exec("SELECT @@session.session_track_transaction_info").value().rows.at(0).at(0) == "STATE");
}

TEST_CASE("exec returns columns, rows, NULLs, binary values and the affected row count") {
  ensure_table();
  auto rm = open_rm();
  auto rows = rm->exec("SELECT 1 AS one, NULL AS nothing, X'00ff27' AS bytes");
  REQUIRE_OK(rows);
  CHECK(rows.value().columns == std::vector<std::string>{"one", "nothing", "bytes"});
  REQUIRE(rows.value().rows.size() == 1);
  CHECK(rows.value().rows[0][0] == "1");
  CHECK_FALSE(rows.value().rows[0][1].has_value());
  CHECK(rows.value().rows[0][2] == std::string("\0\xff'", 3));
  auto id = next_id();
  auto inserted = rm->exec(insert_sql(id));
  REQUIRE_OK(inserted);
  CHECK(inserted.value().affected_rows == 1);
  CHECK(inserted.value().columns.empty());
  auto updated = rm->exec("UPDATE mysqltest_items SET note = 'y' WHERE id = " + std::to_string(id));
  REQUIRE_OK(updated);
  CHECK(updated.value().affected_rows == 1);
  auto failed = rm->exec("SELECT * FROM no_such_table_here");
  CHECK_FAILS_WITH(failed, xa_code::rm_error);
  CHECK(failed.error().native_code == 1146);
  CHECK(failed.error().sqlstate == "42S02");
  CHECK(failed.error().rm_name == "maria");
}

TEST_CASE("one-phase commit") {
  ensure_table();
  auto rm = open_rm();
  auto branch = next_xid();
  auto id = write_and_end(*rm, branch);
  CHECK(rm->state() == branch_state::ended);
  CHECK_FALSE(rm->known_read_only());
  REQUIRE_OK(rm->commit(branch, true));
  CHECK(rm->state() == branch_state::idle);
  CHECK(row_exists(id));
}

TEST_CASE("two-phase commit on the connection that prepared") {
  ensure_table();
  auto rm = open_rm();
  auto branch = next_xid();
  auto id = write_and_end(*rm, branch);
  auto voted = rm->prepare(branch);
  REQUIRE_OK(voted);
  CHECK(voted.value() == vote::commit);
  CHECK(rm->state() == branch_state::prepared);
  CHECK(is_prepared(branch));
  CHECK_FALSE(row_exists(id));
  REQUIRE_OK(rm->commit(branch, false));
  CHECK(rm->state() == branch_state::idle);
  CHECK_FALSE(is_prepared(branch));
  CHECK(row_exists(id));
  // The connection carries the next branch right away.
  auto next = next_xid();
  REQUIRE_OK(rm->start(next));
  REQUIRE_OK(rm->rollback(next));
}

TEST_CASE("rollback in every state") {
  ensure_table();
  auto rm = open_rm();
  auto branch = next_xid();
  SUBCASE("active branch: XA END, then XA ROLLBACK") {
    auto id = next_id();
    REQUIRE_OK(rm->start(branch));
    REQUIRE_OK(rm->exec(insert_sql(id)));
    REQUIRE_OK(rm->rollback(branch));
    CHECK(rm->state() == branch_state::idle);
    CHECK_FALSE(row_exists(id));
  }
  SUBCASE("ended branch") {
    auto id = write_and_end(*rm, branch);
    REQUIRE_OK(rm->rollback(branch));
    CHECK_FALSE(row_exists(id));
  }
  SUBCASE("branch ended with failure (rollback-only)") {
    auto id = next_id();
    REQUIRE_OK(rm->start(branch));
    REQUIRE_OK(rm->exec(insert_sql(id)));
    REQUIRE_OK(rm->end(branch, false));
    CHECK(rm->state() == branch_state::rollback_only);
    CHECK_FAILS_WITH(rm->prepare(branch), xa_code::protocol);
    REQUIRE_OK(rm->rollback(branch));
    CHECK(rm->state() == branch_state::idle);
    CHECK_FALSE(row_exists(id));
  }
  SUBCASE("prepared branch, on its own connection") {
    auto id = write_and_end(*rm, branch);
    REQUIRE_OK(rm->prepare(branch));
    REQUIRE_OK(rm->rollback(branch));
    CHECK_FALSE(is_prepared(branch));
    CHECK_FALSE(row_exists(id));
  }
  SUBCASE("prepared branch, from another connection after the first one ended") {
    auto id = write_and_end(*rm, branch);
    REQUIRE_OK(rm->prepare(branch));
    rm.reset();
    auto other = open_rm();
    REQUIRE_OK(until_not_retry([&] { return other->rollback(branch); }));
    CHECK_FALSE(is_prepared(branch));
    CHECK_FALSE(row_exists(id));
  }
}

TEST_CASE("read-only detection: a branch that only reads finishes at prepare and leaves nothing prepared") {
  ensure_table();
  auto rm = open_rm();
  auto branch = next_xid();
  auto id = next_id();
  query(insert_sql(id));
  REQUIRE_OK(rm->start(branch));
  SUBCASE("reads through exec") { REQUIRE_OK(rm->exec(select_sql(id))); }
  SUBCASE("reads on the native handle") { REQUIRE(run_native(*rm, select_sql(id)) == 0); }
  SUBCASE("reads nothing at all") {}
  REQUIRE_OK(rm->end(branch));
  CHECK(rm->known_read_only());
  auto voted = rm->prepare(branch);
  REQUIRE_OK(voted);
  CHECK(voted.value() == vote::read_only);
  CHECK(rm->state() == branch_state::idle);
  CHECK_FALSE(rm->current_branch().has_value());
  CHECK_FALSE(is_prepared(branch));
}

TEST_CASE("read-only detection: a branch that wrote votes commit, however it wrote") {
  ensure_table();
  auto rm = open_rm();
  auto branch = next_xid();
  auto id = next_id();
  REQUIRE_OK(rm->start(branch));
  SUBCASE("through exec") { REQUIRE_OK(rm->exec(insert_sql(id))); }
  SUBCASE("through exec, then reads") {
    REQUIRE_OK(rm->exec(insert_sql(id)));
    REQUIRE_OK(rm->exec(select_sql(id)));
  }
  SUBCASE("on the native handle") { REQUIRE(run_native(*rm, insert_sql(id)) == 0); }
  SUBCASE("on the native handle, twice (the second OK packet reports no change)") {
    REQUIRE(run_native(*rm, insert_sql(id)) == 0);
    REQUIRE(run_native(*rm, insert_sql(next_id())) == 0);
  }
  SUBCASE("on the native handle with INSERT ... RETURNING (a result set: no tracker report)") {
    REQUIRE(run_native(*rm, insert_sql(id) + " RETURNING id") == 0);
  }
  SUBCASE("after the application ran a statement that already set the tracker's 's' flag") {
    REQUIRE(run_native(*rm, "DO UUID()") == 0);
    REQUIRE(run_native(*rm, insert_sql(id) + " RETURNING id") == 0);
  }
  SUBCASE("SELECT ... FOR UPDATE: the tracker sees a write lock, which counts as writing") {
    query(insert_sql(id));
    REQUIRE_OK(rm->exec(select_sql(id) + " FOR UPDATE"));
  }
  REQUIRE_OK(rm->end(branch));
  CHECK_FALSE(rm->known_read_only());
  auto voted = rm->prepare(branch);
  REQUIRE_OK(voted);
  CHECK(voted.value() == vote::commit);
  CHECK(is_prepared(branch));
  REQUIRE_OK(rm->commit(branch, false));
  CHECK(row_exists(id));
}

TEST_CASE("read-only detection: when the server cannot say, the branch counts as writing") {
  // The application already set the tracker's 's' flag, so the probe changes nothing and gets
  // no report. Preparing a branch that wrote nothing is slower, never wrong.
  auto rm = open_rm();
  auto branch = next_xid();
  REQUIRE_OK(rm->start(branch));
  REQUIRE(run_native(*rm, "DO UUID()") == 0);
  REQUIRE_OK(rm->end(branch));
  CHECK_FALSE(rm->known_read_only());
  auto voted = rm->prepare(branch);
  REQUIRE_OK(voted);
  CHECK(voted.value() == vote::commit);
  REQUIRE_OK(rm->commit(branch, false));
}

TEST_CASE("a prepared branch survives its connection and is committed from a new one") {
  ensure_table();
  auto branch = next_xid();
  std::int64_t id = 0;
  {
    auto rm = open_rm();
    id = write_and_end(*rm, branch);
    REQUIRE_OK(rm->prepare(branch));
  }
  CHECK(is_prepared(branch));
  CHECK_FALSE(row_exists(id));
  auto rm = open_rm();
  REQUIRE_OK(until_not_retry([&] { return rm->commit(branch, false); }));
  CHECK(rm->state() == branch_state::idle);  // resolving leaves the connection's own state alone
  CHECK_FALSE(is_prepared(branch));
  CHECK(row_exists(id));
  // Done is done: a second commit finds nothing.
  CHECK_FAILS_WITH(rm->commit(branch, false), xa_code::not_found);
}

TEST_CASE("a prepared branch still attached to its session answers retry, never not_found") {
  // MariaDB 10.11: XA COMMIT/ROLLBACK from another session answers XAER_NOTA (1397) while the
  // session that prepared the branch is connected, although XA RECOVER lists the branch.
  ensure_table();
  auto branch = next_xid();
  prepared_cleanup cleanup{{mysql::xid_literal(branch)}};
  auto owner = open_rm();
  auto id = write_and_end(*owner, branch);
  REQUIRE_OK(owner->prepare(branch));

  auto other = open_rm(test::servers().mysql, "other");
  auto committed = other->commit(branch, false);
  CHECK_FAILS_WITH(committed, xa_code::retry);
  CHECK(committed.error().native_code == 1397);
  CHECK_FAILS_WITH(other->rollback(branch), xa_code::retry);
  CHECK(other->state() == branch_state::idle);
  CHECK(is_prepared(branch));
  CHECK_FALSE(row_exists(id));

  // The session ends; the branch stays prepared, now detached. Wait until the server has
  // finished with the session: an XA COMMIT that races MariaDB 10.11's detach of the branch was
  // seen to answer OK while the branch's changes were lost (about 1 run in 40; see
  // docs/design.md section 6), which is the server's problem, not the one tested here.
  close_and_wait(owner);
  REQUIRE_OK(until_not_retry([&] { return other->commit(branch, false); }));
  CHECK(row_exists(id));
  CHECK_FALSE(is_prepared(branch));
}

TEST_CASE("a prepared branch that wrote nothing, once its session ended, commits as done") {
  // MariaDB discards such a branch when its session ends and answers XA_RBROLLBACK to a later
  // XA COMMIT: nothing was written, so nothing was lost, and it must not look like a heuristic.
  auto branch = next_xid();
  {
    auto rm = open_rm();
    REQUIRE_OK(rm->start(branch));
    REQUIRE(run_native(*rm, "DO UUID()") == 0);  // the probe cannot tell: it gets prepared
    REQUIRE_OK(rm->end(branch));
    REQUIRE_FALSE(rm->known_read_only());
    REQUIRE_OK(rm->prepare(branch));
  }
  auto rm = open_rm();
  REQUIRE_OK(until_not_retry([&] { return rm->commit(branch, false); }));
  CHECK_FALSE(is_prepared(branch));
}

TEST_CASE("XA COMMIT/ROLLBACK of an unknown xid answer not_found") {
  auto rm = open_rm();
  auto unknown = next_xid();
  auto committed = rm->commit(unknown, false);
  CHECK_FAILS_WITH(committed, xa_code::not_found);
  CHECK(committed.error().native_code == 1397);
  CHECK(committed.error().sqlstate == "XAE04");
  CHECK_FAILS_WITH(rm->rollback(unknown), xa_code::not_found);
  CHECK(rm->state() == branch_state::idle);
}

TEST_CASE("illegal transitions answer protocol and send nothing") {
  auto rm = open_rm();
  auto branch = next_xid();
  CHECK_FAILS_WITH(rm->end(branch), xa_code::protocol);
  CHECK_FAILS_WITH(rm->prepare(branch), xa_code::protocol);
  CHECK_FAILS_WITH(rm->commit(branch, true), xa_code::protocol);
  REQUIRE_OK(rm->start(branch));
  CHECK_FAILS_WITH(rm->start(next_xid()), xa_code::protocol);
  CHECK_FAILS_WITH(rm->prepare(branch), xa_code::protocol);
  CHECK_FAILS_WITH(rm->recover(), xa_code::protocol);
  REQUIRE_OK(rm->rollback(branch));
}

TEST_CASE("start on a connection inside a local transaction answers outside") {
  auto rm = open_rm();
  REQUIRE_OK(rm->exec("BEGIN"));
  auto branch = next_xid();
  auto started = rm->start(branch);
  CHECK_FAILS_WITH(started, xa_code::outside);
  CHECK(started.error().native_code == 1400);
  CHECK(rm->state() == branch_state::idle);
  REQUIRE_OK(rm->exec("ROLLBACK"));
  REQUIRE_OK(rm->start(branch));
  REQUIRE_OK(rm->rollback(branch));
}

TEST_CASE("start of an xid that already exists answers duplicate_id") {
  auto branch = next_xid();
  auto first = open_rm();
  REQUIRE_OK(first->start(branch));
  auto second = open_rm();
  auto started = second->start(branch);
  CHECK_FAILS_WITH(started, xa_code::duplicate_id);
  CHECK(started.error().native_code == 1440);
  CHECK(second->state() == branch_state::idle);
  REQUIRE_OK(first->rollback(branch));
}

TEST_CASE("foreign prepared transactions are listed as foreign and never touched") {
  ensure_table();
  // Plain characters: MariaDB lists these as 'gtrid','bqual' (formatID 1 is not printed).
  std::string gtrid = "foreign-" + std::to_string(::getpid()) + "-" + std::to_string(next_id() % 1000000);
  std::string literal = "'" + gtrid + "','b',1";
  prepared_cleanup cleanup{{literal}};
  auto id = next_id();
  {
    raw_connection other;
    other.run("XA START " + literal);
    other.run(insert_sql(id));
    other.run("XA END " + literal);
    other.run("XA PREPARE " + literal);
  }  // disconnects: the branch stays prepared, detached
  auto found = recovered();
  bool listed = false;
  for (const auto& branch : found.foreign) {
    if (branch.raw == "'" + gtrid + "','b'") {
      listed = true;
      CHECK_FALSE(branch.age_seconds.has_value());  // MariaDB does not say
    }
  }
  CHECK(listed);
  for (const auto& ours : found.ours) CHECK(ours.gtrid() != gtrid);
  // Recovering twice changes nothing: it is still there, still prepared.
  bool still_listed = false;
  for (const auto& branch : recovered().foreign) still_listed = still_listed || branch.raw == "'" + gtrid + "','b'";
  CHECK(still_listed);
  CHECK_FALSE(row_exists(id));
  query("XA ROLLBACK " + literal, test::servers().mysql_root);
  for (const auto& branch : recovered().foreign) CHECK(branch.raw != "'" + gtrid + "','b'");
}

TEST_CASE("64-byte binary gtrid and bqual with quotes and NUL bytes round-trip through prepare and recover") {
  ensure_table();
  std::string gtrid(64, 'g');
  std::string bqual(64, 'b');
  const std::string nasty = std::string("\0'\"\\`;x\xff\x01,X'", 12);
  gtrid.replace(0, nasty.size(), nasty);
  bqual.replace(bqual.size() - nasty.size(), nasty.size(), nasty);
  gtrid.replace(20, 4, std::to_string(1000 + ::getpid() % 9000));  // four digits: runs apart
  xid branch(xatm_format_id, gtrid, bqual);
  prepared_cleanup cleanup{{mysql::xid_literal(branch)}};
  auto rm = open_rm();
  auto id = write_and_end(*rm, branch);
  REQUIRE_OK(rm->prepare(branch));
  bool found = false;
  for (const auto& ours : recovered().ours) {
    if (ours == branch) {
      found = true;
      CHECK(ours.gtrid().size() == 64);
      CHECK(ours.bqual().size() == 64);
    }
  }
  CHECK(found);
  REQUIRE_OK(rm->commit(branch, false));
  CHECK(row_exists(id));
  CHECK_FALSE(is_prepared(branch));
}

TEST_CASE("a deadlock inside a branch makes it rollback-only") {
  ensure_table();
  auto first_id = next_id();
  auto second_id = next_id();
  query(insert_sql(first_id));
  query(insert_sql(second_id));
  auto a = open_rm(test::servers().mysql, "a");
  auto b = open_rm(test::servers().mysql, "b");
  auto a_branch = next_xid();
  auto b_branch = next_xid();
  bool native = false;
  SUBCASE("SQL through exec: end answers XA_RBDEADLOCK") { native = false; }
  SUBCASE("SQL on the native handle: end answers XA_RBROLLBACK (xatm saw no deadlock)") { native = true; }

  // What a statement answered; run from two threads, so no doctest assertions inside.
  struct answer {
    unsigned int native_code = 0;
    xa_code code = xa_code::ok;
  };
  auto update = [native](resource_manager& rm, std::int64_t id) {
    std::string sql = "UPDATE mysqltest_items SET note = 'locked' WHERE id = " + std::to_string(id);
    if (native) {
      MYSQL* conn = mysql::handle(rm);
      return mysql_query(conn, sql.c_str()) == 0 ? answer{} : answer{mysql_errno(conn), xa_code::rm_error};
    }
    auto done = rm.exec(sql);
    return done.ok() ? answer{} : answer{static_cast<unsigned int>(done.error().native_code), done.error().code};
  };
  REQUIRE_OK(a->start(a_branch));
  REQUIRE_OK(b->start(b_branch));
  REQUIRE(update(*a, first_id).native_code == 0);
  REQUIRE(update(*b, second_id).native_code == 0);
  answer b_answer;
  std::thread waiter([&] { b_answer = update(*b, first_id); });  // waits for a's lock
  std::this_thread::sleep_for(milliseconds(300));
  answer a_answer = update(*a, second_id);  // closes the cycle: InnoDB picks a victim
  waiter.join();
  bool a_won = a_answer.native_code == 0;
  REQUIRE(a_won != (b_answer.native_code == 0));
  auto& victim = a_won ? b : a;
  auto& survivor = a_won ? a : b;
  const auto& victim_branch = a_won ? b_branch : a_branch;
  const auto& survivor_branch = a_won ? a_branch : b_branch;
  const answer& lost = a_won ? b_answer : a_answer;
  CHECK(lost.native_code == 1213);
  if (!native) CHECK(lost.code == xa_code::rollback_deadlock);

  // MariaDB answers XA END with XAER_RMFAIL "... ROLLBACK ONLY state": an XA_RB* outcome.
  auto ended = victim->end(victim_branch);
  CHECK_FAILS_WITH(ended, native ? xa_code::rollback : xa_code::rollback_deadlock);
  CHECK(victim->state() == branch_state::rollback_only);
  REQUIRE_OK(victim->rollback(victim_branch));
  CHECK(victim->state() == branch_state::idle);

  REQUIRE_OK(survivor->end(survivor_branch));
  auto voted = survivor->prepare(survivor_branch);
  REQUIRE_OK(voted);
  CHECK(voted.value() == vote::commit);
  REQUIRE_OK(survivor->commit(survivor_branch, false));
}

TEST_CASE("a lock wait timeout inside a branch makes it rollback-only with XA_RBTIMEOUT") {
  ensure_table();
  auto id = next_id();
  query(insert_sql(id));
  auto holder = open_rm(test::servers().mysql, "holder");
  auto waiter = open_rm(test::servers().mysql, "waiter");
  REQUIRE_OK(waiter->exec("SET SESSION innodb_lock_wait_timeout = 1"));
  auto holder_branch = next_xid();
  auto waiter_branch = next_xid();
  REQUIRE_OK(holder->start(holder_branch));
  REQUIRE_OK(holder->exec("UPDATE mysqltest_items SET note = 'h' WHERE id = " + std::to_string(id)));
  REQUIRE_OK(waiter->start(waiter_branch));
  auto timed_out = waiter->exec("UPDATE mysqltest_items SET note = 'w' WHERE id = " + std::to_string(id));
  CHECK_FAILS_WITH(timed_out, xa_code::rollback_timeout);
  CHECK(timed_out.error().native_code == 1205);
  // MariaDB only undid the statement; xatm holds the branch to it anyway.
  auto ended = waiter->end(waiter_branch);
  CHECK_FAILS_WITH(ended, xa_code::rollback_timeout);
  CHECK(waiter->state() == branch_state::rollback_only);
  REQUIRE_OK(waiter->rollback(waiter_branch));
  REQUIRE_OK(holder->rollback(holder_branch));
}

TEST_CASE("XA COMMIT blocked by FLUSH TABLES WITH READ LOCK answers retry, and commits later") {
  ensure_table();
  auto branch = next_xid();
  prepared_cleanup cleanup{{mysql::xid_literal(branch)}};
  auto rm = open_rm();
  REQUIRE_OK(rm->exec("SET SESSION lock_wait_timeout = 1"));
  auto locker = open_rm(test::servers().mysql_root, "locker");
  std::int64_t id = 0;
  SUBCASE("on the connection that prepared") {
    id = write_and_end(*rm, branch);
    REQUIRE_OK(rm->prepare(branch));
  }
  SUBCASE("from another connection (recovery)") {
    auto preparer = open_rm();
    id = write_and_end(*preparer, branch);
    REQUIRE_OK(preparer->prepare(branch));
    close_and_wait(preparer);
  }
  REQUIRE_OK(locker->exec("FLUSH TABLES WITH READ LOCK"));
  auto blocked = rm->commit(branch, false);
  CHECK_FAILS_WITH(blocked, xa_code::retry);
  CHECK(blocked.error().native_code == 1205);
  CHECK(is_prepared(branch));
  REQUIRE_OK(locker->exec("UNLOCK TABLES"));
  REQUIRE_OK(rm->commit(branch, false));
  CHECK(row_exists(id));
}

TEST_CASE("a lost connection answers rm_failure; an unprepared branch is gone, a prepared one stays") {
  ensure_table();
  auto rm = open_rm();
  auto branch = next_xid();
  auto id = next_id();
  SUBCASE("active branch, then end") {
    REQUIRE_OK(rm->start(branch));
    REQUIRE_OK(rm->exec(insert_sql(id)));
    kill_connection(connection_id(*rm));
    CHECK_FAILS_WITH(rm->end(branch), xa_code::rm_failure);
    CHECK(rm->state() == branch_state::idle);
    CHECK_FALSE(rm->connected());
    CHECK_FALSE(row_exists(id));
    REQUIRE_OK(rm->reconnect());
    CHECK(rm->connected());
    CHECK(rm->exec("SELECT 1").ok());
  }
  SUBCASE("active branch, then exec") {
    REQUIRE_OK(rm->start(branch));
    kill_connection(connection_id(*rm));
    CHECK_FAILS_WITH(rm->exec("SELECT 1"), xa_code::rm_failure);
    CHECK(rm->state() == branch_state::idle);
    CHECK_FALSE(rm->connected());
  }
  SUBCASE("active branch, then rollback: done, the server rolled it back") {
    REQUIRE_OK(rm->start(branch));
    REQUIRE_OK(rm->exec(insert_sql(id)));
    kill_connection(connection_id(*rm));
    REQUIRE_OK(rm->rollback(branch));
    CHECK(rm->state() == branch_state::idle);
    CHECK_FALSE(row_exists(id));
  }
  SUBCASE("ended branch, then one-phase commit: in doubt") {
    id = write_and_end(*rm, branch);
    kill_connection(connection_id(*rm));
    auto committed = rm->commit(branch, true);
    CHECK_FAILS_WITH(committed, xa_code::rm_failure);
    CHECK(rm->state() == branch_state::idle);
    CHECK_FALSE(row_exists(id));  // in this case the session ended before the commit was sent
  }
  SUBCASE("prepared branch, then commit: it stays prepared and commits after reconnect") {
    id = write_and_end(*rm, branch);
    REQUIRE_OK(rm->prepare(branch));
    kill_connection(connection_id(*rm));
    CHECK_FAILS_WITH(rm->commit(branch, false), xa_code::rm_failure);
    CHECK(rm->state() == branch_state::idle);
    CHECK(is_prepared(branch));
    REQUIRE_OK(rm->reconnect());
    REQUIRE_OK(until_not_retry([&] { return rm->commit(branch, false); }));
    CHECK(row_exists(id));
  }
  SUBCASE("verbs on a closed connection answer rm_failure until reconnect") {
    kill_connection(connection_id(*rm));
    CHECK_FAILS_WITH(rm->start(branch), xa_code::rm_failure);
    CHECK_FALSE(rm->connected());
    CHECK_FAILS_WITH(rm->start(branch), xa_code::rm_failure);
    CHECK_FAILS_WITH(rm->recover(), xa_code::rm_failure);
    REQUIRE_OK(rm->reconnect());
    REQUIRE_OK(rm->start(branch));
    REQUIRE_OK(rm->rollback(branch));
  }
}

TEST_CASE("non-blocking verbs on several connections progress together") {
  ensure_table();
  constexpr int count = 3;
  std::vector<std::unique_ptr<resource_manager>> rms;
  std::vector<xid> branches;
  std::vector<std::int64_t> ids;
  std::vector<resource_manager*> pointers;
  for (int i = 0; i < count; ++i) {
    rms.push_back(open_rm(test::servers().mysql, "rm" + std::to_string(i)));
    branches.push_back(next_xid(std::to_string(i + 1)));
    ids.push_back(next_id());
    pointers.push_back(rms.back().get());
  }
  auto run_all = [&](xa_verb verb) {
    for (int i = 0; i < count; ++i) REQUIRE_OK(rms[i]->begin_call(verb, branches[i]));
    auto late = drive_calls(pointers, std::chrono::steady_clock::now() + std::chrono::seconds(30));
    REQUIRE(late.empty());
    std::vector<vote> votes;
    for (int i = 0; i < count; ++i) {
      auto answer = rms[i]->finish_call();
      REQUIRE_OK(answer);
      votes.push_back(answer.value());
    }
    return votes;
  };
  run_all(xa_verb::start);
  // The first branch only reads: its end runs the probe and XA END, two statements.
  REQUIRE_OK(rms[0]->exec(select_sql(ids[0])));
  for (int i = 1; i < count; ++i) REQUIRE(run_native(*rms[i], insert_sql(ids[i])) == 0);
  run_all(xa_verb::end);
  CHECK(rms[0]->known_read_only());
  CHECK_FALSE(rms[1]->known_read_only());
  auto votes = run_all(xa_verb::prepare);
  CHECK(votes[0] == vote::read_only);
  CHECK(votes[1] == vote::commit);
  CHECK(votes[2] == vote::commit);
  CHECK(rms[0]->state() == branch_state::idle);
  for (int i = 1; i < count; ++i) REQUIRE_OK(rms[i]->begin_call(xa_verb::commit, branches[i]));
  REQUIRE(drive_calls(pointers, std::nullopt).empty());
  for (int i = 1; i < count; ++i) {
    REQUIRE_OK(rms[i]->finish_call());
    CHECK(row_exists(ids[i]));
  }
}

TEST_CASE("abandoning a call that waits closes the connection") {
  ensure_table();
  auto branch = next_xid();
  prepared_cleanup cleanup{{mysql::xid_literal(branch)}};
  {
    auto preparer = open_rm();
    write_and_end(*preparer, branch);
    REQUIRE_OK(preparer->prepare(branch));
    close_and_wait(preparer);  // detached: XA COMMIT from elsewhere now waits for the lock
  }
  auto rm = open_rm();
  auto locker = open_rm(test::servers().mysql_root, "locker");
  REQUIRE_OK(locker->exec("FLUSH TABLES WITH READ LOCK"));
  REQUIRE_OK(rm->begin_call(xa_verb::commit, branch));
  resource_manager* pointer = rm.get();
  auto late = drive_calls(std::span(&pointer, 1), std::chrono::steady_clock::now() + milliseconds(300));
  CHECK(late.size() == 1);
  CHECK(rm->call_in_flight());
  rm->abandon_call();
  CHECK_FALSE(rm->call_in_flight());
  CHECK_FALSE(rm->connected());
  REQUIRE_OK(locker->exec("UNLOCK TABLES"));
  // The server may still carry out the XA COMMIT it had received: either way the branch ends.
  auto cleaner = open_rm();
  auto done = until_not_retry([&] { return cleaner->commit(branch, false); });
  if (!done.ok()) CHECK(done.error().code == xa_code::not_found);
  CHECK_FALSE(is_prepared(branch));
}

TEST_CASE("bad connection settings fail clearly and never show the password") {
  const std::string password(test::mysql_password);
  auto settings = settings_of(test::servers().mysql);
  SUBCASE("unknown keyword") {
    settings.set("sslmode", "require");
    auto rm = mysql::connect("maria", settings);
    CHECK_FAILS_WITH(rm, xa_code::invalid);
    CHECK(rm.error().message.find("'sslmode'") != std::string::npos);
    CHECK(rm.error().message.find("password=***") != std::string::npos);
    CHECK(rm.error().message.find(password) == std::string::npos);
  }
  SUBCASE("unreachable socket") {
    settings.set("unix_socket", "/nonexistent/xatm/mysql.sock");
    auto rm = mysql::connect("maria", settings);
    CHECK_FAILS_WITH(rm, xa_code::rm_failure);
    CHECK(rm.error().native_code == 2002);
    CHECK(rm.error().message.find("/nonexistent/xatm/mysql.sock") != std::string::npos);
    CHECK(rm.error().message.find(password) == std::string::npos);
    CHECK(rm.error().describe().find(password) == std::string::npos);
  }
  SUBCASE("wrong password") {
    settings.set("password", "wrong 'secret\" text");
    auto rm = mysql::connect("maria", settings);
    CHECK_FAILS_WITH(rm, xa_code::rm_failure);
    CHECK(rm.error().native_code == 1045);
    CHECK(rm.error().message.find("secret") == std::string::npos);
  }
  SUBCASE("unknown database") {
    settings.set("dbname", "no_such_database_here");
    auto rm = mysql::connect("maria", settings);
    CHECK_FAILS_WITH(rm, xa_code::rm_failure);
    CHECK(rm.error().message.find(password) == std::string::npos);
  }
  SUBCASE("dbname and database both") {
    settings.set("database", "xatm_test");
    CHECK_FAILS_WITH(mysql::connect("maria", settings), xa_code::invalid);
  }
  SUBCASE("a port that is not a number") {
    settings.set("port", "33o6");
    auto rm = mysql::connect("maria", settings);
    CHECK_FAILS_WITH(rm, xa_code::invalid);
    CHECK(rm.error().message.find("port") != std::string::npos);
  }
  SUBCASE("a timeout that is not a number") {
    settings.set("read_timeout", "soon");
    CHECK_FAILS_WITH(mysql::connect("maria", settings), xa_code::invalid);
  }
  SUBCASE("database is accepted as dbname's alias, and timeouts are accepted") {
    auto dbname = settings.get("dbname");
    REQUIRE(dbname.has_value());
    connection_settings aliased;
    for (const auto& [key, value] : settings.values()) aliased.set(key == "dbname" ? "database" : key, value);
    aliased.set("connect_timeout", "5");
    aliased.set("read_timeout", "30");
    aliased.set("write_timeout", "30");
    auto rm = mysql::connect("maria", aliased);
    REQUIRE_OK(rm);
    CHECK(*rm.value()->exec("SELECT DATABASE()").value().rows.at(0).at(0) == *dbname);
  }
  SUBCASE("bad RM name") { CHECK_FAILS_WITH(mysql::connect("not a name!", settings), xa_code::invalid); }
}

TEST_CASE("the password never reaches the log, whatever happens") {
  const std::string password(test::mysql_password);
  log_capture logs;
  {
    auto rm = open_rm();
    auto branch = next_xid();
    REQUIRE_OK(rm->start(branch));
    REQUIRE_OK(rm->end(branch));
    REQUIRE_OK(rm->prepare(branch));  // wrote nothing: finished with XA COMMIT ... ONE PHASE
    REQUIRE_OK(rm->recover());
    CHECK_FAILS_WITH(rm->commit(next_xid(), false), xa_code::not_found);
  }
  auto settings = settings_of(test::servers().mysql);
  settings.set("unix_socket", "/nonexistent/xatm/mysql.sock");
  CHECK_FALSE(mysql::connect("maria", settings).ok());
  auto text = logs.text();
  CHECK(text.find("XA START") != std::string::npos);  // the sink did see the protocol
  CHECK(text.find("password=***") != std::string::npos);
  CHECK(text.find(password) == std::string::npos);
}
