// The coordinator's side of TCC branches (xatm/tcc.h, docs/tcc.md) against the real servers, with
// an in-process participant whose answers each test scripts: the branch is in the log before its
// try, a refused or failed try rolls everything back and cancels, commit() logs the decision and
// confirms, a participant that is down past the window leaves completion_pending and recovery
// confirms it later, a refused confirm is a heuristic outcome, and the records go once final.
// A real participant in another process over HTTP is tests/tcc/wallet_http_test.cpp's; crashes
// are tests/crash/tcc_crash_test.cpp's.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "sqlite/log_format.h"
#include "support/servers.h"
#include "support/tm_fixture.h"
#include "xatm/error.h"
#include "xatm/recovery.h"
#include "xatm/tcc.h"
#include "xatm/transaction_manager.h"

using namespace xatm;  // NOLINT(google-build-using-namespace): test file

namespace {

// A participant whose answer to each step the test sets, counting what it was asked.
class scripted_participant final : public tcc_participant {
 public:
  tcc_reply call(tcc_step step, const tcc_request& request, std::chrono::milliseconds /*timeout*/) override {
    std::lock_guard lock(mutex_);
    calls_.push_back({step, request});
    auto found = answers_.find(step);
    return found == answers_.end() ? tcc_reply{tcc_answer::done, "", identity_} : found->second;
  }
  void answer(tcc_step step, tcc_answer answer, std::string detail = "scripted") {
    std::lock_guard lock(mutex_);
    answers_[step] = tcc_reply{answer, std::move(detail), identity_};
  }
  // The database identity every later answer tells (as tcc_barrier's participants do).
  void tell_identity(std::string identity) {
    std::lock_guard lock(mutex_);
    identity_ = std::move(identity);
    for (auto& [step, reply] : answers_) reply.identity = identity_;
  }
  int count(tcc_step step) {
    std::lock_guard lock(mutex_);
    int n = 0;
    for (const auto& call : calls_) n += call.step == step ? 1 : 0;
    return n;
  }
  tcc_request last(tcc_step step) {
    std::lock_guard lock(mutex_);
    for (auto call = calls_.rbegin(); call != calls_.rend(); ++call) {
      if (call->step == step) return call->request;
    }
    FAIL("no " << tcc_step_name(step) << " was sent");
    return {};
  }

 private:
  struct recorded {
    tcc_step step;
    tcc_request request;
  };
  std::mutex mutex_;
  std::vector<recorded> calls_;
  std::map<tcc_step, tcc_reply> answers_;
  std::string identity_;
};

struct tcc_tm {
  test::tm_fixture fixture;
  std::shared_ptr<scripted_participant> wallet = std::make_shared<scripted_participant>();

  explicit tcc_tm(const std::string& name, tm_options options = {})
      : fixture(name, [&] {
          options.commit_retry_window = std::chrono::milliseconds(300);
          return test::without_background_recovery(options);
        }()) {
    fixture.tm->register_tcc("wallet", wallet);
    create_orders();
  }

  void create_orders() {
    auto pg = fixture.tm->connect("pg");
    REQUIRE(pg->exec("CREATE TABLE IF NOT EXISTS tcc_orders (id TEXT PRIMARY KEY)").ok());
  }
  void reopen() {
    fixture.reopen();
    fixture.tm->register_tcc("wallet", wallet);
  }
  // TCC branch records still in the log.
  std::size_t records() {
    auto branches = detail::read_tcc_branches(fixture.log_path.string(), "");
    REQUIRE(branches.ok());
    return branches.value().size();
  }
  std::size_t orders(const std::string& id) {
    auto pg = fixture.tm->connect("pg");
    auto rows = pg->exec("SELECT count(*) FROM tcc_orders WHERE id = '" + id + "'");
    REQUIRE(rows.ok());
    return std::stoul(rows.value().rows.at(0).at(0).value());
  }
};

// What `work` threw as an E (the test fails if it threw nothing).
template <class E, class Work>
std::string message_of(Work&& work) {
  try {
    work();
  } catch (const E& e) {
    return e.what();
  }
  FAIL("nothing was thrown");
  return {};
}

// A transaction of one TCC branch (payload "x"), committed: checks commit()'s outcome and
// answers the gtrid.
std::string commit_one_tcc_branch(test::tm_fixture& fixture, commit_outcome expected) {
  auto gt = fixture.tm->begin();
  gt.enlist_tcc("wallet", "x");
  CHECK(gt.commit() == expected);
  return gt.gtrid();
}

// An order row on PostgreSQL and a TCC branch: the usual shape.
std::string order_with_tcc(global_transaction& gt, connection& pg, std::uint32_t* number) {
  gt.enlist(pg);
  REQUIRE(pg.exec("INSERT INTO tcc_orders VALUES ('" + gt.gtrid() + "')").ok());
  *number = gt.enlist_tcc("wallet", "account=alice;amount=5");
  return gt.gtrid();
}

}  // namespace

