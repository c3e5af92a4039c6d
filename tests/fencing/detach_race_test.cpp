// fencing/detach_race_test.cpp: a MariaDB session prepares a branch that wrote a row and goes
// away (its client closes it, or an administrator kills it), and at once another connection
// resolves the branch through the adapter, as a phase-2 retry or recovery does, retrying while
// the adapter answers XA_RETRY. Afterwards the row must be committed (or gone) and nothing may
// hold it any more. An XA COMMIT that reaches the server after it listed the branch as
// detached but before InnoDB let go of the transaction answers OK and commits nothing: the
// transaction stays prepared, unlisted and holding its lock (docs/design.md section 6). The
// server must also survive the adapter's checks: reading InnoDB's monitor while the session was
// still being torn down crashed MariaDB 10.11 about once in a thousand rounds.
// Each round waits for the adapter's settle time (a quarter second), so 40 rounds per case in the
// suite; XATM_DETACH_ROUNDS sets another number for a longer local run. Needs the `servers`
// fixture, except for the first case, which reads sample InnoDB monitor output.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "mysql/innodb_status.h"
#include "support/adapter_checks.h"
#include "support/result_checks.h"
#include "support/servers.h"
#include "mysql/mysql.h"
#include "core/resource_manager.h"
#include "xatm/xid.h"

using namespace xatm;  // NOLINT(google-build-using-namespace): test file

namespace {

constexpr const char* table = "detach_race_items";
constexpr int default_rounds = 40;
// MariaDB's answer to a locking read that would have to wait, with NOWAIT.
constexpr int lock_wait_timeout = 1205;

int rounds() {
  if (const char* setting = std::getenv("XATM_DETACH_ROUNDS")) {
    int wanted = std::atoi(setting);
    if (wanted > 0) return wanted;
  }
  return default_rounds;
}

std::unique_ptr<resource_manager> open_rm(const std::string& name,
                                          const std::string& conninfo = test::servers().mysql) {
  return test::open_rm_with(&mysql::connect, conninfo, name);
}

enum class ending : std::uint8_t { closed, killed };
enum class resolution : std::uint8_t { commit, rollback };

// What the rounds of one case saw.
struct tally {
  int rounds = 0;
  long retries = 0;       // XA_RETRY answers before the branch was resolved
  int wrong_outcome = 0;  // the row not committed after a commit, or there after a rollback
  int still_locked = 0;   // something still held the row's lock after the resolve answered OK
  int still_listed = 0;   // XA RECOVER still listed the branch
};

bool listed(resource_manager& rm, const xid& branch) {
  auto found = rm.recover();
  if (!found.ok()) FAIL("recover: " << found.error().describe());
  for (const auto& ours : found.value().ours) {
    if (ours == branch) return true;
  }
  return false;
}

tally hammer(ending how, resolution what) {
  test::query_with(
      &mysql::connect,
      std::string("CREATE TABLE IF NOT EXISTS ") + table + " (id BIGINT PRIMARY KEY, note VARCHAR(64)) ENGINE=InnoDB",
      test::servers().mysql);
  auto resolver = open_rm("resolver");
  auto checker = open_rm("checker");
  std::unique_ptr<resource_manager> admin;
  if (how == ending::killed) admin = open_rm("admin", test::servers().mysql_root);

  tally seen;
  const int wanted = rounds();
  for (int round = 0; round < wanted; ++round) {
    auto branch = test::next_test_xid("detachrace", "1");
    auto preparer = open_rm("preparer");
    auto session = test::single_value(*preparer, "SELECT CONNECTION_ID()");
    auto id = std::to_string(test::write_and_end_in(*preparer, branch, table));
    auto voted = preparer->prepare(branch);
    REQUIRE_OK(voted);
    REQUIRE(voted.value() == vote::commit);
    if (how == ending::killed) test::run(*admin, "KILL CONNECTION " + session);
    preparer.reset();  // the client closes its end (after a kill: notices it is gone)

    // At once, and again within milliseconds after every XA_RETRY: the race is in the first
    // milliseconds.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    std::optional<result<void>> resolved;
    while (true) {
      resolved.emplace(what == resolution::commit ? resolver->commit(branch, false) : resolver->rollback(branch));
      if (resolved->ok() || resolved->error().code != xa_code::retry) break;
      ++seen.retries;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      if (std::chrono::steady_clock::now() > deadline) {
        FAIL("round " << round << ": still XA_RETRY after 30 s: " << resolved->error().describe());
      }
    }
    REQUIRE_OK(*resolved);
    ++seen.rounds;

    // A fresh snapshot of another session sees only committed rows.
    auto rows = test::single_value(*checker, std::string("SELECT count(*) FROM ") + table + " WHERE id = " + id);
    if (rows != (what == resolution::commit ? "1" : "0")) ++seen.wrong_outcome;
    // Whatever still holds the row (a prepared transaction InnoDB kept) makes this fail at once.
    auto lock = checker->exec(std::string("SELECT id FROM ") + table + " WHERE id = " + id + " FOR UPDATE NOWAIT");
    if (!lock.ok()) {
      if (lock.error().native_code != lock_wait_timeout) FAIL("locking read: " << lock.error().describe());
      ++seen.still_locked;
    }
    if (listed(*resolver, branch)) ++seen.still_listed;
  }
  return seen;
}

void report_and_check(const char* name, const tally& seen) {
  MESSAGE(std::string(name) << ": " << seen.rounds << " rounds, " << seen.retries << " XA_RETRY answers, "
                            << seen.wrong_outcome << " wrong outcomes, " << seen.still_locked << " rows still locked, "
                            << seen.still_listed << " branches still listed");
  CHECK(seen.rounds == rounds());
  CHECK(seen.wrong_outcome == 0);
  CHECK(seen.still_locked == 0);
  CHECK(seen.still_listed == 0);
}

}  // namespace

