// Servers whose settings could lose a commit, or break xatm's own connections, against the real
// PostgreSQL 15 and MariaDB 10.11 servers (docs/design.md sections 6 and 8, "As built"). What each
// case proves:
//  - MariaDB with innodb_flush_log_at_trx_commit = 2: the application's connect() throws
//    configuration_error naming the RM and the setting; recovery (recover_now() and xatm-recover)
//    reports the RM unreachable with the setting, acts on nothing there and keeps the decision
//    naming it; with allow_unsafe_durability (--allow-unsafe-durability) everything works;
//  - the application's connections are checked once per RM name, the TM's own every time;
//  - PostgreSQL with fsync = off: the same refusals, naming fsync;
//  - MariaDB with global autocommit = 0: a branch a crash left prepared is resolved by recovery
//    and by xatm-recover, and a three-phase transaction's markers are really deleted;
//  - a server that accepts no writes is no RM: MariaDB with read_only = 1 (a replica), and a real
//    PostgreSQL physical standby that has not replayed a decided transaction's PREPARE (so it lists
//    no branch of it): connect() refuses, recovery (recover_now() and xatm-recover) reports the RM
//    unreachable saying what to do, commits nothing there and keeps the decision; pointed at the
//    primary again, recovery finishes the transaction;
//  - check_server() itself, on canned answers: sync_binlog with log_bin ON (log_bin is not
//    dynamic: turning it on would need a server restart with another configuration),
//    innodb_flush_log_at_trx_commit = 3, max_prepared_transactions = 0, unknown dialects.
// These tests change GLOBAL server settings (restored by RAII guards, also when a check fails),
// so they run alone (RUN_SERIAL). Needs the `servers` fixture and xatm-recover.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/identity.h"
#include "core/tm_access.h"
#include "core/preflight.h"
#include "support/adapter_checks.h"
#include "support/log_file.h"
#include "support/observers.h"
#include "support/result_checks.h"
#include "support/servers.h"
#include "support/tm_fixture.h"
#include "support/tool_run.h"
#include "xatm/connection_settings.h"
#include "xatm/error.h"
#include "mysql/mysql.h"
#include "postgresql/postgresql.h"
#include "xatm/transaction_manager.h"

#ifndef XATM_RECOVER_BIN
#error "XATM_RECOVER_BIN must name the xatm-recover binary (set by tests/CMakeLists.txt)"
#endif

using namespace xatm;  // NOLINT(google-build-using-namespace): test file
using namespace std::chrono_literals;

namespace {

using test::observe_maria;
using test::observe_pg;
using test::prepared_gtrids;
using test::run;
using test::single_value;
using test::tool_run;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// ---- canned answers for check_server() ------------------------------------------------------------

// An RM of a given dialect that answers every exec() with one row and remembers what it was sent.
class canned_rm final : public resource_manager {
 public:
  canned_rm(std::string dialect, std::vector<std::optional<std::string>> row)
      : resource_manager("ledger"), dialect_(std::move(dialect)), row_(std::move(row)) {}
  std::string_view dialect() const noexcept override { return dialect_; }
  std::vector<std::string> sent;

 protected:
  result<void> send(xa_verb, const xid&) override { return {}; }
  io_wait waiting_for() const noexcept override { return {}; }
  bool advance() override { return true; }
  result<vote> outcome() override { return vote::commit; }
  void cancel() noexcept override {}
  result<recovered_branches> do_recover() override { return recovered_branches{}; }
  result<query_result> do_exec(std::string_view sql) override {
    sent.emplace_back(sql);
    query_result answer;
    answer.rows.push_back(row_);
    return answer;
  }
  void* do_native_handle() noexcept override { return nullptr; }
  bool is_connected() const noexcept override { return true; }
  result<void> do_connect() override { return {}; }

 private:
  std::string dialect_;
  std::vector<std::optional<std::string>> row_;
};

// ---- global server settings, put back whatever happens ---------------------------------------------

std::unique_ptr<resource_manager> connect_quietly(bool postgresql, const std::string& conninfo) {
  auto settings = connection_settings::parse(conninfo);
  if (!settings) return nullptr;
  auto connected =
      postgresql ? postgresql::connect("admin", settings.value()) : mysql::connect("admin", settings.value());
  return connected ? std::move(connected).value() : nullptr;
}

// SET GLOBAL <name> = <value> on MariaDB as root; the destructor sets the old value again.
class maria_global {
 public:
  maria_global(std::string name, const std::string& value) : name_(std::move(name)) {
    auto root = observe_maria(test::servers().mysql_root);
    old_ = single_value(*root, "SELECT @@GLOBAL." + name_);
    run(*root, "SET GLOBAL " + name_ + " = " + value);
    REQUIRE(single_value(*root, "SELECT @@GLOBAL." + name_) == value);
  }
  ~maria_global() {
    // No doctest assertion here: it may run while a failed check unwinds the test.
    auto root = connect_quietly(false, test::servers().mysql_root);
    if (!root || !root->exec("SET GLOBAL " + name_ + " = " + old_).ok()) {
      MESSAGE("could not restore MariaDB's global " << name_ << " to " << old_);
    }
  }
  maria_global(const maria_global&) = delete;
  maria_global& operator=(const maria_global&) = delete;