TEST_CASE("a TCC branch is recorded before its try, confirmed after the logged decision, then forgotten") {
  tcc_tm t("tcc-commit");
  auto pg = t.fixture.tm->connect("pg");
  auto gt = std::make_unique<global_transaction>(t.fixture.tm->begin());
  std::uint32_t number = 0;
  auto gtrid = order_with_tcc(*gt, *pg, &number);
  CHECK(number == 1);
  CHECK(t.records() == 1);  // before commit: in the log since before the try
  CHECK(t.wallet->count(tcc_step::try_) == 1);
  CHECK(t.wallet->last(tcc_step::try_).payload == "account=alice;amount=5");
  CHECK(t.wallet->last(tcc_step::try_).gtrid == gtrid);

  const auto logged_before = t.fixture.tm->statistics().decisions_logged;
  CHECK(gt->commit() == commit_outcome::committed);
  gt.reset();
  // One XA writer would be a one-phase commit; with a TCC branch the decision is logged.
  CHECK(t.fixture.tm->statistics().decisions_logged == logged_before + 1);
  CHECK(t.wallet->count(tcc_step::confirm) == 1);
  CHECK(t.wallet->count(tcc_step::cancel) == 0);
  CHECK(t.wallet->last(tcc_step::confirm).branch == 1);
  CHECK(t.orders(gtrid) == 1);
  t.fixture.close();  // writes the queued completion
  t.fixture.reopen();
  CHECK(t.records() == 0);
}

TEST_CASE("a transaction of TCC branches only still logs its decision before confirming") {
  tcc_tm t("tcc-only");
  auto gt = t.fixture.tm->begin();
  CHECK(gt.enlist_tcc("wallet", "a") == 1);
  CHECK(gt.enlist_tcc("wallet", "b") == 2);
  const auto logged_before = t.fixture.tm->statistics().decisions_logged;
  CHECK(gt.commit() == commit_outcome::committed);
  CHECK(t.fixture.tm->statistics().decisions_logged == logged_before + 1);
  CHECK(t.wallet->count(tcc_step::confirm) == 2);
}

TEST_CASE("a rollback cancels the TCC branch and rolls back the XA branch") {
  tcc_tm t("tcc-rollback");
  auto pg = t.fixture.tm->connect("pg");
  std::string gtrid;
  SUBCASE("explicit rollback") {
    auto gt = t.fixture.tm->begin();
    std::uint32_t number = 0;
    gtrid = order_with_tcc(gt, *pg, &number);
    gt.rollback();
  }
  SUBCASE("destroyed unfinished") {
    auto gt = t.fixture.tm->begin();
    std::uint32_t number = 0;
    gtrid = order_with_tcc(gt, *pg, &number);
  }
  CHECK(t.wallet->count(tcc_step::cancel) == 1);
  CHECK(t.wallet->count(tcc_step::confirm) == 0);
  CHECK(t.orders(gtrid) == 0);
  t.fixture.close();
  t.reopen();
  CHECK(t.records() == 0);
}

TEST_CASE("a try that is refused or fails rolls everything back and still sends a cancel") {
  for (tcc_answer answer : {tcc_answer::refused, tcc_answer::failed}) {
    CAPTURE(tcc_answer_name(answer));
    tcc_tm t("tcc-try-no");
    t.wallet->answer(tcc_step::try_, answer, "insufficient funds");
    auto pg = t.fixture.tm->connect("pg");
    auto gt = t.fixture.tm->begin();
    gt.enlist(*pg);
    REQUIRE(pg->exec("INSERT INTO tcc_orders VALUES ('" + gt.gtrid() + "')").ok());
    const std::string why = message_of<rolled_back_error>([&] { gt.enlist_tcc("wallet", "account=bob;amount=500"); });
    CHECK(why.find("insufficient funds") != std::string::npos);
    CHECK(why.find("wallet") != std::string::npos);
    CHECK(gt.finished());
    // A failed try may have reserved (its answer was lost): cancel; a refused one costs an empty cancel.
    CHECK(t.wallet->count(tcc_step::cancel) == 1);
    CHECK(t.orders(gt.gtrid()) == 0);
    CHECK_THROWS_AS(gt.commit(), protocol_error);
  }
}

