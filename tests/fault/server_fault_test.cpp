// Server-side faults seen through the transaction_manager API, against the real PostgreSQL 15 and
// MariaDB 10.11 servers (hardening rows 7, 8, 9, 11; docs/faults.md). What each case proves:
//  - a PostgreSQL server with max_prepared_transactions = 0 is refused by connect() with
//    configuration_error naming the RM and the setting (the durability preflight); a TM that opts
//    out (allow_unsafe_durability) gets the same from commit(), after rolling MariaDB's branch
//    back, and what needs no prepare (a read-only branch there, a one-phase commit) still works;
//  - a lock wait timeout inside a MariaDB branch rolls the whole transaction back, PostgreSQL's
//    branch too, with the cause reported (the deadlock variant is in
//    integration/transaction_manager_test.cpp), and the lock holder still commits;
//  - phase-2 verbs replayed by hand after a commit, or a branch committed by someone else while
//    the TM's own phase 2 is under way, find nothing to do: never a heuristic alarm;
//  - prepared branches that are not this TM's (another formatID, another tm_id, another
//    database) are listed by recover_now() and xatm-recover and never committed or rolled back.
// Needs the `servers` fixture; the max_prepared_transactions = 0 case starts its own PostgreSQL.
#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/tm_access.h"
#include "support/adapter_checks.h"
#include "support/log_file.h"
#include "support/observers.h"
#include "support/result_checks.h"
#include "support/servers.h"
#include "support/throwaway_postgresql.h"
#include "support/tm_fixture.h"
#include "support/tool_run.h"
#include "xatm/connection_settings.h"
#include "xatm/error.h"
#include "mysql/mysql.h"
#include "postgresql/postgresql.h"
#include "xatm/transaction_manager.h"
#include "postgresql/postgresql_xid.h"
#include "mysql/mysql_xid.h"

#ifndef XATM_RECOVER_BIN
#error "XATM_RECOVER_BIN must name the xatm-recover binary (set by tests/CMakeLists.txt)"
#endif

using namespace xatm;  // NOLINT(google-build-using-namespace): test file
using namespace std::chrono_literals;

