// The transaction manager against the real servers: a transfer from PostgreSQL to MariaDB (the
// bank of examples/transfer.cpp) committed, rolled back and abandoned; a MariaDB deadlock seen by
// exec() or only by the native handle, and a deferred PostgreSQL constraint that fails at
// prepare, each rolling the other database back too; a read-only branch that takes the one-phase
// path without a log record; 16 threads of concurrent transfers checked for atomicity, with the
// decision log's group commit measured; and the latency of a 2-branch commit next to two local
// commits (reported, never asserted). Needs the `servers` fixture.
#include <doctest/doctest.h>
#include <mysql.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <latch>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/adapter_checks.h"
#include "support/bank_tables.h"
#include "support/log_file.h"
#include "support/observers.h"
#include "support/result_checks.h"
#include "support/servers.h"
#include "support/tm_fixture.h"
#include "xatm/connection_settings.h"
#include "xatm/error.h"
#include "mysql/mysql.h"
#include "postgresql/postgresql.h"
#include "xatm/transaction_manager.h"

using namespace xatm;  // NOLINT(google-build-using-namespace): test file

namespace {

using clock = std::chrono::steady_clock;

using test::observe_maria;
using test::observe_pg;
using test::prepared_gtrids;
using test::run;
using test::single_value;

// A transaction manager of its own per test (support/tm_fixture.h), with the two RMs "pg" and
// "maria" and background recovery on. Destroy every global_transaction before calling close().
struct tm_under_test : test::tm_fixture {
  tm_under_test() : tm_fixture("tmtest") {}
};

std::vector<std::string> decisions_in_log(const std::filesystem::path& log) { return test::decisions_in_log_file(log); }

std::set<std::string> prepared_on_pg(const std::string& tm_id) { return prepared_gtrids(*observe_pg(), tm_id); }
std::set<std::string> prepared_on_maria(const std::string& tm_id) { return prepared_gtrids(*observe_maria(), tm_id); }

// The bank of examples/transfer.cpp, with numbered accounts: accounts(id, balance CHECK >= 0)
// and ledger(token PRIMARY KEY, account, amount) on both databases, table names suffixed per
// test and dropped first. On request the PostgreSQL ledger's key is checked only at commit
// (DEFERRABLE INITIALLY DEFERRED), so that a duplicate token fails at PREPARE TRANSACTION.
struct bank {
  std::string accounts;
  std::string ledger;
  int size;
  long initial;

  bank(const std::string& suffix, int accounts_count, long initial_balance, bool deferred_pg_ledger = false)
      : accounts("tm_accounts_" + suffix),
        ledger("tm_ledger_" + suffix),
        size(accounts_count),
        initial(initial_balance) {
    test::create_bank_tables(*observe_pg(), *observe_maria(), accounts, ledger, size, initial, deferred_pg_ledger);
  }

  std::string add_to_account(int id, long amount) const {
    return "UPDATE " + accounts + " SET balance = balance + " + std::to_string(amount) +
           " WHERE id = " + std::to_string(id);
  }
  std::string add_to_ledger(const std::string& token, int account, long amount) const {
    return "INSERT INTO " + ledger + " VALUES ('" + token + "', " + std::to_string(account) + ", " +
           std::to_string(amount) + ")";
  }

  long pg_balance(int id) const { return std::stol(single_value(*observe_pg(), balance_sql(id))); }
  long maria_balance(int id) const { return std::stol(single_value(*observe_maria(), balance_sql(id))); }
  long pg_total() const { return std::stol(single_value(*observe_pg(), total_sql())); }
  long maria_total() const { return std::stol(single_value(*observe_maria(), total_sql())); }
  std::set<std::string> pg_tokens() const { return tokens(*observe_pg()); }
  std::set<std::string> maria_tokens() const { return tokens(*observe_maria()); }