 private:
  std::string name_;
  std::string old_;
};

// Waits until a new PostgreSQL session sees `name` = `value` (pg_reload_conf() only signals the
// postmaster). Non-throwing: used by a destructor too.
bool pg_setting_reaches(const std::string& name, const std::string& value) {
  for (int attempt = 0; attempt < 200; ++attempt) {
    auto session = connect_quietly(true, test::servers().pg);
    auto shown = session ? session->exec("SHOW " + name) : result<query_result>(make_failure(xa_code::rm_failure, ""));
    if (shown.ok() && shown.value().rows.at(0).at(0) == value) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

// ALTER SYSTEM SET <name> = <value> + pg_reload_conf() (a sighup setting); the destructor resets
// it the same way.
class pg_system_setting {
 public:
  pg_system_setting(std::string name, const std::string& value) : name_(std::move(name)) {
    old_ = single_value(*observe_pg(), "SHOW " + name_);
    run(*observe_pg(), "ALTER SYSTEM SET " + name_ + " = " + value);
    run(*observe_pg(), "SELECT pg_reload_conf()");
    REQUIRE(pg_setting_reaches(name_, value));
  }
  ~pg_system_setting() {
    auto admin = connect_quietly(true, test::servers().pg);
    bool reset =
        admin && admin->exec("ALTER SYSTEM RESET " + name_).ok() && admin->exec("SELECT pg_reload_conf()").ok();
    if (!reset || !pg_setting_reaches(name_, old_))
      MESSAGE("could not restore PostgreSQL's " << name_ << " to " << old_);
  }
  pg_system_setting(const pg_system_setting&) = delete;
  pg_system_setting& operator=(const pg_system_setting&) = delete;

 private:
  std::string name_;
  std::string old_;
};

// ---- a TM of the test's own, and a branch a crash left prepared ----------------------------------

// No RM registered, no background recovery; phase 2 gives up quickly.
struct tm_under_test : test::tm_fixture {
  explicit tm_under_test(tm_options settings = {})
      : tm_fixture("fence", test::without_background_recovery(with_short_retry(std::move(settings))),
                   test::fixture_rms::none) {}
  static tm_options with_short_retry(tm_options settings) {
    settings.commit_retry_window = 300ms;
    return settings;
  }
};

void fresh_tables(const std::string& table) {
  run(*observe_pg(), "DROP TABLE IF EXISTS " + table + "; CREATE TABLE " + table + " (id int PRIMARY KEY)");
  auto maria = observe_maria();
  run(*maria, "DROP TABLE IF EXISTS " + table);
  run(*maria, "CREATE TABLE " + table + " (id int PRIMARY KEY) ENGINE=InnoDB");
}

long count_rows(resource_manager& rm, const std::string& table, const std::string& where = "TRUE") {
  return std::stol(single_value(rm, "SELECT count(*) FROM " + table + " WHERE " + where));
}

long markers_of(resource_manager& rm, const std::string& gtrid) {
  return std::stol(single_value(rm, "SELECT count(*) FROM xatm_marker WHERE gtrid = '" + gtrid + "'"));
}

// Kills a MariaDB session as root and waits until the server is done with it (its prepared branch
// is then detached, resolvable by anyone). Runs inside commit(): no doctest assertion.
bool kill_maria_session(const std::string& id) {
  auto root = connect_quietly(false, test::servers().mysql_root);
  if (!root || !root->exec("KILL CONNECTION " + id).ok()) return false;
  for (int attempt = 0; attempt < 200; ++attempt) {
    auto left = root->exec("SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = " + id);
    if (left.ok() && left.value().rows.at(0).at(0) == "0") return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

// A real adapter connection with a hook that runs once, just before the TM sends its phase-2
// commit on it (see tests/fault/server_fault_test.cpp).
class interposed_rm final : public resource_manager {
 public:
  explicit interposed_rm(std::unique_ptr<resource_manager> real)
      : resource_manager(real->name()), real_(std::move(real)) {}
  std::string_view dialect() const noexcept override { return real_->dialect(); }
  void before_commit(std::function<void()> action) { before_commit_ = std::move(action); }

 protected:
  result<void> send(xa_verb verb, const xid& branch) override {
    if (verb == xa_verb::commit && before_commit_) std::exchange(before_commit_, nullptr)();
    return real_->begin_call(verb, branch);
  }
  io_wait waiting_for() const noexcept override { return real_->call_wait(); }
  bool advance() override { return real_->resume_call(); }
  result<vote> outcome() override { return real_->finish_call(); }
  void cancel() noexcept override { real_->abandon_call(); }
  result<recovered_branches> do_recover() override { return real_->recover(); }
  result<query_result> do_exec(std::string_view sql) override { return real_->exec(sql); }
  void* do_native_handle() noexcept override { return nullptr; }
  bool is_connected() const noexcept override { return real_->connected(); }
  result<void> do_connect() override { return real_->reconnect(); }
  bool branch_wrote_nothing() const noexcept override { return real_->known_read_only(); }

 private:
  std::unique_ptr<resource_manager> real_;
  std::function<void()> before_commit_;
};

// Terminates a PostgreSQL session as a superuser and waits until the server is done with it.
// Runs inside commit(): no doctest assertion.
bool kill_pg_session(const std::string& pid) {
  auto admin = connect_quietly(true, test::servers().pg);
  if (!admin || !admin->exec("SELECT pg_terminate_backend(" + pid + ")").ok()) return false;
  for (int attempt = 0; attempt < 200; ++attempt) {
    auto left = admin->exec("SELECT count(*) FROM pg_stat_activity WHERE pid = " + pid);
    if (left.ok() && left.value().rows.at(0).at(0) == "0") return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

// Through `t`'s TM (which registers "pg" and "maria" here), commits a transaction that inserts
// `id` into `table` on both servers, whose session on the `stuck` RM ("pg" or "maria") is killed
// right before its phase-2 commit while that RM stays unreachable for the TM: commit() answers
// completion_pending, the decision stays in the log and that RM's branch prepared, detached from
// any session, as a crash of the TM's host leaves them; the other RM's branch is committed. Then
// the TM is closed. Answers the gtrid.
std::string leave_branch_prepared(tm_under_test& t, const std::string& table, int id, const std::string& stuck) {
  const bool pg_stuck = stuck == "pg";
  auto outage = std::make_shared<bool>(false);
  auto killed = std::make_shared<bool>(false);
  const std::string other = pg_stuck ? "maria" : "pg";
  if (pg_stuck) {
    t.tm->register_rm(other, "mariadb", test::servers().mysql);
  } else {
    t.tm->register_rm(other, "postgresql", test::servers().pg);
  }
  detail::tm_access::register_rm(
      *t.tm, stuck, [outage, killed, pg_stuck, stuck]() -> result<std::unique_ptr<resource_manager>> {
        if (*outage) return make_failure(xa_code::rm_failure, "test: " + stuck + " unreachable", stuck);
        auto real = pg_stuck ? postgresql::connect(stuck, connection_settings::parse(test::servers().pg).value())
                             : mysql::connect(stuck, connection_settings::parse(test::servers().mysql).value());
        if (!real) return std::move(real).error();
        auto session = real.value()->exec(pg_stuck ? "SELECT pg_backend_pid()" : "SELECT CONNECTION_ID()");
        if (!session) return std::move(session).error();
        auto wrapped = std::make_unique<interposed_rm>(std::move(real).value());
        wrapped->before_commit([outage, killed, pg_stuck, id = session.value().rows.at(0).at(0).value_or("0")] {
          *outage = true;
          *killed = pg_stuck ? kill_pg_session(id) : kill_maria_session(id);
        });
        return std::unique_ptr<resource_manager>(std::move(wrapped));
      });
  std::string gtrid;
  {
    auto pg = t.tm->connect("pg");
    auto maria = t.tm->connect("maria");
    auto tx = t.tm->begin();
    gtrid = tx.gtrid();
    tx.enlist(*pg);
    tx.enlist(*maria);
    run(*pg, "INSERT INTO " + table + " VALUES (" + std::to_string(id) + ")");
    run(*maria, "INSERT INTO " + table + " VALUES (" + std::to_string(id) + ")");
    REQUIRE(tx.commit() == commit_outcome::completion_pending);
  }
  REQUIRE(*killed);
  t.close();
  REQUIRE(prepared_gtrids(pg_stuck ? *observe_pg() : *observe_maria(), t.tm_id) == std::set<std::string>{gtrid});
  REQUIRE(prepared_gtrids(pg_stuck ? *observe_maria() : *observe_pg(), t.tm_id).empty());
  REQUIRE(test::decisions_in_log_file(t.log_path) == std::vector<std::string>{gtrid});
  return gtrid;
}

std::string leave_maria_branch_prepared(tm_under_test& t, const std::string& table, int id) {
  return leave_branch_prepared(t, table, id, "maria");
}

// xatm-recover on a closed TM's log with "pg" and "maria" (and `extra` arguments); table output
// unless `extra` asks for --json.
tool_run recover_with_tool(const tm_under_test& t, const std::vector<std::string>& extra = {},
                           const std::vector<std::string>& rm_names = {"pg", "maria"},
                           const std::string& pg_conninfo = test::servers().pg) {
  std::vector<std::string> argv{XATM_RECOVER_BIN, "--log", t.log_path.string()};
  for (const auto& name : rm_names) {
    argv.push_back("--rm");
    argv.push_back(name == "pg" ? "pg=postgresql:" + pg_conninfo : "maria=mariadb:" + test::servers().mysql);
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  tool_run done = test::run_tool(argv, t.dir.path, 60s);
  INFO("xatm-recover stdout:\n" << done.out << "\nstderr:\n" << done.err);
  REQUIRE_MESSAGE(!done.status.timed_out, "xatm-recover did not end within 60 s");
  REQUIRE(done.status.exited);
  return done;
}

const recovery_item* item_for(const recovery_report& report, const std::string& rm, const std::string& gtrid) {
  for (const auto& item : report.items) {
    if (item.rm_name == rm && item.gtrid == gtrid) return &item;
  }
  return nullptr;
}

bool completed(const recovery_report& report, const std::string& gtrid) {
  return std::find(report.completed.begin(), report.completed.end(), gtrid) != report.completed.end();
}

}  // namespace

// ---- check_server() on canned answers ---------------------------------------------------------

TEST_CASE("check_server: one query per dialect; what each setting must be, read-only servers, and the message") {
  using row = std::vector<std::optional<std::string>>;
  struct expectation {
    std::string dialect;
    row answer;
    std::string refused;  // "" when the server passes, else part of the message
  };
  const std::vector<expectation> cases{
      {"mariadb", {"1", "0", "0", "0", "OFF"}, ""},
      {"mariadb", {"3", "0", "0", "0", "OFF"}, ""},  // MariaDB's 3 flushes at prepare and at commit
      {"mysql", {"3", "0", "0", "0", "OFF"}, "innodb_flush_log_at_trx_commit = 3 can lose"},
      {"mariadb",
       {"2", "0", "1", "0", "OFF"},
       "innodb_flush_log_at_trx_commit = 2 can lose a committed XA transaction on a "
       "host crash: set it to 1 (or, on a throwaway server for tests, "
       "tm_options::allow_unsafe_durability"},
      {"mariadb", {"0", "0", "1", "0", "OFF"}, "innodb_flush_log_at_trx_commit = 0 can lose"},
      {"mysql", {"2", "1", "1", "0", "OFF"}, "innodb_flush_log_at_trx_commit = 2 can lose"},
      {"mariadb", {"1", "1", "1", "0", "OFF"}, ""},
      {"mysql", {"1", "1", "1", "0", "OFF"}, ""},
      {"mariadb",
       {"1", "1", "0", "0", "OFF"},
       "sync_binlog = 0 with log_bin ON can lose a committed XA transaction on a host "
       "crash: set it to 1"},
      {"mysql", {"1", "1", "100", "0", "OFF"}, "sync_binlog = 100 with log_bin ON can lose"},
      {"mariadb", {"1", "0", "100", "0", "OFF"}, ""},  // no binary log: sync_binlog does not matter
      {"postgresql", {"on", "64", "f"}, ""},
      {"postgresql", {"off", "64", "f"}, "fsync = off can lose a committed XA transaction on a host crash: set fsync = on"},
      {"postgresql", {"on", "64", "t"}, "the server is a standby (pg_is_in_recovery() is true)"},
      {"mariadb", {"1", "0", "0", "1", "OFF"}, "the server is read-only (read_only = 1"},
      {"mariadb", {"1", "0", "0", "ON", "OFF"}, "the server is read-only (read_only = ON"},
      {"mysql", {"1", "0", "0", "0", "1"}, "the server is read-only (innodb_read_only = ON)"},
      {"postgresql",
       {"on", "0", "f"},
       "max_prepared_transactions = 0 makes every prepare fail: set it > 0 in "
       "postgresql.conf and restart the server"},
  };
  for (const auto& expected : cases) {
    CAPTURE(expected.dialect);
    CAPTURE(expected.answer.at(0).value_or("NULL"));
    CAPTURE(expected.answer.at(1).value_or("NULL"));
    canned_rm rm(expected.dialect, expected.answer);
    auto checked = detail::check_server(rm);
    CHECK(rm.sent.size() == 1);
    if (expected.refused.empty()) {
      REQUIRE_OK(checked);
      continue;
    }
    CHECK_FAILS_WITH(checked, xa_code::invalid);
    CHECK(checked.error().rm_name == "ledger");
    CHECK(checked.error().message.rfind("RM 'ledger': ", 0) == 0);
    CHECK(contains(checked.error().message, expected.refused));
  }
  // A dialect xatm does not know (a test double) passes without a query.
  canned_rm unknown("fake", {"off", "0", "0"});
  REQUIRE_OK(detail::check_server(unknown));
  CHECK(unknown.sent.empty());

  // The TM's own connections: PostgreSQL gets its session settings and the check in one round
  // trip; MariaDB the check, then its session settings.
  canned_rm pg("postgresql", {"on", "64", "f"});
  REQUIRE_OK(detail::prepare_own_connection(pg, false));
  REQUIRE(pg.sent.size() == 1);
  for (const char* part : {"SET synchronous_commit = on", "SET default_transaction_read_only = off",
                           "SET default_transaction_isolation = 'read committed'", "SET statement_timeout = 0",
                           "current_setting('fsync')"}) {
    CHECK(contains(pg.sent[0], part));
  }
  canned_rm unsafe_pg("postgresql", {"off", "64", "f"});
  CHECK_FAILS_WITH(detail::prepare_own_connection(unsafe_pg, false), xa_code::invalid);
  canned_rm allowed_pg("postgresql", {"off", "64", "f"});
  REQUIRE_OK(detail::prepare_own_connection(allowed_pg, true));
  REQUIRE(allowed_pg.sent.size() == 1);
  CHECK(contains(allowed_pg.sent[0], "pg_is_in_recovery()"));  // still asked: a standby is refused
  // allow_unsafe_durability does not let a standby or a read-only server in.
  canned_rm allowed_standby("postgresql", {"on", "64", "t"});
  CHECK_FAILS_WITH(detail::prepare_own_connection(allowed_standby, true), xa_code::invalid);
  canned_rm allowed_read_only("mariadb", {"1", "0", "0", "1", "OFF"});
  CHECK_FAILS_WITH(detail::prepare_own_connection(allowed_read_only, true), xa_code::invalid);
  CHECK(allowed_read_only.sent.size() == 1);
  canned_rm maria("mariadb", {"1", "0", "0", "0", "OFF"});
  REQUIRE_OK(detail::prepare_own_connection(maria, false));
  REQUIRE(maria.sent.size() == 2);
  CHECK(contains(maria.sent[1], "tx_read_only = 0"));
  canned_rm unsafe_maria("mariadb", {"2", "0", "0", "0", "OFF"});
  CHECK_FAILS_WITH(detail::prepare_own_connection(unsafe_maria, false), xa_code::invalid);
  CHECK(unsafe_maria.sent.size() == 1);  // refused before the session settings
}

// ---- MariaDB: innodb_flush_log_at_trx_commit = 2 --------------------------------------------------

TEST_CASE(
    "MariaDB innodb_flush_log_at_trx_commit = 2: connect() and recovery refuse, naming the RM and the "
    "setting, and keep the decision; allow_unsafe_durability works") {
  fresh_tables("fence_flush");
  tm_under_test t;
  const std::string gtrid = leave_maria_branch_prepared(t, "fence_flush", 1);

  maria_global unsafe("innodb_flush_log_at_trx_commit", "2");
  t.reopen();
  t.register_pg_and_maria();
  auto refused = test::thrown_by<configuration_error>([&] { (void)t.tm->connect("maria"); });
  INFO(refused.what());
  CHECK(refused.rm_name() == "maria");
  CHECK(refused.code() == xa_code::invalid);
  CHECK(contains(refused.what(),
                 "RM 'maria': innodb_flush_log_at_trx_commit = 2 can lose a committed XA "
                 "transaction on a host crash: set it to 1"));
  CHECK(contains(refused.what(), "allow_unsafe_durability"));
  CHECK_FALSE(contains(refused.what(), std::string(test::mysql_password)));
  CHECK(t.tm->connect("pg") != nullptr);  // the other RM is fine

  // Recovery: MariaDB counts as not scanned. Nothing is done there, the decision stays.
  auto report = t.tm->recover_now();
  REQUIRE(report.unreachable_rms.size() == 1);
  CHECK(report.unreachable_rms[0].rfind("maria: ", 0) == 0);
  CHECK(contains(report.unreachable_rms[0], "innodb_flush_log_at_trx_commit = 2"));
  CHECK(report.unresolved());
  CHECK(report.completed.empty());
  const recovery_item* kept = item_for(report, "maria", gtrid);
  REQUIRE(kept != nullptr);
  CHECK(kept->result == recovery_result::unresolved);
  CHECK(prepared_gtrids(*observe_maria(), t.tm_id) == std::set<std::string>{gtrid});
  t.close();
  CHECK(test::decisions_in_log_file(t.log_path) == std::vector<std::string>{gtrid});

  // xatm-recover refuses the same way and exits non-zero.
  auto tool = recover_with_tool(t);
  CHECK(tool.exit_code() == 1);
  CHECK(contains(tool.out, "UNREACHABLE RM maria: "));
  CHECK(contains(tool.out, "innodb_flush_log_at_trx_commit = 2 can lose a committed XA transaction"));
  CHECK(contains(tool.err, "innodb_flush_log_at_trx_commit = 2"));  // the warning on stderr
  CHECK_FALSE(contains(tool.output(), std::string(test::mysql_password)));
  CHECK(prepared_gtrids(*observe_maria(), t.tm_id) == std::set<std::string>{gtrid});
  CHECK(test::decisions_in_log_file(t.log_path) == std::vector<std::string>{gtrid});

  // Opted out, the tool commits the branch and forgets the decision.
  auto allowed = recover_with_tool(t, {"--allow-unsafe-durability"});
  CHECK(allowed.exit_code() == 0);
  CHECK(contains(allowed.line_with(gtrid), "committed"));
  CHECK(prepared_gtrids(*observe_maria(), t.tm_id).empty());
  CHECK(test::decisions_in_log_file(t.log_path).empty());
  CHECK(count_rows(*observe_maria(), "fence_flush", "id = 1") == 1);

  // A TM that opts out connects and commits across both.
  tm_options opted_out;
  opted_out.allow_unsafe_durability = true;
  tm_under_test u(opted_out);
  u.register_pg_and_maria();
  {
    auto pg = u.tm->connect("pg");
    auto maria = u.tm->connect("maria");
    auto tx = u.tm->begin();
    tx.enlist(*pg);
    tx.enlist(*maria);
    run(*pg, "INSERT INTO fence_flush VALUES (2)");
    run(*maria, "INSERT INTO fence_flush VALUES (2)");
    CHECK(tx.commit() == commit_outcome::committed);
  }
  CHECK(u.tm->statistics().decisions_logged == 1);
  auto clean = u.tm->recover_now();
  CHECK(clean.unreachable_rms.empty());
  CHECK(count_rows(*observe_maria(), "fence_flush", "id = 2") == 1);
}

TEST_CASE(
    "the application's first connection to an RM is checked, later ones are not; the TM's own "
    "connections always are") {
  tm_under_test t;
  t.register_pg_and_maria();
  auto first = t.tm->connect("maria");  // checked: the server is safe
  maria_global unsafe("innodb_flush_log_at_trx_commit", "0");
  CHECK(t.tm->connect("maria") != nullptr);  // this TM checked "maria" already
  auto report = t.tm->recover_now();         // recovery's own connections are checked every time
  REQUIRE(report.unreachable_rms.size() == 1);
  CHECK(contains(report.unreachable_rms[0], "RM 'maria': innodb_flush_log_at_trx_commit = 0"));

  tm_under_test other;  // another TM checks its own first connection
  other.register_pg_and_maria();
  auto refused = test::thrown_by<configuration_error>([&] { (void)other.tm->connect("maria"); });
  CHECK(contains(refused.what(), "innodb_flush_log_at_trx_commit = 0"));
}

// ---- PostgreSQL: fsync = off ----------------------------------------------------------------------

TEST_CASE(
    "PostgreSQL fsync = off: connect(), recovery and xatm-recover refuse, naming fsync; "
    "allow_unsafe_durability works") {
  fresh_tables("fence_fsync");
  {
    pg_system_setting fsync_off("fsync", "off");
    tm_under_test t;
    t.tm->register_rm("pg", "postgresql", test::servers().pg);
    auto refused = test::thrown_by<configuration_error>([&] { (void)t.tm->connect("pg"); });
    INFO(refused.what());
    CHECK(refused.rm_name() == "pg");
    CHECK(contains(refused.what(),
                   "RM 'pg': fsync = off can lose a committed XA transaction on a host crash: "
                   "set fsync = on"));
    auto report = t.tm->recover_now();
    REQUIRE(report.unreachable_rms.size() == 1);
    CHECK(report.unreachable_rms[0].rfind("pg: ", 0) == 0);
    CHECK(contains(report.unreachable_rms[0], "fsync = off"));
    t.close();

    auto tool = recover_with_tool(t, {}, {"pg"});
    CHECK(tool.exit_code() == 1);
    CHECK(contains(tool.out, "UNREACHABLE RM pg: "));
    CHECK(contains(tool.out, "fsync = off can lose a committed XA transaction"));
    auto allowed = recover_with_tool(t, {"--allow-unsafe-durability"}, {"pg"});
    CHECK(allowed.exit_code() == 0);
    CHECK_FALSE(contains(allowed.output(), "UNREACHABLE"));

    tm_options opted_out;
    opted_out.allow_unsafe_durability = true;
    tm_under_test u(opted_out);
    u.tm->register_rm("pg", "postgresql", test::servers().pg);
    auto pg = u.tm->connect("pg");
    {
      auto tx = u.tm->begin();
      tx.enlist(*pg);
      run(*pg, "INSERT INTO fence_fsync VALUES (1)");
      CHECK(tx.commit() == commit_outcome::committed);
    }
    CHECK(u.tm->recover_now().unreachable_rms.empty());
  }
  // Put back: a TM that checks connects again.
  tm_under_test after;
  after.tm->register_rm("pg", "postgresql", test::servers().pg);
  CHECK(after.tm->connect("pg") != nullptr);
  CHECK(count_rows(*observe_pg(), "fence_fsync") == 1);
}

// ---- MariaDB: global autocommit = 0 ---------------------------------------------------------------

TEST_CASE(
    "MariaDB with global autocommit = 0: recovery and xatm-recover resolve a branch a crash left "
    "prepared, and a three-phase transaction's markers are deleted") {
  fresh_tables("fence_autocommit");
  tm_under_test by_library;
  const std::string library_gtrid = leave_maria_branch_prepared(by_library, "fence_autocommit", 1);
  tm_under_test by_tool;
  const std::string tool_gtrid = leave_maria_branch_prepared(by_tool, "fence_autocommit", 2);
  tm_options three_phase;
  three_phase.protocol = commit_protocol::three_phase;
  tm_under_test by_markers(three_phase);
  const std::string p3_gtrid = leave_maria_branch_prepared(by_markers, "fence_autocommit", 3);
  REQUIRE(p3_gtrid.ends_with(".p3"));
  REQUIRE(markers_of(*observe_pg(), p3_gtrid) == 1);
  REQUIRE(markers_of(*observe_maria(), p3_gtrid) == 1);

  maria_global no_autocommit("autocommit", "0");

  // The library's recovery.
  by_library.reopen();
  by_library.register_pg_and_maria();
  auto report = by_library.tm->recover_now();
  CHECK(report.unreachable_rms.empty());
  const recovery_item* resolved = item_for(report, "maria", library_gtrid);
  REQUIRE(resolved != nullptr);
  INFO(resolved->detail);
  CHECK(resolved->result == recovery_result::committed);
  CHECK(completed(report, library_gtrid));
  CHECK_FALSE(report.unresolved());
  by_library.close();
  CHECK(test::decisions_in_log_file(by_library.log_path).empty());

  // xatm-recover.
  auto tool = recover_with_tool(by_tool, {"--json"});
  CHECK(tool.exit_code() == 0);
  CHECK(contains(tool.line_with(tool_gtrid), "\"result\":\"committed\""));
  CHECK(test::decisions_in_log_file(by_tool.log_path).empty());

  // Three-phase: recovery commits the branch and deletes both markers, for good.
  by_markers.reopen();
  by_markers.register_pg_and_maria();
  auto p3_report = by_markers.tm->recover_now();
  CHECK(p3_report.unreachable_rms.empty());
  const recovery_item* p3_resolved = item_for(p3_report, "maria", p3_gtrid);
  REQUIRE(p3_resolved != nullptr);
  INFO(p3_resolved->detail);
  CHECK(p3_resolved->result == recovery_result::committed);
  CHECK(completed(p3_report, p3_gtrid));
  by_markers.close();
  CHECK(markers_of(*observe_pg(), p3_gtrid) == 0);
  CHECK(markers_of(*observe_maria(), p3_gtrid) == 0);

  auto maria = observe_maria();
  CHECK(prepared_gtrids(*maria, by_library.tm_id).empty());
  CHECK(prepared_gtrids(*maria, by_tool.tm_id).empty());
  CHECK(prepared_gtrids(*maria, by_markers.tm_id).empty());
  CHECK(count_rows(*maria, "fence_autocommit") == 3);
  CHECK(count_rows(*observe_pg(), "fence_autocommit") == 3);
}

// ---- servers that accept no writes: a read-only MariaDB, a PostgreSQL standby --------------------

TEST_CASE(
    "MariaDB read_only = 1: connect() and recovery treat it as unusable, naming the RM and what to do; "
    "nothing is committed there and the decision is kept") {
  fresh_tables("fence_read_only");
  tm_under_test t;
  const std::string gtrid = leave_maria_branch_prepared(t, "fence_read_only", 1);
  {
    // A replica is normally read_only. xatm's user has every privilege (as many TMs' users do),
    // so MariaDB would let it commit there: only xatm's own check keeps it out.
    maria_global read_only("read_only", "1");
    t.reopen();
    t.register_pg_and_maria();
    auto report = t.tm->recover_now();
    CHECK(report.unreachable_rms.size() == 1);
    if (!report.unreachable_rms.empty()) {
      CHECK(report.unreachable_rms[0].rfind("maria: ", 0) == 0);
      CHECK(contains(report.unreachable_rms[0], "read_only"));
    }
    CHECK(report.unresolved());
    CHECK_FALSE(completed(report, gtrid));
    CHECK(prepared_gtrids(*observe_maria(), t.tm_id) == std::set<std::string>{gtrid});
    auto refused = test::thrown_by<configuration_error>([&] { (void)t.tm->connect("maria"); });
    INFO(refused.what());
    CHECK(refused.rm_name() == "maria");
    CHECK(contains(refused.what(), "RM 'maria'"));
    CHECK(contains(refused.what(), "read_only"));
    CHECK(contains(refused.what(), "primary"));
    CHECK_FALSE(contains(refused.what(), std::string(test::mysql_password)));
    t.close();
    CHECK(test::decisions_in_log_file(t.log_path) == std::vector<std::string>{gtrid});

    auto tool = recover_with_tool(t);
    CHECK(tool.exit_code() == 1);
    CHECK(contains(tool.out + tool.err, "read_only"));
    CHECK(prepared_gtrids(*observe_maria(), t.tm_id) == std::set<std::string>{gtrid});
    CHECK(test::decisions_in_log_file(t.log_path) == std::vector<std::string>{gtrid});
  }
  // Writable again: recovery commits the branch and forgets the decision.
  t.reopen();
  t.register_pg_and_maria();
  auto report = t.tm->recover_now();
  CHECK(completed(report, gtrid));
  CHECK(prepared_gtrids(*observe_maria(), t.tm_id).empty());
  CHECK(count_rows(*observe_maria(), "fence_read_only", "id = 1") == 1);
  CHECK(count_rows(*observe_pg(), "fence_read_only", "id = 1") == 1);
  t.close();
  CHECK(test::decisions_in_log_file(t.log_path).empty());
}

namespace {

// A physical standby of the test PostgreSQL for one test: stopped (its data dir removed) when the
// test ends, whatever happens (servers.sh stop would stop it too).
class pg_standby {
 public:
  pg_standby() { test::start_pg_standby(); }
  ~pg_standby() {
    try {
      test::stop_pg_standby();
    } catch (const std::exception& e) {
      MESSAGE("could not stop the PostgreSQL standby: " << e.what());
    }
  }
  pg_standby(const pg_standby&) = delete;
  pg_standby& operator=(const pg_standby&) = delete;

  // Waits until the standby replayed everything the primary wrote so far, then pauses its replay:
  // what the primary does next does not reach it.
  static void catch_up_and_pause() {
    auto standby = observe_pg(test::servers().pg_standby);
    const std::string lsn = single_value(*observe_pg(), "SELECT pg_current_wal_lsn()::text");
    bool caught_up = false;
    for (int attempt = 0; attempt < 400 && !caught_up; ++attempt) {
      caught_up = single_value(*standby, "SELECT pg_last_wal_replay_lsn() >= '" + lsn + "'::pg_lsn") == "t";
      if (!caught_up) std::this_thread::sleep_for(50ms);
    }
    REQUIRE_MESSAGE(caught_up, "the standby did not replay the primary's WAL within 20 s");
    run(*standby, "SELECT pg_wal_replay_pause()");
    bool paused = false;
    for (int attempt = 0; attempt < 400 && !paused; ++attempt) {
      paused = single_value(*standby, "SELECT pg_get_wal_replay_pause_state()") == "paused";
      if (!paused) std::this_thread::sleep_for(50ms);
    }
    REQUIRE_MESSAGE(paused, "the standby's replay did not pause within 20 s");
  }
};

}  // namespace

TEST_CASE(
    "PostgreSQL standby: recovery pointed at a physical standby that lists no branch of a decided "
    "transaction reports the RM unusable and keeps the COMMIT decision; at the primary it commits") {
  REQUIRE_FALSE(test::servers().pg_standby.empty());
  fresh_tables("fence_standby");
  // The identity row must be on the primary before the base backup: a standby is a copy of the
  // right database, so the identity check passes there.
  REQUIRE_OK(detail::ensure_identity(*observe_pg()));
  pg_standby standby;
  pg_standby::catch_up_and_pause();

  // Decided, committed on MariaDB, prepared on the primary only: the standby has not replayed the
  // PREPARE and lists no branch.
  tm_under_test t;
  const std::string gtrid = leave_branch_prepared(t, "fence_standby", 1, "pg");
  CHECK(prepared_gtrids(*observe_pg(test::servers().pg_standby), t.tm_id).empty());
  CHECK(single_value(*observe_pg(test::servers().pg_standby), "SELECT pg_is_in_recovery()") == "t");

  // "pg" resolved to the standby (a host list, a service file, a failover DNS name that landed
  // there). Without the check, recovery would find no branch of the decision on either RM and
  // forget it; the primary's prepared branch would then be presumed aborted: a split.
  t.reopen();
  t.tm->register_rm("pg", "postgresql", test::servers().pg_standby);
  t.tm->register_rm("maria", "mariadb", test::servers().mysql);
  auto report = t.tm->recover_now();
  CHECK(report.unreachable_rms.size() == 1);
  if (!report.unreachable_rms.empty()) {
    CHECK(report.unreachable_rms[0].rfind("pg: ", 0) == 0);
    CHECK(contains(report.unreachable_rms[0], "standby"));
    CHECK(contains(report.unreachable_rms[0], "target_session_attrs=read-write"));
  }
  CHECK(report.unresolved());
  CHECK_FALSE(completed(report, gtrid));
  t.close();
  CHECK(test::decisions_in_log_file(t.log_path) == std::vector<std::string>{gtrid});
  t.reopen();
  t.tm->register_rm("pg", "postgresql", test::servers().pg_standby);
  t.tm->register_rm("maria", "mariadb", test::servers().mysql);
  auto refused = test::thrown_by<configuration_error>([&] { (void)t.tm->connect("pg"); });
  INFO(refused.what());
  CHECK(refused.rm_name() == "pg");
  CHECK(contains(refused.what(), "RM 'pg'"));
  CHECK(contains(refused.what(), "standby"));
  CHECK(contains(refused.what(), "target_session_attrs=read-write"));
  t.close();

  auto tool = recover_with_tool(t, {}, {"pg", "maria"}, test::servers().pg_standby);
  CHECK(tool.exit_code() == 1);
  CHECK(contains(tool.out + tool.err, "standby"));
  CHECK(test::decisions_in_log_file(t.log_path) == std::vector<std::string>{gtrid});
  CHECK(prepared_gtrids(*observe_pg(), t.tm_id) == std::set<std::string>{gtrid});

  // Pointed at the primary: the decision commits the prepared branch there.
  t.reopen();
  t.register_pg_and_maria();
  report = t.tm->recover_now();
  CHECK(completed(report, gtrid));
  CHECK_FALSE(report.unresolved());
  CHECK(prepared_gtrids(*observe_pg(), t.tm_id).empty());
  CHECK(count_rows(*observe_pg(), "fence_standby", "id = 1") == 1);
  CHECK(count_rows(*observe_maria(), "fence_standby", "id = 1") == 1);
  t.close();
  CHECK(test::decisions_in_log_file(t.log_path).empty());
}