TEST_CASE("a participant down past the commit window: completion_pending, then recovery confirms") {
  tcc_tm t("tcc-pending");
  t.wallet->answer(tcc_step::confirm, tcc_answer::failed, "connection refused");
  auto pg = t.fixture.tm->connect("pg");
  std::string gtrid;
  {
    auto gt = t.fixture.tm->begin();
    std::uint32_t number = 0;
    gtrid = order_with_tcc(gt, *pg, &number);
    CHECK(gt.commit() == commit_outcome::completion_pending);
  }
  CHECK(t.orders(gtrid) == 1);  // the XA branch committed
  CHECK(t.wallet->count(tcc_step::confirm) >= 2);  // retried within the window

  // Still down: recovery keeps the decision and the record.
  auto still_down = t.fixture.tm->recover_now();
  CHECK(still_down.unresolved());
  CHECK(std::find(still_down.completed.begin(), still_down.completed.end(), gtrid) == still_down.completed.end());

  t.wallet->answer(tcc_step::confirm, tcc_answer::done);
  auto back = t.fixture.tm->recover_now();
  bool confirmed = false;
  for (const auto& item : back.items) {
    if (item.gtrid == gtrid && item.rm_name == "wallet") {
      confirmed = item.result == recovery_result::committed && item.action == "confirm";
    }
  }
  CHECK(confirmed);
  CHECK(std::find(back.completed.begin(), back.completed.end(), gtrid) != back.completed.end());
  CHECK(t.wallet->count(tcc_step::cancel) == 0);
  t.fixture.close();
  t.reopen();
  CHECK(t.records() == 0);
}

TEST_CASE("a cancel that fails is finished by recovery after a restart, with no decision: cancel, never confirm") {
  tcc_tm t("tcc-cancel-later");
  t.wallet->answer(tcc_step::cancel, tcc_answer::failed, "timeout");
  std::string gtrid;
  {
    auto gt = t.fixture.tm->begin();
    gt.enlist_tcc("wallet", "x");
    gtrid = gt.gtrid();
    gt.rollback();
  }
  CHECK(t.records() == 1);
  t.fixture.close();
  t.wallet->answer(tcc_step::cancel, tcc_answer::done);
  const int cancels_before = t.wallet->count(tcc_step::cancel);
  t.reopen();
  t.fixture.tm->begin().rollback();  // the first begin() recovers the earlier incarnation
  CHECK(t.wallet->count(tcc_step::cancel) == cancels_before + 1);
  CHECK(t.wallet->count(tcc_step::confirm) == 0);
  CHECK(t.wallet->last(tcc_step::cancel).gtrid == gtrid);
  t.fixture.close();
  t.reopen();
  CHECK(t.records() == 0);
}

TEST_CASE("a refused confirm is a heuristic outcome") {
  tcc_tm t("tcc-heuristic");
  t.wallet->answer(tcc_step::confirm, tcc_answer::refused, "already cancelled");
  auto gt = t.fixture.tm->begin();
  gt.enlist_tcc("wallet", "x");
  CHECK_THROWS_AS(gt.commit(), heuristic_error);
}

TEST_CASE("TCC branches are refused where they cannot be decided, before anything is sent") {
  tcc_tm t("tcc-refusals");
  SUBCASE("an unknown participant") {
    auto gt = t.fixture.tm->begin();
    CHECK_THROWS_AS(gt.enlist_tcc("nobody", "x"), configuration_error);
  }
  SUBCASE("a payload over 64 KiB") {
    auto gt = t.fixture.tm->begin();
    CHECK_THROWS_AS(gt.enlist_tcc("wallet", std::string(64 * 1024 + 1, 'x')), invalid_argument_error);
  }
  SUBCASE("another protocol than two-phase") {
    for (auto protocol : {commit_protocol::three_phase, commit_protocol::commit_marker}) {
      auto gt = t.fixture.tm->begin(protocol);
      CHECK_THROWS_AS(gt.enlist_tcc("wallet", "x"), configuration_error);
    }
  }
  SUBCASE("a name taken by an RM, or a participant twice") {
    CHECK_THROWS_AS(t.fixture.tm->register_tcc("pg", t.wallet), configuration_error);
    CHECK_THROWS_AS(t.fixture.tm->register_tcc("wallet", t.wallet), configuration_error);
    CHECK_THROWS_AS(t.fixture.tm->register_tcc("bad name", t.wallet), configuration_error);
    CHECK_THROWS_AS(t.fixture.tm->register_tcc("empty", nullptr), configuration_error);
  }
  CHECK(t.wallet->count(tcc_step::try_) == 0);
  CHECK(t.records() == 0);
}

