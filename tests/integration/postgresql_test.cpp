// The PostgreSQL adapter against the real test server: every XA verb as SQL, read-only
// detection, prepared branches outliving their connection, foreign prepared transactions left
// alone, binary XIDs through the gid encoding, error mapping (unknown gid, failed branches,
// deferred constraints, lost connections, max_prepared_transactions = 0, bad settings).
// Needs the `servers` fixture; the max_prepared_transactions = 0 case starts its own server.
#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <ctime>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/null_rm.h"
#include "support/adapter_checks.h"
#include "support/result_checks.h"
#include "support/servers.h"
#include "support/throwaway_postgresql.h"
#include "xatm/connection_settings.h"
#include "postgresql/postgresql.h"
#include "core/resource_manager.h"
#include "xatm/xid.h"
#include "postgresql/postgresql_xid.h"

using namespace xatm;  // NOLINT(google-build-using-namespace): test file

namespace {

using test::settings_of;

std::unique_ptr<resource_manager> open_rm(const std::string& conninfo = test::servers().pg,
                                          const std::string& name = "pg") {
  return test::open_rm_with(&postgresql::connect, conninfo, name);
}

// The rows of one query on a connection of its own (the test's view from outside the branch).
query_result query(const std::string& sql, const std::string& conninfo = test::servers().pg) {
  return test::query_with(&postgresql::connect, sql, conninfo);
}

std::string single_value(const std::string& sql, const std::string& conninfo = test::servers().pg) {
  return test::single_value_of(query(sql, conninfo));
}

xid next_xid(const std::string& bqual = "1") { return test::next_test_xid("pgtest", bqual); }

bool is_prepared(const xid& branch, const std::string& conninfo = test::servers().pg) {
  return single_value("SELECT count(*) FROM pg_prepared_xacts WHERE gid = '" + postgresql::gid_of(branch) + "'",
                      conninfo) == "1";
}

// The test table; ids are unique per run (next_id) so parallel runs do not collide.
void ensure_table() { query("CREATE TABLE IF NOT EXISTS pgtest_items (id bigint PRIMARY KEY, note text)"); }

constexpr const char* items_table = "pgtest_items";

std::int64_t next_id() { return test::next_row_id(); }

std::string insert_sql(std::int64_t id) { return test::insert_row_sql(items_table, id); }

bool row_exists(std::int64_t id) {
  return single_value("SELECT count(*) FROM pgtest_items WHERE id = " + std::to_string(id)) == "1";
}

// Starts a branch that inserts one row and ends it.
std::int64_t write_and_end(resource_manager& rm, const xid& branch) {
  return test::write_and_end_in(rm, branch, items_table);
}

std::string backend_pid(resource_manager& rm) {
  auto rows = rm.exec("SELECT pg_backend_pid()");
  REQUIRE_OK(rows);
  return *rows.value().rows.at(0).at(0);
}

// Ends a session from the server side (as an administrator would) and waits until it is gone.
void terminate_backend(const std::string& pid) {
  REQUIRE(single_value("SELECT pg_terminate_backend(" + pid + ")") == "t");
  for (int attempt = 0; attempt < 100; ++attempt) {
    if (single_value("SELECT count(*) FROM pg_stat_activity WHERE pid = " + pid) == "0") return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  FAIL("backend " << pid << " did not end");
}

// Rolls back prepared transactions by gid when the test ends, whatever happened.
struct prepared_cleanup {
  std::vector<std::string> gids;
  ~prepared_cleanup() {
    for (const auto& gid : gids) {
      auto rm = postgresql::connect("cleanup", settings_of(test::servers().pg));
      if (!rm.ok()) continue;
      // Ignored: the transaction is usually gone already; this is only a safety net.
      static_cast<void>(rm.value()->exec("ROLLBACK PREPARED '" + gid + "'"));
    }
  }
};

}  // namespace

TEST_CASE("exec returns columns, rows, NULLs and the affected row count") {
  ensure_table();
  auto rm = open_rm();
  CHECK(rm->dialect() == "postgresql");
  CHECK(rm->connected());
  auto rows = rm->exec("SELECT 1 AS one, NULL::text AS nothing, 'it''s' AS quoted");
  REQUIRE_OK(rows);
  CHECK(rows.value().columns == std::vector<std::string>{"one", "nothing", "quoted"});
  REQUIRE(rows.value().rows.size() == 1);
  CHECK(rows.value().rows[0][0] == "1");
  CHECK_FALSE(rows.value().rows[0][1].has_value());
  CHECK(rows.value().rows[0][2] == "it's");

  auto id = next_id();
  auto inserted = rm->exec(insert_sql(id));
  REQUIRE_OK(inserted);
  CHECK(inserted.value().affected_rows == 1);
  auto deleted = rm->exec("DELETE FROM pgtest_items WHERE id = " + std::to_string(id));
  REQUIRE_OK(deleted);
  CHECK(deleted.value().affected_rows == 1);

  // PQexec on the non-blocking connection: a statement far larger than the socket buffer.
  auto large = rm->exec("SELECT length('" + std::string(4 << 20, 'x') + "')");
  REQUIRE_OK(large);
  CHECK(large.value().rows.at(0).at(0) == std::to_string(4 << 20));

  // A statement error outside a branch: SQLSTATE and message, and the connection stays usable.
  auto failed = rm->exec("SELECT 1/0");
  CHECK_FAILS_WITH(failed, xa_code::rm_error);
  CHECK(failed.error().sqlstate == "22012");
  CHECK(failed.error().rm_name == "pg");
  CHECK(failed.error().message.find("division by zero") != std::string::npos);
  REQUIRE_OK(rm->exec("SELECT 1"));
}

TEST_CASE("one-phase commit") {
  ensure_table();
  auto rm = open_rm();
  auto branch = next_xid();
  auto id = write_and_end(*rm, branch);
  CHECK(rm->state() == branch_state::ended);
  CHECK_FALSE(row_exists(id));  // not visible outside the branch before commit
  REQUIRE_OK(rm->commit(branch, true));
  CHECK(rm->state() == branch_state::idle);
  CHECK(row_exists(id));
  CHECK_FALSE(is_prepared(branch));
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
  CHECK(row_exists(id));
  CHECK_FALSE(is_prepared(branch));
}

TEST_CASE("rollback in every state") {
  ensure_table();
  auto rm = open_rm();

  SUBCASE("active branch") {
    auto branch = next_xid();
    auto id = next_id();
    REQUIRE_OK(rm->start(branch));
    REQUIRE_OK(rm->exec(insert_sql(id)));
    REQUIRE_OK(rm->rollback(branch));
    CHECK(rm->state() == branch_state::idle);
    CHECK_FALSE(row_exists(id));
  }
  SUBCASE("ended branch") {
    auto branch = next_xid();
    auto id = write_and_end(*rm, branch);
    REQUIRE_OK(rm->rollback(branch));
    CHECK_FALSE(row_exists(id));
  }
  SUBCASE("branch ended with failure (rollback-only)") {
    auto branch = next_xid();
    auto id = next_id();
    REQUIRE_OK(rm->start(branch));
    REQUIRE_OK(rm->exec(insert_sql(id)));
    REQUIRE_OK(rm->end(branch, false));
    CHECK(rm->state() == branch_state::rollback_only);
    CHECK_FAILS_WITH(rm->prepare(branch), xa_code::protocol);
    CHECK_FAILS_WITH(rm->commit(branch, true), xa_code::protocol);
    REQUIRE_OK(rm->rollback(branch));
    CHECK(rm->state() == branch_state::idle);
    CHECK_FALSE(row_exists(id));
  }
  SUBCASE("prepared branch, on its own connection") {
    auto branch = next_xid();
    auto id = write_and_end(*rm, branch);
    REQUIRE_OK(rm->prepare(branch));
    REQUIRE_OK(rm->rollback(branch));
    CHECK(rm->state() == branch_state::idle);
    CHECK_FALSE(is_prepared(branch));
    CHECK_FALSE(row_exists(id));
  }
  SUBCASE("prepared branch, from another connection") {
    auto branch = next_xid();
    auto id = write_and_end(*rm, branch);
    REQUIRE_OK(rm->prepare(branch));
    rm.reset();
    auto other = open_rm();
    REQUIRE_OK(other->rollback(branch));
    CHECK_FALSE(is_prepared(branch));
    CHECK_FALSE(row_exists(id));
  }
  // The connection carries nothing afterwards and starts the next branch.
  if (rm) {
    auto branch = next_xid();
    REQUIRE_OK(rm->start(branch));
    REQUIRE_OK(rm->rollback(branch));
  }
}

TEST_CASE("a branch that only reads answers read-only at prepare and leaves nothing prepared") {
  ensure_table();
  auto rm = open_rm();
  auto branch = next_xid();
  REQUIRE_OK(rm->start(branch));
  REQUIRE_OK(rm->exec("SELECT count(*) FROM pgtest_items"));
  REQUIRE_OK(rm->exec("UPDATE pgtest_items SET note = 'y' WHERE id = -1"));  // matches nothing
  REQUIRE_OK(rm->end(branch));
  auto voted = rm->prepare(branch);
  REQUIRE_OK(voted);
  CHECK(voted.value() == vote::read_only);
  CHECK(rm->state() == branch_state::idle);
  CHECK_FALSE(rm->current_branch().has_value());
  CHECK_FALSE(is_prepared(branch));
  // The transaction really ended: the connection starts the next branch.
  auto next = next_xid();
  REQUIRE_OK(rm->start(next));
  REQUIRE_OK(rm->rollback(next));

  SUBCASE("and a branch that wrote votes commit") {
    auto writer = next_xid();
    write_and_end(*rm, writer);
    auto vote_of_writer = rm->prepare(writer);
    REQUIRE_OK(vote_of_writer);
    CHECK(vote_of_writer.value() == vote::commit);
    REQUIRE_OK(rm->rollback(writer));
  }
}

TEST_CASE("a prepared branch survives its connection and is committed from a new one") {
  ensure_table();
  auto branch = next_xid("2");
  std::int64_t id = 0;
  {
    auto rm = open_rm();
    id = write_and_end(*rm, branch);
    REQUIRE_OK(rm->prepare(branch));
  }  // the connection closes with the branch prepared
  CHECK(is_prepared(branch));
  CHECK_FALSE(row_exists(id));

  auto rm = open_rm();
  auto found = rm->recover();
  REQUIRE_OK(found);
  int matches = 0;
  for (const auto& ours : found.value().ours) matches += ours == branch ? 1 : 0;
  CHECK(matches == 1);
  REQUIRE_OK(rm->commit(branch, false));
  CHECK(row_exists(id));
  CHECK_FALSE(is_prepared(branch));

  // Committing it again: PostgreSQL no longer knows the gid.
  CHECK_FAILS_WITH(rm->commit(branch, false), xa_code::not_found);
}

TEST_CASE("COMMIT/ROLLBACK PREPARED of an unknown gid answer not_found") {
  auto rm = open_rm();
  auto unknown = next_xid();
  auto committed = rm->commit(unknown, false);
  CHECK_FAILS_WITH(committed, xa_code::not_found);
  CHECK(committed.error().sqlstate == "42704");
  CHECK_FAILS_WITH(rm->rollback(unknown), xa_code::not_found);
  CHECK(rm->state() == branch_state::idle);
  CHECK(rm->connected());
}

TEST_CASE("illegal transitions answer protocol and send nothing") {
  ensure_table();
  auto rm = open_rm();
  auto branch = next_xid();
  CHECK_FAILS_WITH(rm->end(branch), xa_code::protocol);      // nothing started
  CHECK_FAILS_WITH(rm->prepare(branch), xa_code::protocol);  // nothing started
  REQUIRE_OK(rm->start(branch));
  CHECK_FAILS_WITH(rm->start(branch), xa_code::protocol);              // started twice
  CHECK_FAILS_WITH(rm->start(next_xid()), xa_code::protocol);          // one branch per connection
  CHECK_FAILS_WITH(rm->prepare(branch), xa_code::protocol);            // not ended
  CHECK_FAILS_WITH(rm->commit(branch, false), xa_code::protocol);      // commit before prepare
  CHECK_FAILS_WITH(rm->commit(branch, true), xa_code::protocol);       // not ended
  CHECK_FAILS_WITH(rm->recover(), xa_code::protocol);                  // a branch is active
  CHECK_FAILS_WITH(rm->commit(next_xid(), false), xa_code::protocol);  // carries another branch
  CHECK(rm->state() == branch_state::active);
  auto id = next_id();
  REQUIRE_OK(rm->exec(insert_sql(id)));
  REQUIRE_OK(rm->end(branch));
  CHECK_FAILS_WITH(rm->exec("SELECT 1"), xa_code::protocol);  // SQL after end
  REQUIRE_OK(rm->prepare(branch));
  CHECK_FAILS_WITH(rm->commit(branch, true), xa_code::protocol);  // one phase after prepare
  CHECK_FAILS_WITH(rm->prepare(branch), xa_code::protocol);       // prepared twice
  CHECK_FAILS_WITH(rm->forget(branch), xa_code::protocol);
  // Nothing was sent: the branch is still prepared and commits normally.
  CHECK(is_prepared(branch));
  REQUIRE_OK(rm->commit(branch, false));
  CHECK(row_exists(id));
  REQUIRE_OK(rm->forget(branch));  // nothing to forget: PostgreSQL is never heuristic
}

TEST_CASE("start on a connection already inside a transaction answers outside") {
  auto rm = open_rm();
  REQUIRE_OK(rm->exec("BEGIN"));
  auto branch = next_xid();
  CHECK_FAILS_WITH(rm->start(branch), xa_code::outside);
  CHECK_FAILS_WITH(rm->commit(branch, false), xa_code::outside);  // COMMIT PREPARED needs no block
  REQUIRE_OK(rm->exec("ROLLBACK"));
  REQUIRE_OK(rm->start(branch));
  REQUIRE_OK(rm->rollback(branch));
}

TEST_CASE("a failed statement dooms the branch: prepare and one-phase commit answer rollback") {
  ensure_table();
  auto rm = open_rm();
  bool one_phase = false;
  SUBCASE("prepare") { one_phase = false; }
  SUBCASE("one-phase commit") { one_phase = true; }
  auto branch = next_xid();
  auto id = next_id();
  REQUIRE_OK(rm->start(branch));
  REQUIRE_OK(rm->exec(insert_sql(id)));
  auto failed = rm->exec("SELECT 1/0");
  CHECK_FAILS_WITH(failed, xa_code::rm_error);
  CHECK(failed.error().sqlstate == "22012");
  CHECK(rm->state() == branch_state::active);
  REQUIRE_OK(rm->end(branch));
  if (one_phase) {
    CHECK_FAILS_WITH(rm->commit(branch, true), xa_code::rollback);
  } else {
    auto voted = rm->prepare(branch);
    CHECK_FAILS_WITH(voted, xa_code::rollback);
    CHECK_FALSE(is_prepared(branch));
  }
  CHECK(rm->state() == branch_state::idle);
  CHECK_FALSE(row_exists(id));
  // The connection is clean again.
  auto next = next_xid();
  REQUIRE_OK(rm->start(next));
  REQUIRE_OK(rm->rollback(next));
}

TEST_CASE("a deferred constraint that fails at prepare answers rollback_integrity") {
  query(
      "CREATE TABLE IF NOT EXISTS pgtest_deferred "
      "(id bigint, CONSTRAINT pgtest_deferred_unique UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)");
  auto rm = open_rm();
  auto branch = next_xid();
  auto id = std::to_string(next_id());
  REQUIRE_OK(rm->start(branch));
  REQUIRE_OK(rm->exec("INSERT INTO pgtest_deferred VALUES (" + id + "), (" + id + ")"));
  REQUIRE_OK(rm->end(branch));
  auto voted = rm->prepare(branch);
  CHECK_FAILS_WITH(voted, xa_code::rollback_integrity);
  CHECK(voted.error().sqlstate == "23505");
  CHECK(rm->state() == branch_state::idle);
  CHECK_FALSE(is_prepared(branch));
  CHECK(single_value("SELECT count(*) FROM pgtest_deferred WHERE id = " + id) == "0");
}

TEST_CASE("foreign prepared transactions are listed as foreign and never touched") {
  ensure_table();
  // A gid in no known encoding, and another TM's formatID in pgjdbc's encoding; the pid keeps
  // parallel runs apart.
  const std::string plain_gid = "foreign-1." + std::to_string(::getpid());
  auto jta = xid(0x1234, "jta-gtrid." + std::to_string(::getpid()), "b1");
  prepared_cleanup cleanup{{plain_gid, postgresql::gid_of(jta)}};
  {
    auto by_hand = open_rm();
    REQUIRE_OK(by_hand->exec("BEGIN"));
    REQUIRE_OK(by_hand->exec("PREPARE TRANSACTION '" + plain_gid + "'"));
    REQUIRE_OK(by_hand->exec("BEGIN"));
    REQUIRE_OK(by_hand->exec(insert_sql(next_id())));
    REQUIRE_OK(by_hand->exec("PREPARE TRANSACTION '" + postgresql::gid_of(jta) + "'"));
  }
  auto rm = open_rm();
  // One of ours prepared next to them, and a full commit cycle while they sit there.
  auto branch = next_xid();
  write_and_end(*rm, branch);
  REQUIRE_OK(rm->prepare(branch));
  auto found = rm->recover();
  REQUIRE_OK(found);
  const prepared_branch* plain = nullptr;
  const prepared_branch* pgjdbc = nullptr;
  for (const auto& foreign : found.value().foreign) {
    if (foreign.raw == plain_gid) plain = &foreign;
    if (foreign.raw == postgresql::gid_of(jta)) pgjdbc = &foreign;
  }
  REQUIRE(plain != nullptr);
  CHECK_FALSE(plain->id.has_value());
  REQUIRE(plain->age_seconds.has_value());
  CHECK(*plain->age_seconds >= 0);
  REQUIRE(pgjdbc != nullptr);
  REQUIRE(pgjdbc->id.has_value());
  CHECK(*pgjdbc->id == jta);
  CHECK(pgjdbc->age_seconds.has_value());
  bool ours_listed = false;
  for (const auto& ours : found.value().ours) {
    CHECK(ours.format_id() == xatm_format_id);
    CHECK(ours != jta);
    ours_listed = ours_listed || ours == branch;
  }
  CHECK(ours_listed);
  for (const auto& foreign : found.value().foreign) CHECK(foreign.raw != postgresql::gid_of(branch));

  REQUIRE_OK(rm->commit(branch, false));
  REQUIRE_OK(rm->recover());
  // Untouched: both still prepared.
  CHECK(single_value("SELECT count(*) FROM pg_prepared_xacts WHERE gid = '" + plain_gid + "'") == "1");
  CHECK(is_prepared(jta));
  // Clean up here (the guard only catches failures), and check it worked.
  REQUIRE_OK(rm->exec("ROLLBACK PREPARED '" + plain_gid + "'"));
  REQUIRE_OK(rm->exec("ROLLBACK PREPARED '" + postgresql::gid_of(jta) + "'"));
  CHECK_FALSE(is_prepared(jta));
}

TEST_CASE("64-byte binary gtrid and bqual with quotes and NUL bytes round-trip through prepare and recover") {
  ensure_table();
  std::string gtrid("it's\0a \"gid\"\\ ';--", 19);
  gtrid += std::to_string(next_id());  // unique per run: parallel runs must not share the gid
  for (int i = 0; gtrid.size() < max_gtrid_size; ++i) gtrid.push_back(static_cast<char>((i * 37 + 200) & 0xff));
  std::string bqual;
  for (int i = 0; bqual.size() < max_bqual_size; ++i) bqual.push_back(static_cast<char>(255 - i));
  bqual[10] = '\0';
  bqual[11] = '\'';
  xid branch(xatm_format_id, gtrid, bqual);
  REQUIRE(branch.gtrid().size() == 64);
  REQUIRE(branch.bqual().size() == 64);
  prepared_cleanup cleanup{{postgresql::gid_of(branch)}};

  auto rm = open_rm();
  auto id = write_and_end(*rm, branch);
  REQUIRE_OK(rm->prepare(branch));
  rm.reset();

  auto other = open_rm();
  auto found = other->recover();
  REQUIRE_OK(found);
  int matches = 0;
  for (const auto& ours : found.value().ours) matches += ours == branch ? 1 : 0;
  CHECK(matches == 1);
  REQUIRE_OK(other->commit(branch, false));
  CHECK(row_exists(id));
  CHECK_FALSE(is_prepared(branch));
}

TEST_CASE("recover lists only the connected database; another database's branch is refused clearly") {
  ensure_table();
  const std::string& other_db = test::servers().pg2;
  query("CREATE TABLE IF NOT EXISTS pgtest_items (id bigint PRIMARY KEY, note text)", other_db);
  auto branch = next_xid();
  prepared_cleanup cleanup;  // rolled back from the right database below if the test fails early
  {
    auto there = open_rm(other_db, "pg2");
    auto id = next_id();
    REQUIRE_OK(there->start(branch));
    REQUIRE_OK(there->exec(insert_sql(id)));
    REQUIRE_OK(there->end(branch));
    REQUIRE_OK(there->prepare(branch));
  }
  auto here = open_rm();
  auto found = here->recover();
  REQUIRE_OK(found);
  for (const auto& ours : found.value().ours) CHECK(ours != branch);

  auto committed = here->commit(branch, false);
  CHECK_FAILS_WITH(committed, xa_code::rm_error);
  CHECK(committed.error().message.find("another database") != std::string::npos);
  CHECK(is_prepared(branch, other_db));

  auto there = open_rm(other_db, "pg2");
  auto found_there = there->recover();
  REQUIRE_OK(found_there);
  bool listed = false;
  for (const auto& ours : found_there.value().ours) listed = listed || ours == branch;
  CHECK(listed);
  REQUIRE_OK(there->rollback(branch));
  CHECK_FALSE(is_prepared(branch, other_db));
}

TEST_CASE("a lost connection answers rm_failure; an unprepared branch is gone, a prepared one stays") {
  ensure_table();
  auto rm = open_rm();

  SUBCASE("a branch that wrote through exec ends without a round trip; the loss shows at prepare") {
    auto branch = next_xid();
    auto id = next_id();
    REQUIRE_OK(rm->start(branch));
    REQUIRE_OK(rm->exec(insert_sql(id)));
    CHECK(rm->wrote_so_far() == std::optional<bool>(true));
    terminate_backend(backend_pid(*rm));
    REQUIRE_OK(rm->end(branch));  // nothing to ask: it wrote
    CHECK_FAILS_WITH(rm->prepare(branch), xa_code::rm_failure);
    CHECK_FALSE(rm->connected());
    CHECK_FALSE(row_exists(id));
  }

  SUBCASE("active branch, then end") {
    auto branch = next_xid();
    auto id = next_id();
    REQUIRE_OK(rm->start(branch));
    REQUIRE_OK(rm->exec(insert_sql(id) + "; SELECT 1"));  // the last statement wrote nothing: end asks
    terminate_backend(backend_pid(*rm));
    CHECK_FAILS_WITH(rm->end(branch), xa_code::rm_failure);
    CHECK_FALSE(rm->connected());
    CHECK(rm->state() == branch_state::idle);
    CHECK(rm->native_handle() == nullptr);
    CHECK(postgresql::handle(*rm) == nullptr);
    CHECK_FALSE(row_exists(id));
  }
  SUBCASE("active branch, then exec") {
    auto branch = next_xid();
    REQUIRE_OK(rm->start(branch));
    terminate_backend(backend_pid(*rm));
    CHECK_FAILS_WITH(rm->exec("SELECT 1"), xa_code::rm_failure);
    CHECK_FALSE(rm->connected());
    CHECK(rm->state() == branch_state::idle);
  }
  SUBCASE("active branch, then rollback: done, the server rolled it back") {
    auto branch = next_xid();
    auto id = next_id();
    REQUIRE_OK(rm->start(branch));
    REQUIRE_OK(rm->exec(insert_sql(id)));
    terminate_backend(backend_pid(*rm));
    REQUIRE_OK(rm->rollback(branch));
    CHECK(rm->state() == branch_state::idle);
    CHECK_FALSE(row_exists(id));
  }
  SUBCASE("ended branch, then one-phase commit: in doubt") {
    auto branch = next_xid();
    auto pid = backend_pid(*rm);
    auto id = write_and_end(*rm, branch);
    terminate_backend(pid);
    CHECK_FAILS_WITH(rm->commit(branch, true), xa_code::rm_failure);
    CHECK_FALSE(row_exists(id));  // here we know: the server rolled back before COMMIT arrived
  }
  SUBCASE("prepared branch, then commit: it stays prepared and commits after reconnect") {
    auto branch = next_xid();
    auto pid = backend_pid(*rm);
    auto id = write_and_end(*rm, branch);
    REQUIRE_OK(rm->prepare(branch));
    terminate_backend(pid);
    CHECK_FAILS_WITH(rm->commit(branch, false), xa_code::rm_failure);
    CHECK(is_prepared(branch));
    CHECK_FAILS_WITH(rm->recover(), xa_code::rm_failure);  // not connected
    REQUIRE_OK(rm->reconnect());
    REQUIRE_OK(rm->commit(branch, false));
    CHECK(row_exists(id));
  }
  // reconnect() opens a new session that carries branches again.
  REQUIRE_OK(rm->reconnect());
  CHECK(rm->connected());
  auto next = next_xid();
  REQUIRE_OK(rm->start(next));
  REQUIRE_OK(rm->rollback(next));
}

TEST_CASE("non-blocking verbs on several connections progress together") {
  ensure_table();
  auto first = open_rm(test::servers().pg, "pg_a");
  auto second = open_rm(test::servers().pg, "pg_b");
  auto branch_a = next_xid("1");
  auto branch_b = xid(xatm_format_id, branch_a.gtrid(), "2");
  auto id_a = write_and_end(*first, branch_a);
  auto id_b = write_and_end(*second, branch_b);

  std::vector<resource_manager*> rms{first.get(), second.get()};
  REQUIRE_OK(first->begin_call(xa_verb::prepare, branch_a));
  REQUIRE_OK(second->begin_call(xa_verb::prepare, branch_b));
  CHECK(first->call_wait().socket >= 0);
  CHECK(drive_calls(rms, std::chrono::steady_clock::now() + std::chrono::seconds(30)).empty());
  auto vote_a = first->finish_call();
  auto vote_b = second->finish_call();
  REQUIRE_OK(vote_a);
  REQUIRE_OK(vote_b);
  CHECK(vote_a.value() == vote::commit);
  CHECK(vote_b.value() == vote::commit);

  REQUIRE_OK(first->begin_call(xa_verb::commit, branch_a));
  REQUIRE_OK(second->begin_call(xa_verb::commit, branch_b));
  CHECK(drive_calls(rms, std::nullopt).empty());
  REQUIRE_OK(first->finish_call());
  REQUIRE_OK(second->finish_call());
  CHECK(row_exists(id_a));
  CHECK(row_exists(id_b));

  SUBCASE("end(fail) waits for nothing") {
    auto branch = next_xid();
    REQUIRE_OK(first->start(branch));
    REQUIRE_OK(first->begin_call(xa_verb::end_failed, branch));
    CHECK(first->call_wait().socket < 0);
    CHECK(first->resume_call());
    REQUIRE_OK(first->finish_call());
    CHECK(first->state() == branch_state::rollback_only);
    REQUIRE_OK(first->rollback(branch));
  }
  SUBCASE("abandoning a call closes the connection and the server rolls the branch back") {
    auto branch = next_xid();
    auto id = next_id();
    REQUIRE_OK(first->start(branch));
    REQUIRE_OK(first->exec(insert_sql(id)));
    REQUIRE_OK(first->begin_call(xa_verb::end, branch));
    first->abandon_call();
    CHECK_FALSE(first->connected());
    CHECK(first->state() == branch_state::idle);
    CHECK_FALSE(row_exists(id));
  }
}

TEST_CASE("native handle") {
  auto rm = open_rm();
  CHECK(rm->native_handle() != nullptr);
  CHECK(static_cast<void*>(postgresql::handle(*rm)) == rm->native_handle());
  xatm::test::null_rm other;
  CHECK(postgresql::handle(other) == nullptr);
}

TEST_CASE("max_prepared_transactions = 0: prepare says how to fix it") {
  test::throwaway_postgresql server("-c max_prepared_transactions=0");
  auto rm = open_rm(server.conninfo(), "no_2pc");
  REQUIRE_OK(rm->exec("CREATE TABLE t (id int)"));
  auto branch = next_xid();
  REQUIRE_OK(rm->start(branch));
  REQUIRE_OK(rm->exec("INSERT INTO t VALUES (1)"));
  REQUIRE_OK(rm->end(branch));
  auto voted = rm->prepare(branch);
  CHECK_FAILS_WITH(voted, xa_code::invalid);  // a configuration refusal (resource_manager.h)
  CHECK(voted.error().sqlstate == "55000");
  CHECK(voted.error().message.find("max_prepared_transactions is 0: set it > 0 in postgresql.conf and restart") !=
        std::string::npos);
  // The server rolled the transaction back; the branch can only be rolled back, which works.
  REQUIRE_OK(rm->rollback(branch));
  CHECK(rm->state() == branch_state::idle);
  auto rows = rm->exec("SELECT count(*) FROM t");
  REQUIRE_OK(rows);
  CHECK(rows.value().rows[0][0] == "0");
  // A read-only branch never needs a prepared transaction, so it still works there.
  auto reader = next_xid();
  REQUIRE_OK(rm->start(reader));
  REQUIRE_OK(rm->end(reader));
  auto read_vote = rm->prepare(reader);
  REQUIRE_OK(read_vote);
  CHECK(read_vote.value() == vote::read_only);
}

TEST_CASE("bad connection settings fail clearly and never show the password") {
  const std::string password = "s3cr3t%pw";

  SUBCASE("unknown keyword") {
    auto settings = settings_of(test::servers().pg + " password='" + password + "' no_such_keyword=1");
    auto rm = postgresql::connect("pg", settings);
    CHECK_FAILS_WITH(rm, xa_code::invalid);
    CHECK(rm.error().message.find("no_such_keyword") != std::string::npos);
    CHECK(rm.error().describe().find("s3cr3t") == std::string::npos);
  }
  SUBCASE("unreachable socket") {
    auto settings = settings_of("host=/nonexistent/xatm-test user=xatm dbname=xatm_test password='" + password + "'");
    auto rm = postgresql::connect("pg", settings);
    CHECK_FAILS_WITH(rm, xa_code::rm_failure);
    CHECK(rm.error().message.find("/nonexistent/xatm-test") != std::string::npos);
    CHECK(rm.error().message.find("password=***") != std::string::npos);
    CHECK(rm.error().describe().find("s3cr3t") == std::string::npos);
  }
  SUBCASE("a bad value that libpq rejects") {
    auto settings = settings_of(test::servers().pg + " sslmode=bogus password='" + password + "'");
    auto rm = postgresql::connect("pg", settings);
    REQUIRE_FALSE(rm.ok());
    CHECK(rm.error().message.find("sslmode") != std::string::npos);
    CHECK(rm.error().describe().find("s3cr3t") == std::string::npos);
  }
  SUBCASE("a connect_timeout that is no number, in libpq's words") {
    auto settings = settings_of(test::servers().pg + " connect_timeout=soon password='" + password + "'");
    auto rm = postgresql::connect("pg", settings);
    CHECK_FAILS_WITH(rm, xa_code::rm_failure);
    CHECK(rm.error().message.find("invalid integer value \"soon\" for connection option \"connect_timeout\"") !=
          std::string::npos);
    CHECK(rm.error().describe().find("s3cr3t") == std::string::npos);
  }
  SUBCASE("a password that libpq would echo is scrubbed anyway") {
    // The password as the database name: libpq's "database does not exist" message quotes it.
    auto settings = settings_of(test::servers().pg);
    settings.set("dbname", password);
    settings.set("password", password);
    auto rm = postgresql::connect("pg", settings);
    CHECK_FAILS_WITH(rm, xa_code::rm_failure);
    CHECK(rm.error().describe().find("s3cr3t") == std::string::npos);
  }
  SUBCASE("bad RM name") {
    auto rm = postgresql::connect("no spaces allowed", settings_of(test::servers().pg));
    CHECK_FAILS_WITH(rm, xa_code::invalid);
  }
}