 private:
  std::string balance_sql(int id) const {
    return "SELECT balance FROM " + accounts + " WHERE id = " + std::to_string(id);
  }
  std::string total_sql() const { return "SELECT COALESCE(SUM(balance), 0) FROM " + accounts; }
  std::set<std::string> tokens(connection& rm) const {
    std::set<std::string> found;
    for (const auto& row : run(rm, "SELECT token FROM " + ledger).rows) found.insert(row.at(0).value());
    return found;
  }
};

// The SQL of one transfer inside an enlisted transaction: `amount` leaves PostgreSQL account
// `from` and arrives in MariaDB account `to`, with a ledger row for `token` on each side.
// PostgreSQL first, always: one lock order across the two databases, so that two transfers can
// never wait for each other across them (a deadlock neither server could see).
void transfer_sql(const bank& b, connection& pg, connection& maria, int from, int to, long amount,
                  const std::string& token) {
  pg.exec(b.add_to_account(from, -amount)).value();
  pg.exec(b.add_to_ledger(token, from, -amount)).value();
  maria.exec(b.add_to_account(to, amount)).value();
  maria.exec(b.add_to_ledger(token, to, amount)).value();
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("a commit is visible on both databases and leaves no pending decision in the log") {
  tm_under_test t;
  bank b("commit", 2, 100);
  std::string gtrid;
  {
    auto pg = t.tm->connect("pg");
    auto maria = t.tm->connect("maria");
    auto tx = t.tm->begin();
    gtrid = tx.gtrid();
    CHECK(gtrid.rfind(t.tm_id + ".", 0) == 0);
    tx.enlist(*pg);
    tx.enlist(*maria);
    transfer_sql(b, *pg, *maria, 1, 2, 30, "c1");
    // Before the commit nobody else sees any of it.
    CHECK(b.pg_balance(1) == 100);
    CHECK(b.maria_tokens().empty());
    CHECK(tx.commit() == commit_outcome::committed);
    CHECK(tx.finished());
  }
  CHECK(b.pg_balance(1) == 70);
  CHECK(b.pg_balance(2) == 100);
  CHECK(b.maria_balance(1) == 100);
  CHECK(b.maria_balance(2) == 130);
  CHECK(b.pg_tokens() == std::set<std::string>{"c1"});
  CHECK(b.maria_tokens() == std::set<std::string>{"c1"});
  CHECK(prepared_on_pg(t.tm_id).empty());
  CHECK(prepared_on_maria(t.tm_id).empty());

  auto stats = t.tm->statistics();
  CHECK(stats.committed == 1);
  CHECK(stats.one_phase == 0);
  CHECK(stats.rolled_back == 0);
  CHECK(stats.completion_pending == 0);
  CHECK(stats.decisions_logged == 1);
  CHECK(stats.log_batches >= 1);

  // The completion is not forced: it reaches the file at the latest when the log closes.
  t.close();
  CHECK(decisions_in_log(t.log_path).empty());
}

TEST_CASE("rollback() and an unfinished transaction's destructor leave nothing on either database") {
  tm_under_test t;
  bank b("rollback", 2, 100);
  std::string how;
  SUBCASE("rollback()") { how = "rollback"; }
  SUBCASE("destroyed before commit()") { how = "destroy"; }
  SUBCASE("a statement fails (overdraft) and the transaction is destroyed") { how = "overdraft"; }
  CAPTURE(how);
  {
    auto pg = t.tm->connect("pg");
    auto maria = t.tm->connect("maria");
    auto tx = t.tm->begin();
    tx.enlist(*maria);
    tx.enlist(*pg);
    if (how == "overdraft") {
      // The credit on MariaDB comes first, as in examples/transfer.cpp: its rollback is the point.
      REQUIRE_OK(maria->exec(b.add_to_account(1, 500)));
      REQUIRE_OK(maria->exec(b.add_to_ledger("r1", 1, 500)));
      CHECK_THROWS_AS(pg->exec(b.add_to_account(1, -500)).value(), xatm::error);
    } else {
      transfer_sql(b, *pg, *maria, 1, 1, 40, "r1");
      if (how == "rollback") {
        tx.rollback();
        CHECK(tx.finished());
        CHECK_THROWS_AS(tx.commit(), protocol_error);
      }
    }
  }
  CHECK(b.pg_balance(1) == 100);
  CHECK(b.maria_balance(1) == 100);
  CHECK(b.pg_tokens().empty());
  CHECK(b.maria_tokens().empty());
  CHECK(prepared_on_pg(t.tm_id).empty());
  CHECK(prepared_on_maria(t.tm_id).empty());
  auto stats = t.tm->statistics();
  CHECK(stats.rolled_back == 1);
  CHECK(stats.committed == 0);
  CHECK(stats.decisions_logged == 0);
  t.close();
  CHECK(decisions_in_log(t.log_path).empty());
}

namespace {

// One side of the MariaDB deadlock: its own transaction writes on PostgreSQL (its own row: no
// conflict there), then locks MariaDB rows `first` and `second` in that order; the other side
// does the opposite. Runs in a thread: no doctest assertions, everything is recorded.
struct deadlock_party {
  std::string token;
  int pg_row;
  int first;
  int second;
  // What happened
  std::string gtrid{};
  bool second_lock_failed = false;
  unsigned int native_code = 0;  // of the failed statement (1213 ER_LOCK_DEADLOCK)
  xa_code exec_code = xa_code::ok;
  bool committed = false;
  std::optional<rolled_back_error> commit_error{};
  std::string other_error{};  // anything unexpected
};

enum class deadlock_mode {
  exec_then_commit,    // exec() throws; the application still calls commit()
  exec_then_destroy,   // exec() throws; the transaction is destroyed unfinished
  native_then_commit,  // the conflicting statement runs on the native handle: only commit() finds out
};

void run_deadlock_party(transaction_manager& tm, const bank& b, deadlock_mode mode, deadlock_party& party,
                        connection& pg, connection& maria, std::latch& first_locks_held) {
  bool arrived = false;
  try {
    auto tx = tm.begin();
    party.gtrid = tx.gtrid();
    tx.enlist(pg);
    tx.enlist(maria);
    pg.exec(b.add_to_account(party.pg_row, -2)).value();
    pg.exec(b.add_to_ledger(party.token, party.pg_row, -2)).value();
    maria.exec(b.add_to_ledger(party.token, party.first, 2)).value();
    maria.exec(b.add_to_account(party.first, 1)).value();
    arrived = true;
    first_locks_held.arrive_and_wait();
    // Both hold their first row: whoever asks for the other's row second closes the cycle.
    if (mode == deadlock_mode::native_then_commit) {
      std::string sql = b.add_to_account(party.second, 1);
      MYSQL* conn = mysql::handle(resource_manager::of(maria));
      if (mysql_query(conn, sql.c_str()) != 0) {
        party.second_lock_failed = true;
        party.native_code = mysql_errno(conn);
      }
    } else {
      try {
        maria.exec(b.add_to_account(party.second, 1)).value();
      } catch (const xatm::error& e) {
        party.second_lock_failed = true;
        party.native_code = static_cast<unsigned int>(e.native_code());
        party.exec_code = e.code();
        if (mode == deadlock_mode::exec_then_destroy) return;  // ~global_transaction rolls back
      }
    }
    try {
      party.committed = tx.commit() == commit_outcome::committed;
    } catch (const rolled_back_error& e) {
      party.commit_error = e;
    }
  } catch (const std::exception& e) {
    party.other_error = e.what();
    if (!arrived) first_locks_held.count_down();  // the other side must not wait forever
  }
}

void check_deadlock(deadlock_mode mode) {
  tm_under_test t;
  bank b("deadlock", 2, 100);
  deadlock_party a{"dA", 1, 1, 2};
  deadlock_party z{"dZ", 2, 2, 1};
  {
    auto a_pg = t.tm->connect("pg");
    auto a_maria = t.tm->connect("maria");
    auto z_pg = t.tm->connect("pg");
    auto z_maria = t.tm->connect("maria");
    std::latch first_locks_held(2);
    std::thread a_thread([&] { run_deadlock_party(*t.tm, b, mode, a, *a_pg, *a_maria, first_locks_held); });
    std::thread z_thread([&] { run_deadlock_party(*t.tm, b, mode, z, *z_pg, *z_maria, first_locks_held); });
    a_thread.join();
    z_thread.join();
  }
  CHECK(a.other_error.empty());
  CHECK(z.other_error.empty());
  // Exactly one victim; InnoDB picks it.
  REQUIRE(a.second_lock_failed != z.second_lock_failed);
  deadlock_party& victim = a.second_lock_failed ? a : z;
  deadlock_party& survivor = a.second_lock_failed ? z : a;
  CAPTURE(victim.token);
  CHECK(victim.native_code == 1213);  // ER_LOCK_DEADLOCK
  if (mode != deadlock_mode::native_then_commit) CHECK(victim.exec_code == xa_code::rollback_deadlock);
  CHECK_FALSE(victim.committed);
  if (mode == deadlock_mode::exec_then_destroy) {
    CHECK_FALSE(victim.commit_error.has_value());
  } else {
    // XA END answers "ROLLBACK ONLY": the branch is gone, and with it the whole transaction.
    REQUIRE(victim.commit_error.has_value());
    const rolled_back_error& e = *victim.commit_error;
    INFO(e.what());
    CHECK(e.rm_name() == "maria");
    CHECK(e.code() == (mode == deadlock_mode::native_then_commit ? xa_code::rollback : xa_code::rollback_deadlock));
    CHECK(contains(e.cause().message, victim.gtrid + " rolled back: end failed on maria"));
    CHECK(contains(e.what(), "[maria]"));
  }
  CHECK(survivor.committed);
  CHECK_FALSE(survivor.commit_error.has_value());

  // The victim's PostgreSQL branch is rolled back too; the survivor's transfer is all there.
  CHECK(b.pg_balance(victim.pg_row) == 100);
  CHECK(b.pg_balance(survivor.pg_row) == 98);
  CHECK(b.maria_balance(1) == 101);
  CHECK(b.maria_balance(2) == 101);
  CHECK(b.pg_tokens() == std::set<std::string>{survivor.token});
  CHECK(b.maria_tokens() == std::set<std::string>{survivor.token});
  CHECK(prepared_on_pg(t.tm_id).empty());
  CHECK(prepared_on_maria(t.tm_id).empty());
  auto stats = t.tm->statistics();
  CHECK(stats.committed == 1);
  CHECK(stats.rolled_back == 1);
  CHECK(stats.decisions_logged == 1);
  t.close();
  CHECK(decisions_in_log(t.log_path).empty());
}

}  // namespace

TEST_CASE("a deadlock on MariaDB seen by exec() rolls the PostgreSQL branch back too") {
  SUBCASE("the application calls commit(): rolled_back_error names MariaDB") {
    check_deadlock(deadlock_mode::exec_then_commit);
  }
  SUBCASE("the application destroys the transaction") { check_deadlock(deadlock_mode::exec_then_destroy); }
}

TEST_CASE("a deadlock only the native MariaDB handle saw surfaces in commit() and rolls PostgreSQL back") {
  check_deadlock(deadlock_mode::native_then_commit);
}

TEST_CASE("a deferred PostgreSQL constraint failing at prepare rolls the prepared MariaDB branch back") {
  tm_under_test t;
  bank b("deferred", 2, 100, /*deferred_pg_ledger=*/true);
  std::string gtrid;
  {
    auto pg = t.tm->connect("pg");
    auto maria = t.tm->connect("maria");
    auto tx = t.tm->begin();
    gtrid = tx.gtrid();
    tx.enlist(*maria);
    tx.enlist(*pg);
    transfer_sql(b, *pg, *maria, 1, 1, 25, "p1");
    // The same token twice: a deferred key says nothing until the transaction ends.
    REQUIRE_OK(pg->exec(b.add_to_ledger("p1", 2, 0)));
    try {
      (void)tx.commit();
      FAIL("commit succeeded despite the duplicate token");
    } catch (const rolled_back_error& e) {
      INFO(e.what());
      CHECK(e.rm_name() == "pg");
      CHECK(e.code() == xa_code::rollback_integrity);
      CHECK(e.sqlstate() == "23505");
      CHECK(contains(e.cause().message, gtrid + " rolled back: prepare failed on pg"));
    }
  }
  CHECK(b.pg_balance(1) == 100);
  CHECK(b.maria_balance(1) == 100);
  CHECK(b.pg_tokens().empty());
  CHECK(b.maria_tokens().empty());
  // MariaDB had voted yes (the prepares run in parallel): its prepared branch is rolled back.
  CHECK(prepared_on_pg(t.tm_id).count(gtrid) == 0);
  CHECK(prepared_on_maria(t.tm_id).count(gtrid) == 0);
  auto stats = t.tm->statistics();
  CHECK(stats.rolled_back == 1);
  CHECK(stats.decisions_logged == 0);
  t.close();
  CHECK(decisions_in_log(t.log_path).empty());
}

TEST_CASE("a read-only PostgreSQL branch next to a writing MariaDB branch commits in one phase, unlogged") {
  tm_under_test t;
  bank b("readonly", 2, 100);
  CHECK(t.tm->statistics().one_phase == 0);
  std::string gtrid;
  {
    auto pg = t.tm->connect("pg");
    auto maria = t.tm->connect("maria");
    auto tx = t.tm->begin();
    gtrid = tx.gtrid();
    tx.enlist(*pg);
    tx.enlist(*maria);
    CHECK(single_value(*pg, "SELECT balance FROM " + b.accounts + " WHERE id = 1") == "100");
    REQUIRE_OK(maria->exec(b.add_to_account(1, 5)));
    REQUIRE_OK(maria->exec(b.add_to_ledger("o1", 1, 5)));
    CHECK(tx.commit() == commit_outcome::committed);
  }
  CHECK(b.maria_balance(1) == 105);
  CHECK(b.maria_tokens() == std::set<std::string>{"o1"});
  CHECK(b.pg_balance(1) == 100);
  CHECK(prepared_on_pg(t.tm_id).empty());
  CHECK(prepared_on_maria(t.tm_id).empty());
  auto stats = t.tm->statistics();
  CHECK(stats.committed == 1);
  CHECK(stats.one_phase == 1);
  CHECK(stats.decisions_logged == 0);
  CHECK(stats.log_batches == 0);
  t.close();
  CHECK(decisions_in_log(t.log_path).empty());
}

namespace {

enum class transfer_outcome : std::uint8_t { committed, rolled_back, unknown };

struct transfer_record {
  std::string token;
  transfer_outcome outcome = transfer_outcome::unknown;
};

// One committer's transfers and what the TM acknowledged for each. Filled by its thread only.
struct committer {
  std::vector<transfer_record> transfers;
  std::size_t refused = 0;          // insufficient funds: a CHECK constraint said no
  std::size_t other_rollbacks = 0;  // rolled back for another reason (reported, not expected)
  std::vector<std::string> surprises;
};

bool is_check_violation(const xatm::error& e) {
  return e.sqlstate() == "23514" /* PostgreSQL check_violation */ || e.native_code() == 4025 /* ER_CONSTRAINT_FAILED */;
}

// `count` random transfers between random accounts, half of them each way; an overdraft on
// either side is refused by the CHECK constraint, so rollbacks are mixed in all along. Runs in a
// thread with a pair of connections of its own: no doctest assertions, everything is recorded.
void run_transfers(transaction_manager& tm, const bank& b, int thread, int count, std::latch& start, committer& out) {
  std::mt19937 random(static_cast<std::mt19937::result_type>(7919 * (thread + 1)));
  std::uniform_int_distribution<int> account(1, b.size);
  std::uniform_int_distribution<long> amount(1, b.initial / 2);
  out.transfers.reserve(static_cast<std::size_t>(count));
  std::unique_ptr<connection> pg;
  std::unique_ptr<connection> maria;
  try {
    pg = tm.connect("pg");
    maria = tm.connect("maria");
  } catch (const std::exception& e) {
    out.surprises.push_back(std::string("thread ") + std::to_string(thread) + " cannot connect: " + e.what());
  }
  start.arrive_and_wait();  // whatever happened: the others wait for everyone
  if (!pg || !maria) return;
  try {
    for (int i = 0; i < count; ++i) {
      transfer_record& record = out.transfers.emplace_back();
      record.token = "L" + std::to_string(thread) + "-" + std::to_string(i);
      const long pg_change = random() % 2 == 0 ? -amount(random) : amount(random);
      const int pg_account = account(random);
      const int maria_account = account(random);
      bool committing = false;
      try {
        auto tx = tm.begin();
        tx.enlist(*pg);
        tx.enlist(*maria);
        // PostgreSQL first, always (see transfer_sql).
        pg->exec(b.add_to_account(pg_account, pg_change)).value();
        pg->exec(b.add_to_ledger(record.token, pg_account, pg_change)).value();
        maria->exec(b.add_to_account(maria_account, -pg_change)).value();
        maria->exec(b.add_to_ledger(record.token, maria_account, -pg_change)).value();
        committing = true;
        if (tx.commit() == commit_outcome::committed) {
          record.outcome = transfer_outcome::committed;
        } else {
          out.surprises.push_back(record.token + ": completion pending");
        }
      } catch (const rolled_back_error& e) {
        // Before commit(): the destructor rolled back. From commit(): rolled back on both.
        record.outcome = transfer_outcome::rolled_back;
        ++(is_check_violation(e) ? out.refused : out.other_rollbacks);
      } catch (const timeout_error&) {
        record.outcome = transfer_outcome::rolled_back;
        ++out.other_rollbacks;
      } catch (const xatm::error& e) {
        if (committing) {
          out.surprises.push_back(record.token + ": " + e.what());  // in doubt, heuristic, log failure
        } else {
          // A statement failed: the transaction never reached commit() and was rolled back.
          record.outcome = transfer_outcome::rolled_back;
          ++(is_check_violation(e) ? out.refused : out.other_rollbacks);
        }
      }
      if (!pg->connected() && !pg->reconnect().ok()) out.surprises.push_back("PostgreSQL reconnect failed");
      if (!maria->connected() && !maria->reconnect().ok()) out.surprises.push_back("MariaDB reconnect failed");
    }
  } catch (const std::exception& e) {
    out.surprises.push_back(std::string("thread ") + std::to_string(thread) + " stopped: " + e.what());
  }
}

double median(std::vector<double> values) {
  REQUIRE_FALSE(values.empty());
  std::sort(values.begin(), values.end());
  std::size_t middle = values.size() / 2;
  return values.size() % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
}

}  // namespace

TEST_CASE("16 concurrent committers: atomic transfers, conserved money, decisions group-committed") {
  constexpr int threads = 16;
  constexpr int per_thread = 500;
  constexpr int accounts = 50;
  constexpr long initial = 1000;
  tm_under_test t;
  bank b("load", accounts, initial);

  std::vector<committer> committers(threads);
  std::latch start(threads + 1);
  std::vector<std::thread> running;
  running.reserve(threads);
  for (int thread = 0; thread < threads; ++thread) {
    committer* mine = &committers[static_cast<std::size_t>(thread)];
    running.emplace_back([&, thread, mine] { run_transfers(*t.tm, b, thread, per_thread, start, *mine); });
  }
  start.arrive_and_wait();
  auto started = clock::now();
  for (auto& thread : running) thread.join();
  const double seconds = std::chrono::duration<double>(clock::now() - started).count();
  const auto stats = t.tm->statistics();

  std::size_t committed = 0;
  std::size_t rolled_back = 0;
  std::size_t refused = 0;
  std::size_t other_rollbacks = 0;
  std::vector<std::string> surprises;
  for (const committer& c : committers) {
    for (const transfer_record& record : c.transfers) {
      committed += record.outcome == transfer_outcome::committed ? 1 : 0;
      rolled_back += record.outcome == transfer_outcome::rolled_back ? 1 : 0;
    }
    refused += c.refused;
    other_rollbacks += c.other_rollbacks;
    surprises.insert(surprises.end(), c.surprises.begin(), c.surprises.end());
  }
  const std::size_t total = static_cast<std::size_t>(threads) * per_thread;
  const double batches_per_decision = stats.decisions_logged == 0 ? 0.0
                                                                  : static_cast<double>(stats.log_batches) /
                                                                        static_cast<double>(stats.decisions_logged);
  MESSAGE(total << " transfers by " << threads << " threads in " << seconds << " s: " << total / seconds
                << " transfers/s; " << committed << " committed, " << rolled_back << " rolled back (" << refused
                << " overdrafts refused, " << other_rollbacks << " other)");
  MESSAGE("decision log: " << stats.decisions_logged << " decisions in " << stats.log_batches
                           << " batches (fsyncs): " << batches_per_decision << " batches per decision");
  for (std::size_t i = 0; i < surprises.size() && i < 10; ++i) MESSAGE("unexpected: " << surprises[i]);
  CHECK(surprises.empty());
  CHECK(committed + rolled_back == total);
  CHECK(committed > 0);
  CHECK(refused > 0);  // the run must mix rollbacks in

  // Atomicity: money is conserved, both ledgers hold the same tokens, and they are exactly the
  // acknowledged commits.
  CHECK(b.pg_total() + b.maria_total() == 2 * accounts * initial);
  const auto pg_tokens = b.pg_tokens();
  const auto maria_tokens = b.maria_tokens();
  CHECK(pg_tokens == maria_tokens);
  CHECK(pg_tokens.size() == committed);
  std::size_t committed_missing = 0;
  std::size_t rolled_back_present = 0;
  for (const committer& c : committers) {
    for (const transfer_record& record : c.transfers) {
      bool present = pg_tokens.count(record.token) + maria_tokens.count(record.token) > 0;
      if (record.outcome == transfer_outcome::committed && !present) ++committed_missing;
      if (record.outcome == transfer_outcome::rolled_back && present) ++rolled_back_present;
    }
  }
  CHECK(committed_missing == 0);
  CHECK(rolled_back_present == 0);
  CHECK(prepared_on_pg(t.tm_id).empty());
  CHECK(prepared_on_maria(t.tm_id).empty());

  // Every commit had two writing branches: one durable decision each, group-committed.
  CHECK(stats.committed == committed);
  CHECK(stats.one_phase == 0);
  CHECK(stats.rolled_back == rolled_back);
  CHECK(stats.decisions_logged == committed);
  CHECK(batches_per_decision > 0);
  CHECK(batches_per_decision < 1);
  t.close();
  CHECK(decisions_in_log(t.log_path).empty());
}

TEST_CASE("latency: a 2-branch commit next to two local commits (measured, not asserted)") {
  constexpr int warmup = 20;
  constexpr int runs = 200;
  tm_under_test t;
  bank b("latency", 2, 0);
  auto pg = t.tm->connect("pg");
  auto maria = t.tm->connect("maria");
  // Never enlisted: plain local transactions, one after the other (not atomic together).
  auto pg_local = t.tm->connect("pg");
  auto maria_local = t.tm->connect("maria");
  std::vector<double> xa_microseconds;
  std::vector<double> local_microseconds;
  std::uint64_t xa_updated = 0;
  std::uint64_t local_updated = 0;
  auto since = [](clock::time_point from) {
    return std::chrono::duration<double, std::micro>(clock::now() - from).count();
  };
  // Interleaved, so that both see the same machine load.
  for (int i = 0; i < warmup + runs; ++i) {
    auto started = clock::now();
    {
      auto tx = t.tm->begin();
      tx.enlist(*pg);
      tx.enlist(*maria);
      xa_updated += pg->exec(b.add_to_account(1, 1)).value().affected_rows;
      xa_updated += maria->exec(b.add_to_account(1, 1)).value().affected_rows;
      REQUIRE(tx.commit() == commit_outcome::committed);
    }
    double xa = since(started);

    started = clock::now();
    pg_local->exec("BEGIN").value();
    local_updated += pg_local->exec(b.add_to_account(2, 1)).value().affected_rows;
    pg_local->exec("COMMIT").value();
    maria_local->exec("START TRANSACTION").value();
    local_updated += maria_local->exec(b.add_to_account(2, 1)).value().affected_rows;
    maria_local->exec("COMMIT").value();
    double local = since(started);

    if (i >= warmup) {
      xa_microseconds.push_back(xa);
      local_microseconds.push_back(local);
    }
  }
  const double xa_median = median(xa_microseconds);
  const double local_median = median(local_microseconds);
  MESSAGE("median over " << runs << " runs: 2-branch xatm commit (PostgreSQL + MariaDB, one UPDATE each) " << xa_median
                         << " us; the same UPDATEs as two local commits " << local_median << " us; ratio "
                         << xa_median / local_median);
  CHECK(xa_updated == 2u * (warmup + runs));
  CHECK(local_updated == 2u * (warmup + runs));
  CHECK(b.pg_balance(1) == warmup + runs);
  CHECK(b.maria_balance(1) == warmup + runs);
  CHECK(b.pg_balance(2) == warmup + runs);
  CHECK(b.maria_balance(2) == warmup + runs);
}