TEST_CASE("InnoDB's transaction list says whether a session still holds a transaction") {
  using mysql_detail::innodb_transaction_of;
  using mysql_detail::session_transaction;
  const std::string head =
      "=====================================\nINNODB MONITOR OUTPUT\n"
      "------------------------\nLATEST DETECTED DEADLOCK\n------------------------\n"
      "MariaDB thread id 7, OS thread handle 1, query id 5 localhost xatm updating\n"
      "------------\nTRANSACTIONS\n------------\nTrx id counter 2431\nHistory list length 3\n";
  const std::string list_header = "LIST OF TRANSACTIONS FOR EACH SESSION:\n";
  const std::string attached_57 =
      "---TRANSACTION 2429, ACTIVE (PREPARED) 1 sec\n"
      "1 lock struct(s), heap size 1128, 0 row lock(s), undo log entries 1\n"
      "MariaDB thread id 57, OS thread handle 131646444500672, query id 14491 localhost xatm\n"
      "SELECT 'MariaDB thread id 58, imitated'\n";
  const std::string detached =
      "---TRANSACTION 2425, ACTIVE (PREPARED) 49 sec recovered trx\n"
      "2 lock struct(s), heap size 1128, 1 row lock(s), undo log entries 1\n"
      "---TRANSACTION (0x7f), not started\n0 lock struct(s), heap size 1128, 0 row lock(s)\n";
  const std::string tail =
      "--------\nFILE I/O\n--------\nI/O thread 0 state: waiting\n"
      "----------------------------\nEND OF INNODB MONITOR OUTPUT\n"
      "============================\n";
  std::string whole = head + list_header + attached_57 + detached + tail;

  CHECK(innodb_transaction_of(whole, 57) == session_transaction::attached);
  CHECK(innodb_transaction_of(whole, 5) == session_transaction::none);    // a prefix of 57
  CHECK(innodb_transaction_of(whole, 570) == session_transaction::none);  // 57 is a prefix of it
  CHECK(innodb_transaction_of(whole, 7) == session_transaction::none);    // only in the deadlock section
  CHECK(innodb_transaction_of(whole, 58) == session_transaction::none);   // a query is not a thread line
  CHECK(innodb_transaction_of(head + list_header + detached + tail, 57) == session_transaction::none);
  CHECK(innodb_transaction_of(head + list_header + "MySQL thread id 57, OS thread handle 1\n" + tail, 57) ==
        session_transaction::attached);
  // A query that starts a line like a thread line: held, which only means "try again later".
  CHECK(innodb_transaction_of(head + list_header + attached_57 + "MariaDB thread id 58, x\n" + tail, 58) ==
        session_transaction::attached);

  // Output over 1 MiB: the beginning of the list or the end of the output is cut.
  CHECK(innodb_transaction_of(head + "... truncated...\n" + detached + tail, 57) == session_transaction::unknown);
  CHECK(innodb_transaction_of(head + list_header + detached, 57) == session_transaction::unknown);
  CHECK(innodb_transaction_of(head + list_header + detached + "--------\nFILE I/O\n--------\n", 57) ==
        session_transaction::unknown);
  CHECK(innodb_transaction_of("", 57) == session_transaction::unknown);
}

TEST_CASE("a branch whose session was closed is committed from another session, never lost") {
  report_and_check("closed, commit", hammer(ending::closed, resolution::commit));
}

TEST_CASE("a branch whose session was killed is committed from another session, never lost") {
  report_and_check("killed, commit", hammer(ending::killed, resolution::commit));
}

TEST_CASE("a branch whose session was closed is rolled back from another session, leaving nothing held") {
  report_and_check("closed, rollback", hammer(ending::closed, resolution::rollback));
}

TEST_CASE("a branch whose session was killed is rolled back from another session, leaving nothing held") {
  report_and_check("killed, rollback", hammer(ending::killed, resolution::rollback));
}