TEST_CASE("the first try pins the participant's database; later steps name it; another database is refused") {
  tcc_tm t("tcc-identity");
  t.wallet->tell_identity("db-wallet-a");
  {
    auto gt = t.fixture.tm->begin();
    gt.enlist_tcc("wallet", "x");
    CHECK(t.wallet->last(tcc_step::try_).identity.empty());  // nothing pinned yet
    CHECK(gt.commit() == commit_outcome::committed);
    CHECK(t.wallet->last(tcc_step::confirm).identity == "db-wallet-a");
  }
  {
    auto gt = t.fixture.tm->begin();
    gt.enlist_tcc("wallet", "x");
    CHECK(t.wallet->last(tcc_step::try_).identity == "db-wallet-a");  // the pin, from now on
    gt.rollback();
    CHECK(t.wallet->last(tcc_step::cancel).identity == "db-wallet-a");
  }
  // The participant's address now reaches another wallet (one that ignores the expectation):
  // the transaction is rolled back and its branch cancelled, naming both databases.
  t.wallet->tell_identity("db-wallet-b");
  const int cancels = t.wallet->count(tcc_step::cancel);
  auto gt = t.fixture.tm->begin();
  const std::string why = message_of<configuration_error>([&] { gt.enlist_tcc("wallet", "x"); });
  CHECK(why.find("db-wallet-b") != std::string::npos);
  CHECK(why.find("db-wallet-a") != std::string::npos);
  CHECK(gt.finished());
  CHECK(t.wallet->count(tcc_step::cancel) == cancels + 1);
}

TEST_CASE("recovery names the pinned database, and an answer from another one resolves nothing") {
  tcc_tm t("tcc-identity-recovery");
  t.wallet->tell_identity("db-wallet-a");
  t.wallet->answer(tcc_step::confirm, tcc_answer::failed, "down");
  const std::string gtrid = commit_one_tcc_branch(t.fixture, commit_outcome::completion_pending);
  // Back, but answering from another database: done from there is no answer.
  t.wallet->tell_identity("db-wallet-b");
  t.wallet->answer(tcc_step::confirm, tcc_answer::done);
  auto wrong = t.fixture.tm->recover_now();
  CHECK(wrong.unresolved());
  CHECK(t.wallet->last(tcc_step::confirm).identity == "db-wallet-a");
  CHECK(t.records() == 1);
  t.wallet->tell_identity("db-wallet-a");
  auto right = t.fixture.tm->recover_now();
  CHECK_FALSE(right.unresolved());
  CHECK(std::find(right.completed.begin(), right.completed.end(), gtrid) != right.completed.end());
}

TEST_CASE("a refused cancel is reported once and is final: nothing is left for recovery") {
  tcc_tm t("tcc-refused-cancel");
  t.wallet->answer(tcc_step::cancel, tcc_answer::refused, "conflict");
  {
    auto gt = t.fixture.tm->begin();
    gt.enlist_tcc("wallet", "x");
    gt.rollback();
  }
  t.fixture.close();  // writes the queued completion; the reopened TM's recovery finds nothing
  t.reopen();
  CHECK(t.records() == 0);
  const int cancels = t.wallet->count(tcc_step::cancel);
  auto report = t.fixture.tm->recover_now();
  CHECK_FALSE(report.unresolved());
  CHECK_FALSE(report.heuristic());
  CHECK(t.wallet->count(tcc_step::cancel) == cancels);
}

TEST_CASE("recovery reports a refused confirm as heuristic once, then forgets the decision") {
  tcc_tm t("tcc-refused-recovery");
  t.wallet->answer(tcc_step::confirm, tcc_answer::failed, "down");
  const std::string gtrid = commit_one_tcc_branch(t.fixture, commit_outcome::completion_pending);
  t.wallet->answer(tcc_step::confirm, tcc_answer::refused, "conflict");
  auto first = t.fixture.tm->recover_now();
  CHECK(first.heuristic());
  t.fixture.close();  // writes the queued completion
  t.reopen();
  auto second = t.fixture.tm->recover_now();
  CHECK_FALSE(second.heuristic());
  CHECK_FALSE(second.unresolved());
  for (const auto& item : second.items) CHECK(item.gtrid != gtrid);
  CHECK(t.records() == 0);
}

TEST_CASE("a try answered by another database's barrier did nothing there: no cancel is owed, nothing stays") {
  tcc_tm t("tcc-identity-elsewhere");
  t.wallet->tell_identity("db-wallet-a");
  commit_one_tcc_branch(t.fixture, commit_outcome::committed);
  // Now the address reaches wallet b, whose barrier answers wrong_database (a failure).
  t.wallet->tell_identity("db-wallet-b");
  t.wallet->answer(tcc_step::try_, tcc_answer::failed, "wrong_database");
  const int cancels = t.wallet->count(tcc_step::cancel);
  {
    auto gt = t.fixture.tm->begin();
    const std::string why = message_of<configuration_error>([&] { gt.enlist_tcc("wallet", "x"); });
    CHECK(why.find("--repin wallet") != std::string::npos);
  }
  CHECK(t.wallet->count(tcc_step::cancel) == cancels);
  t.fixture.close();
  t.reopen();
  CHECK(t.records() == 0);  // nothing for recovery to chase
}