namespace {

using clock = std::chrono::steady_clock;
using test::observe_maria;
using test::observe_pg;
using test::prepared_gtrids;
using test::run;
using test::single_value;
using test::tool_run;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A transaction manager of its own per test (support/tm_fixture.h). No RM is registered (each
// test registers its own, or calls register_pg_and_maria()); no background recovery
// (recover_now() only). Destroy every global_transaction before close().
struct tm_under_test : test::tm_fixture {
  explicit tm_under_test(tm_options settings = {})
      : tm_fixture("srvfault", test::without_background_recovery(std::move(settings)), test::fixture_rms::none) {}
};

// Two new connections of a TM and a transaction with branch 1 on the PostgreSQL one and branch 2
// on the MariaDB one (members go in reverse: the transaction first, then the connections).
struct two_branches {
  std::unique_ptr<connection> pg;
  std::unique_ptr<connection> maria;
  global_transaction tx;

  explicit two_branches(transaction_manager& tm, const std::string& pg_name = "pg")
      : pg(tm.connect(pg_name)), maria(tm.connect("maria")), tx(tm.begin()) {
    tx.enlist(*pg);
    tx.enlist(*maria);
  }
  void insert_on_both(const std::string& table, int id) {
    test::run(*pg, "INSERT INTO " + table + " VALUES (" + std::to_string(id) + ")");
    test::run(*maria, "INSERT INTO " + table + " VALUES (" + std::to_string(id) + ")");
  }
};

// MariaDB as root: KILL, and XA statements for branches that are not xatm's.
std::unique_ptr<resource_manager> maria_root() { return observe_maria(test::servers().mysql_root); }

// Drops and creates `table` with `columns` on PostgreSQL and on MariaDB (InnoDB).
void fresh_tables(const std::string& table, const std::string& columns) {
  run(*observe_pg(), "DROP TABLE IF EXISTS " + table + "; CREATE TABLE " + table + " (" + columns + ")");
  auto maria = observe_maria();
  run(*maria, "DROP TABLE IF EXISTS " + table);
  run(*maria, "CREATE TABLE " + table + " (" + columns + ") ENGINE=InnoDB");
}

long count_rows(connection& rm, const std::string& table, const std::string& where = "TRUE") {
  return std::stol(single_value(rm, "SELECT count(*) FROM " + table + " WHERE " + where));
}

// Waits until `count_sql` (run by `observer`) answers 0: a session is gone from the server.
bool wait_until_zero(resource_manager& observer, const std::string& count_sql) {
  for (int attempt = 0; attempt < 200; ++attempt) {
    auto rows = observer.exec(count_sql);
    if (rows.ok() && rows.value().rows.at(0).at(0) == "0") return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

// Ends a PostgreSQL session from the server side, as an administrator would, and waits until it
// is gone. No doctest assertion that throws: it runs inside commit() (interposed_rm).
bool terminate_pg_session(const std::string& pid) {
  auto observer = observe_pg();
  auto killed = observer->exec("SELECT pg_terminate_backend(" + pid + ")");
  return killed.ok() && wait_until_zero(*observer, "SELECT count(*) FROM pg_stat_activity WHERE pid = " + pid);
}

// The same for a MariaDB session: afterwards its prepared branch is detached (MariaDB keeps it),
// so that another session can finish it without racing the server's detach (docs/design.md).
bool kill_maria_session(const std::string& id) {
  auto root = maria_root();
  auto killed = root->exec("KILL CONNECTION " + id);
  return killed.ok() && wait_until_zero(*root, "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = " + id);
}

// A real adapter connection behind the resource_manager interface, with one hook that runs once,
// just before the TM sends this connection's phase-2 commit. It lets the test act at an instant
// no server can be made to produce on demand (the decision is durable, the TM's commit not yet
// sent) while every verb still goes to the real server.
class interposed_rm final : public resource_manager {
 public:
  explicit interposed_rm(std::unique_ptr<resource_manager> real)
      : resource_manager(real->name()), real_(std::move(real)) {}
  std::string_view dialect() const noexcept override { return real_->dialect(); }
  void before_commit(std::function<void(const xid&)> action) { before_commit_ = std::move(action); }

 protected:
  result<void> send(xa_verb verb, const xid& branch) override {
    if (verb == xa_verb::commit && before_commit_) std::exchange(before_commit_, nullptr)(branch);
    return real_->begin_call(verb, branch);
  }
  io_wait waiting_for() const noexcept override { return real_->call_wait(); }
  bool advance() override { return real_->resume_call(); }
  result<vote> outcome() override { return real_->finish_call(); }
  void cancel() noexcept override { real_->abandon_call(); }
  result<recovered_branches> do_recover() override { return real_->recover(); }
  result<query_result> do_exec(std::string_view sql) override { return real_->exec(sql); }
  void* do_native_handle() noexcept override { return nullptr; }  // not needed by these tests
  bool is_connected() const noexcept override { return real_->connected(); }
  result<void> do_connect() override { return real_->reconnect(); }
  bool branch_wrote_nothing() const noexcept override { return real_->known_read_only(); }

 private:
  std::unique_ptr<resource_manager> real_;
  std::function<void(const xid&)> before_commit_;
};

// Registers `name` so that every connection the TM opens to it (the application's, phase-2
// retries, recovery) is an interposed_rm over the real adapter.
void register_interposed(transaction_manager& tm, const std::string& name, const std::string& dialect,
                         const std::string& conninfo) {
  detail::tm_access::register_rm(tm, name, [name, dialect, conninfo]() -> result<std::unique_ptr<resource_manager>> {
    auto settings = connection_settings::parse(conninfo);
    if (!settings) return std::move(settings).error();
    auto real =
        dialect == "postgresql" ? postgresql::connect(name, settings.value()) : mysql::connect(name, settings.value());
    if (!real) return std::move(real).error();
    return std::unique_ptr<resource_manager>(std::make_unique<interposed_rm>(std::move(real).value()));
  });
}

interposed_rm& interposed(std::unique_ptr<connection>& rm) { return dynamic_cast<interposed_rm&>(*rm); }

// xatm-recover --json on a closed TM's log, with RMs as `{name, "<dialect>:<conninfo>"}`, its
// output in files of the TM's dir. Fails the test if it has not ended within 60 s, or did not
// exit by itself.
tool_run recover_with_tool(const tm_under_test& t, const std::vector<std::pair<std::string, std::string>>& rms = {
                                                       {"pg", "postgresql:" + test::servers().pg},
                                                       {"maria", "mariadb:" + test::servers().mysql}}) {
  std::vector<std::string> argv{XATM_RECOVER_BIN, "--log", t.log_path.string(), "--json"};
  for (const auto& [name, spec] : rms) {
    argv.push_back("--rm");
    argv.push_back(name + "=" + spec);
  }
  tool_run done = test::run_tool(argv, t.dir.path, 60s);
  INFO("xatm-recover stdout:\n" << done.out << "\nstderr:\n" << done.err);
  REQUIRE_MESSAGE(!done.status.timed_out, "xatm-recover did not end within 60 s");
  REQUIRE(done.status.exited);
  return done;
}

}  // namespace

// ---- row 7: PostgreSQL with max_prepared_transactions = 0 ------------------------------------

TEST_CASE(
    "max_prepared_transactions = 0: connect() throws configuration_error naming the RM and the "
    "setting; opted out, commit() does and the MariaDB branch is rolled back") {
  test::throwaway_postgresql no_2pc("-c max_prepared_transactions=0");
  run(*observe_pg(no_2pc.conninfo()), "CREATE TABLE srvfault_config (id int PRIMARY KEY)");
  fresh_tables("srvfault_config", "id int PRIMARY KEY");
  {
    // The durability preflight refuses the server at the first connection, before any work.
    tm_under_test checked;
    checked.tm->register_rm("pg_no2pc", "postgresql", no_2pc.conninfo());
    auto refused = test::thrown_by<configuration_error>([&] { (void)checked.tm->connect("pg_no2pc"); });
    INFO(refused.what());
    CHECK(refused.rm_name() == "pg_no2pc");
    CHECK(refused.code() == xa_code::invalid);
    CHECK(contains(refused.what(),
                   "RM 'pg_no2pc': max_prepared_transactions = 0 makes every prepare fail: set "
                   "it > 0 in postgresql.conf and restart the server"));
  }
  // Opted out (allow_unsafe_durability), the first prepare says the same.
  tm_options opted_out;
  opted_out.allow_unsafe_durability = true;
  tm_under_test t(opted_out);
  t.tm->register_rm("pg_no2pc", "postgresql", no_2pc.conninfo());
  t.tm->register_rm("maria", "mariadb", test::servers().mysql);
  std::string gtrid;
  {
    two_branches both(*t.tm, "pg_no2pc");
    gtrid = both.tx.gtrid();
    both.insert_on_both("srvfault_config", 1);
    try {
      (void)both.tx.commit();
      FAIL("commit succeeded on a server that cannot prepare");
    } catch (const configuration_error& e) {
      INFO(e.what());
      CHECK(e.rm_name() == "pg_no2pc");
      CHECK(e.sqlstate() == "55000");
      CHECK(e.code() == xa_code::invalid);
      CHECK(contains(e.what(), "[pg_no2pc]"));
      CHECK(contains(e.cause().message, gtrid + " rolled back: pg_no2pc refuses to prepare as configured"));
      CHECK(contains(e.cause().message,
                     "max_prepared_transactions is 0: set it > 0 in postgresql.conf and "
                     "restart the server"));
    }
    // Both connections are free for the next transaction.
    CHECK(resource_manager::of(*both.pg).state() == branch_state::idle);
    CHECK(resource_manager::of(*both.maria).state() == branch_state::idle);
  }
  CHECK(count_rows(*observe_pg(no_2pc.conninfo()), "srvfault_config") == 0);
  CHECK(count_rows(*observe_maria(), "srvfault_config") == 0);
  CHECK(prepared_gtrids(*observe_maria(), t.tm_id).empty());
  auto stats = t.tm->statistics();
  CHECK(stats.rolled_back == 1);
  CHECK(stats.committed == 0);
  CHECK(stats.decisions_logged == 0);

  // What needs no prepared transaction still works there: a read-only branch beside a MariaDB
  // writer, and a transaction whose only writer is that server (one-phase commit).
  {
    two_branches reads_there(*t.tm, "pg_no2pc");
    CHECK(count_rows(*reads_there.pg, "srvfault_config") == 0);
    run(*reads_there.maria, "INSERT INTO srvfault_config VALUES (2)");
    CHECK(reads_there.tx.commit() == commit_outcome::committed);
  }
  {
    two_branches writes_there(*t.tm, "pg_no2pc");
    run(*writes_there.pg, "INSERT INTO srvfault_config VALUES (3)");
    CHECK(count_rows(*writes_there.maria, "srvfault_config") == 1);
    CHECK(writes_there.tx.commit() == commit_outcome::committed);
  }
  CHECK(count_rows(*observe_pg(no_2pc.conninfo()), "srvfault_config", "id = 3") == 1);
  CHECK(count_rows(*observe_maria(), "srvfault_config", "id = 2") == 1);
  stats = t.tm->statistics();
  CHECK(stats.committed == 2);
  CHECK(stats.one_phase == 2);
  CHECK(stats.decisions_logged == 0);
  t.close();
  CHECK(test::decisions_in_log_file(t.log_path).empty());
}

// ---- row 8: a lock wait timeout inside a MariaDB branch ----------------------------------------

TEST_CASE(
    "a lock wait timeout in a MariaDB branch rolls the whole transaction back with the cause, and "
    "the lock holder still commits") {
  fresh_tables("srvfault_lock", "id int PRIMARY KEY, amount int NOT NULL");
  run(*observe_maria(), "INSERT INTO srvfault_lock VALUES (1, 0)");
  tm_under_test t;
  t.register_pg_and_maria();
  two_branches holder(*t.tm);
  run(*holder.pg, "INSERT INTO srvfault_lock VALUES (1, 1)");
  run(*holder.maria, "UPDATE srvfault_lock SET amount = amount + 1 WHERE id = 1");  // holds the row lock

  std::string gtrid;
  {
    two_branches waiter(*t.tm);
    gtrid = waiter.tx.gtrid();
    run(*waiter.maria, "SET SESSION innodb_lock_wait_timeout = 1");  // the session's, not the branch's
    run(*waiter.pg, "INSERT INTO srvfault_lock VALUES (2, 10)");
    const auto asked = clock::now();
    auto blocked = waiter.maria->exec("UPDATE srvfault_lock SET amount = amount + 10 WHERE id = 1");
    CHECK(clock::now() - asked < 30s);  // the wait is bounded: it does not hang
    CHECK_FAILS_WITH(blocked, xa_code::rollback_timeout);
    CHECK(blocked.error().native_code == 1205);  // ER_LOCK_WAIT_TIMEOUT
    // InnoDB only undid the statement; xatm dooms the branch, so the application cannot commit
    // half a transaction by ignoring the error.
    try {
      (void)waiter.tx.commit();
      FAIL("commit succeeded after a lock wait timeout");
    } catch (const rolled_back_error& e) {
      INFO(e.what());
      CHECK(e.rm_name() == "maria");
      CHECK(e.code() == xa_code::rollback_timeout);
      CHECK(e.native_code() == 1205);
      CHECK(contains(e.what(), "[maria] XA_RBTIMEOUT"));
      CHECK(contains(e.cause().message, gtrid + " rolled back: end failed on maria"));
      CHECK(contains(e.cause().message, "Lock wait timeout exceeded"));
    }
  }
  CHECK(holder.tx.commit() == commit_outcome::committed);

  CHECK(count_rows(*observe_pg(), "srvfault_lock") == 1);  // the holder's row only: the waiter's is gone
  CHECK(count_rows(*observe_pg(), "srvfault_lock", "id = 1") == 1);
  CHECK(single_value(*observe_maria(), "SELECT amount FROM srvfault_lock WHERE id = 1") == "1");
  CHECK(prepared_gtrids(*observe_pg(), t.tm_id).empty());
  CHECK(prepared_gtrids(*observe_maria(), t.tm_id).empty());
  auto stats = t.tm->statistics();
  CHECK(stats.committed == 1);
  CHECK(stats.rolled_back == 1);
  CHECK(stats.decisions_logged == 1);
}

// ---- row 9: duplicate and late phase-2 calls --------------------------------------------------

TEST_CASE(
    "phase-2 verbs replayed by hand after a commit answer not found, change nothing, and leave "
    "recovery nothing to do") {
  fresh_tables("srvfault_replay", "id int PRIMARY KEY");
  tm_under_test t;
  t.register_pg_and_maria();
  std::string gtrid;
  {
    two_branches both(*t.tm);
    gtrid = both.tx.gtrid();
    both.insert_on_both("srvfault_replay", 1);
    REQUIRE(both.tx.commit() == commit_outcome::committed);
  }
  const xid pg_branch(xatm_format_id, gtrid, "1");
  const xid maria_branch(xatm_format_id, gtrid, "2");
  // Twice over, each verb on a fresh connection: a duplicate of a duplicate is no different.
  for (int round = 1; round <= 2; ++round) {
    CAPTURE(round);
    CHECK_FAILS_WITH(observe_pg()->commit(pg_branch, false), xa_code::not_found);
    CHECK_FAILS_WITH(observe_pg()->rollback(pg_branch), xa_code::not_found);
    CHECK_FAILS_WITH(observe_maria()->commit(maria_branch, false), xa_code::not_found);
    CHECK_FAILS_WITH(observe_maria()->rollback(maria_branch), xa_code::not_found);
  }
  CHECK(count_rows(*observe_pg(), "srvfault_replay") == 1);
  CHECK(count_rows(*observe_maria(), "srvfault_replay") == 1);

  auto report = t.tm->recover_now();
  CHECK_FALSE(report.unresolved());
  CHECK_FALSE(report.heuristic());
  for (const auto& item : report.items) CHECK(item.gtrid != gtrid);
  auto stats = t.tm->statistics();
  CHECK(stats.committed == 1);
  CHECK(stats.completion_pending == 0);
  t.close();
  CHECK(test::decisions_in_log_file(t.log_path).empty());

  auto tool = recover_with_tool(t);
  INFO(tool.out << tool.err);
  CHECK(tool.exit_code() == 0);
  CHECK(contains(tool.out, "\"exit_code\":0"));
  CHECK(tool.line_with(gtrid).empty());
  CHECK_FALSE(contains(tool.out + tool.err, std::string(test::mysql_password)));
}

namespace {

enum class committed_elsewhere {
  pg_before_tm,      // another session commits PostgreSQL's branch; the TM's COMMIT PREPARED comes second
  pg_after_lost,     // the TM's PostgreSQL session is terminated; another session commits; the TM retries
  maria_after_kill,  // the TM's MariaDB session is killed; another session commits; the TM retries
};

void check_commit_raced(committed_elsewhere how) {
  fresh_tables("srvfault_late", "id int PRIMARY KEY");
  tm_options options;
  options.commit_retry_window = 20s;  // room for the retry on a busy machine
  tm_under_test t(options);
  register_interposed(*t.tm, "pg", "postgresql", test::servers().pg);
  register_interposed(*t.tm, "maria", "mariadb", test::servers().mysql);
  bool hook_ran = false;
  bool hook_ok = false;
  commit_outcome outcome{};
  clock::duration took{};
  {
    two_branches both(*t.tm);
    const std::string pg_pid = single_value(*both.pg, "SELECT pg_backend_pid()");
    const std::string maria_session = single_value(*both.maria, "SELECT CONNECTION_ID()");
    both.insert_on_both("srvfault_late", 1);
    // Runs inside commit(), after the decision is durable: only non-throwing checks here.
    auto commit_by_hand = [&](resource_manager& rm, const std::string& statement) {
      auto done = rm.exec(statement);
      if (!done.ok()) MESSAGE(statement << ": " << done.error().describe());
      return done.ok();
    };
    switch (how) {
      case committed_elsewhere::pg_before_tm:
        interposed(both.pg).before_commit([&](const xid& branch) {
          hook_ran = true;
          hook_ok = commit_by_hand(*observe_pg(), "COMMIT PREPARED '" + postgresql::gid_of(branch) + "'");
        });
        break;
      case committed_elsewhere::pg_after_lost:
        interposed(both.pg).before_commit([&](const xid& branch) {
          hook_ran = true;
          hook_ok = terminate_pg_session(pg_pid) &&
                    commit_by_hand(*observe_pg(), "COMMIT PREPARED '" + postgresql::gid_of(branch) + "'");
        });
        break;
      case committed_elsewhere::maria_after_kill:
        interposed(both.maria).before_commit([&](const xid& branch) {
          hook_ran = true;
          hook_ok = kill_maria_session(maria_session) &&
                    commit_by_hand(*maria_root(), "XA COMMIT " + mysql::xid_literal(branch));
        });
        break;
    }
    const auto started = clock::now();
    // Any exception (heuristic_error above all) fails the test with its message.
    outcome = both.tx.commit();
    took = clock::now() - started;
    // The TM's own session really was gone: its commit was retried from a new connection.
    if (how == committed_elsewhere::pg_after_lost) CHECK_FALSE(both.pg->connected());
    if (how == committed_elsewhere::maria_after_kill) CHECK_FALSE(both.maria->connected());
  }
  CHECK(hook_ran);
  CHECK(hook_ok);
  CHECK(outcome == commit_outcome::committed);
  CHECK(took < 30s);
  CHECK(count_rows(*observe_pg(), "srvfault_late") == 1);
  CHECK(count_rows(*observe_maria(), "srvfault_late") == 1);
  CHECK(prepared_gtrids(*observe_pg(), t.tm_id).empty());
  CHECK(prepared_gtrids(*observe_maria(), t.tm_id).empty());
  auto stats = t.tm->statistics();
  CHECK(stats.committed == 1);
  CHECK(stats.completion_pending == 0);
  CHECK(stats.rolled_back == 0);
  auto report = t.tm->recover_now();
  CHECK_FALSE(report.unresolved());
  CHECK_FALSE(report.heuristic());
  t.close();
  CHECK(test::decisions_in_log_file(t.log_path).empty());
}

}  // namespace

TEST_CASE(
    "a branch committed by someone else during the TM's phase 2 still ends in committed, never "
    "heuristic_error") {
  SUBCASE("PostgreSQL, before the TM's own COMMIT PREPARED") { check_commit_raced(committed_elsewhere::pg_before_tm); }
  SUBCASE("PostgreSQL, the TM's session lost: its retry finds the branch done") {
    check_commit_raced(committed_elsewhere::pg_after_lost);
  }
  SUBCASE("MariaDB, the TM's session killed: its retry finds the branch done") {
    check_commit_raced(committed_elsewhere::maria_after_kill);
  }
}

// ---- row 11: foreign prepared branches --------------------------------------------------------

namespace {

// Prepared branches that belong to somebody else, made by hand the way another application or
// another TM would, on both servers and in PostgreSQL's second database; rolled back by hand in
// the destructor (whatever the test found). Names carry the pid: reruns and leftovers never clash.
struct foreign_branches {
  const std::string tag = "foreign" + std::to_string(::getpid());
  const std::string other_tm = "othertm-" + std::to_string(::getpid());
  // PostgreSQL (xatm_test): a gid in no known encoding, and xatm's encoding with another tm_id.
  const std::string pg_plain_gid = tag + "-plain-gid";
  const xid pg_other_tm{xatm_format_id, other_tm + ".1.1", "1"};
  // PostgreSQL (xatm_test2): another tm_id again, in the other database.
  const xid pg2_other_tm{xatm_format_id, other_tm + ".1.2", "1"};
  // MariaDB: formatID 1 (`XA START 'x','y'`), and xatm's formatID with another tm_id.
  const std::string maria_plain_gtrid = tag + "-maria";
  const std::string maria_plain_literal = "'" + maria_plain_gtrid + "','b',1";
  const xid maria_other_tm{xatm_format_id, other_tm + ".1.3", "2"};

  foreign_branches() {
    fresh_tables("srvfault_foreign", "id int PRIMARY KEY");
    run(*observe_pg(test::servers().pg2),
        "DROP TABLE IF EXISTS srvfault_foreign; "
        "CREATE TABLE srvfault_foreign (id int PRIMARY KEY)");
    prepare_on_pg(test::servers().pg, pg_plain_gid, 1);
    prepare_on_pg(test::servers().pg, postgresql::gid_of(pg_other_tm), 2);
    prepare_on_pg(test::servers().pg2, postgresql::gid_of(pg2_other_tm), 3);
    prepare_on_maria(maria_plain_literal, 4);
    prepare_on_maria(mysql::xid_literal(maria_other_tm), 5);
  }
  ~foreign_branches() {
    // Best effort, results ignored: after a passing test every one of them is still prepared.
    try {
      (void)observe_pg()->exec("ROLLBACK PREPARED '" + pg_plain_gid + "'");
      (void)observe_pg()->exec("ROLLBACK PREPARED '" + postgresql::gid_of(pg_other_tm) + "'");
      (void)observe_pg(test::servers().pg2)->exec("ROLLBACK PREPARED '" + postgresql::gid_of(pg2_other_tm) + "'");
      (void)maria_root()->exec("XA ROLLBACK " + maria_plain_literal);
      (void)maria_root()->exec("XA ROLLBACK " + mysql::xid_literal(maria_other_tm));
    } catch (...) {  // NOLINT(bugprone-empty-catch): a failed cleanup was already reported by the test
    }
  }
  foreign_branches(const foreign_branches&) = delete;
  foreign_branches& operator=(const foreign_branches&) = delete;

  // Every one of them, as the tokens recovery reports carry (the raw gid, or part of the xid).
  std::vector<std::pair<std::string, std::string>> rm_and_token() const {
    return {{"pg", pg_plain_gid},
            {"pg", pg_other_tm.gtrid()},
            {"pg2", pg2_other_tm.gtrid()},
            {"maria", maria_plain_gtrid},
            {"maria", maria_other_tm.gtrid()}};
  }

  long pg_prepared_count() const {
    // pg_prepared_xacts lists every database's prepared transactions.
    return std::stol(single_value(*observe_pg(), "SELECT count(*) FROM pg_prepared_xacts WHERE gid IN ('" +
                                                     pg_plain_gid + "', '" + postgresql::gid_of(pg_other_tm) + "', '" +
                                                     postgresql::gid_of(pg2_other_tm) + "')"));
  }
  long maria_prepared_count() const {
    long found = 0;
    for (const auto& row : run(*maria_root(), "XA RECOVER").rows) {
      const std::string data = row.at(3).value_or("");
      found += contains(data, maria_plain_gtrid) || contains(data, maria_other_tm.gtrid()) ? 1 : 0;
    }
    return found;
  }
  // The rows of srvfault_foreign that everybody sees: a foreign branch committed by mistake
  // would add its row (a rolled-back one shows in the prepared counts above).
  long rows_visible() const {
    return count_rows(*observe_pg(), "srvfault_foreign") +
           count_rows(*observe_pg(test::servers().pg2), "srvfault_foreign") +
           count_rows(*observe_maria(), "srvfault_foreign");
  }

 private:
  static void prepare_on_pg(const std::string& conninfo, const std::string& gid, int id) {
    auto session = observe_pg(conninfo);
    run(*session, "BEGIN");
    run(*session, "INSERT INTO srvfault_foreign VALUES (" + std::to_string(id) + ")");
    run(*session, "PREPARE TRANSACTION '" + gid + "'");
  }
  // A session outside xatm (never enlisted, so exec() passes XA statements through like any SQL)
  // that prepares and disconnects; then the branch is detached, resolvable by anybody, which is
  // what makes "never touched" a real claim. Waits until the server has finished with the session.
  static void prepare_on_maria(const std::string& literal, int id) {
    auto session = maria_root();
    const std::string session_id = single_value(*session, "SELECT CONNECTION_ID()");
    run(*session, "XA START " + literal);
    run(*session, "INSERT INTO srvfault_foreign VALUES (" + std::to_string(id) + ")");
    run(*session, "XA END " + literal);
    run(*session, "XA PREPARE " + literal);
    session.reset();
    REQUIRE(
        wait_until_zero(*maria_root(), "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = " + session_id));
  }
};

}  // namespace

TEST_CASE(
    "foreign prepared branches (other formatID, other tm_id, other database) are listed by "
    "recover_now() and xatm-recover and never touched") {
  foreign_branches foreign;
  REQUIRE(foreign.pg_prepared_count() == 3);
  REQUIRE(foreign.maria_prepared_count() == 2);
  tm_under_test t;
  t.register_pg_and_maria();
  t.tm->register_rm("pg2", "postgresql", test::servers().pg2);

  auto report = t.tm->recover_now();
  CHECK(report.unreachable_rms.empty());
  for (const auto& [rm, token] : foreign.rm_and_token()) {
    CAPTURE(token);
    const recovery_item* listed = nullptr;
    for (const auto& item : report.items) {
      if (item.rm_name == rm && contains(item.xid, token)) listed = &item;
    }
    REQUIRE(listed != nullptr);
    CHECK(listed->result == recovery_result::foreign);
    CHECK(listed->action == "none");
    CHECK(listed->state_found == "prepared");
    if (contains(token, foreign.other_tm)) CHECK(listed->detail == "belongs to TM '" + foreign.other_tm + "'");
  }
  // Foreign branches are not this TM's business: nothing is left in doubt.
  CHECK_FALSE(report.unresolved());
  CHECK_FALSE(report.heuristic());
  CHECK(foreign.pg_prepared_count() == 3);
  CHECK(foreign.maria_prepared_count() == 2);

  // A transaction of this TM commits while they sit there (its recovery ran before begin()).
  {
    two_branches both(*t.tm);
    both.insert_on_both("srvfault_foreign", 100);
    CHECK(both.tx.commit() == commit_outcome::committed);
  }
  t.close();

  auto tool = recover_with_tool(t, {{"pg", "postgresql:" + test::servers().pg},
                                    {"pg2", "postgresql:" + test::servers().pg2},
                                    {"maria", "mariadb:" + test::servers().mysql}});
  INFO(tool.out << tool.err);
  CHECK(tool.exit_code() == 0);  // foreign branches are not "unresolved"
  for (const auto& [rm, token] : foreign.rm_and_token()) {
    CAPTURE(token);
    const std::string line = tool.line_with(token);
    CHECK(contains(line, "\"rm\":\"" + rm + "\""));
    CHECK(contains(line, "\"action\":\"none\""));
    CHECK(contains(line, "\"result\":\"foreign\""));
  }
  CHECK_FALSE(contains(tool.out + tool.err, std::string(test::mysql_password)));
  CHECK(foreign.pg_prepared_count() == 3);
  CHECK(foreign.maria_prepared_count() == 2);
  CHECK(foreign.rows_visible() == 2);  // this TM's own two rows (id 100); none of theirs
}

TEST_CASE(
    "a branch prepared in another database is invisible to the RM of this one and never touched, "
    "even with this TM's tm_id") {
  // The gtrid of an earlier incarnation of this very TM, without a decision: recovery would roll
  // it back (presumed abort) if an RM of this TM could see it. But it was prepared in xatm_test2,
  // which no RM of this TM names.
  tm_under_test t;
  t.register_pg_and_maria();
  const xid elsewhere(xatm_format_id, t.tm_id + ".0.1", "1");
  auto session = observe_pg(test::servers().pg2);
  run(*session, "BEGIN");
  run(*session, "PREPARE TRANSACTION '" + postgresql::gid_of(elsewhere) + "'");
  auto still_prepared = [&] {
    return single_value(*observe_pg(), "SELECT count(*) FROM pg_prepared_xacts WHERE gid = '" +
                                           postgresql::gid_of(elsewhere) + "' AND database = 'xatm_test2'") == "1";
  };
  REQUIRE(still_prepared());

  auto report = t.tm->recover_now();
  for (const auto& item : report.items) CHECK(item.gtrid != elsewhere.gtrid());
  CHECK(still_prepared());
  t.close();
  auto tool = recover_with_tool(t);
  CHECK(tool.exit_code() == 0);
  CHECK(tool.line_with(elsewhere.gtrid()).empty());
  CHECK(still_prepared());
  // Only the database where it was prepared can finish it (PostgreSQL answers 0A000 elsewhere).
  auto from_here = observe_pg()->rollback(elsewhere);
  CHECK_FAILS_WITH(from_here, xa_code::rm_error);
  CHECK(from_here.error().sqlstate == "0A000");
  REQUIRE_OK(observe_pg(test::servers().pg2)->rollback(elsewhere));
  CHECK_FALSE(still_prepared());
}
