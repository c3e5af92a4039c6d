// The participant's barrier (xatm/tcc.h, lib/tcc/barrier.cpp) on both real servers: every row
// of its table of outcomes, business code that refuses, and deliveries of the same step racing
// each other (and a try racing its cancel): the business change happens once, whatever arrives
// how often. Over HTTP, through a real separate process, is tests/tcc/wallet_http_test.cpp's.
#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/tm_fixture.h"
#include "xatm/error.h"
#include "xatm/tcc.h"
#include "xatm/transaction_manager.h"

using namespace xatm;  // NOLINT(google-build-using-namespace): test file

namespace {

// A participant's database: the barrier table and a table the business code writes one row to
// per step that ran, so that the test counts business effects.
struct participant_db {
  test::tm_fixture fixture;
  std::string rm;
  std::string dialect;
  tcc_barrier barrier;
  int next = 0;

  participant_db(std::string rm_name, std::string dialect_name)
      : fixture("barrier-" + rm_name, test::without_background_recovery()),
        rm(std::move(rm_name)),
        dialect(std::move(dialect_name)),
        barrier(*fixture.tm, rm) {
    auto db = fixture.tm->connect(rm);
    REQUIRE(db->exec(barrier_schema(dialect)).ok());
    REQUIRE(db->exec("CREATE TABLE IF NOT EXISTS barrier_effects (gtrid varchar(64) NOT NULL, branch int NOT NULL, "
                     "step varchar(8) NOT NULL)")
                .ok());
  }

  tcc_request request() {
    return tcc_request{fixture.tm_id + ".b." + std::to_string(++next), 1, "wallet", "account=a;amount=1", {}};
  }

  // Runs `step` through the barrier on a connection of its own; the business code records it.
  barrier_outcome deliver(tcc_step step, const tcc_request& request) {
    auto db = fixture.tm->connect(rm);
    return barrier.run(*db, step, request, [&](connection& c) {
      auto done = c.exec("INSERT INTO barrier_effects VALUES ('" + request.gtrid + "', " +
                         std::to_string(request.branch) + ", '" + tcc_step_name(step) + "')");
      if (!done) throw_failure(done.error());
    });
  }

  // How many times the business code of `step` committed for the request's branch.
  int effects(const tcc_request& request, tcc_step step) { return count("barrier_effects", request, step); }
  // Barrier rows of the branch for `step`.
  int barrier_rows(const tcc_request& request, tcc_step step) { return count("xatm_tcc_barrier", request, step); }

 private:
  int count(const char* table, const tcc_request& request, tcc_step step) {
    auto db = fixture.tm->connect(rm);
    auto rows = db->exec(std::string("SELECT count(*) FROM ") + table + " WHERE gtrid = '" + request.gtrid +
                         "' AND branch = " + std::to_string(request.branch) + " AND step = '" + tcc_step_name(step) +
                         "'");
    REQUIRE(rows.ok());
    return std::stoi(rows.value().rows.at(0).at(0).value());
  }
};

// Both servers, the same checks.
std::vector<std::pair<std::string, std::string>> dialects() { return {{"pg", "postgresql"}, {"maria", "mariadb"}}; }

// `copies` threads deliver `step` at once; answers the outcomes by kind.
std::map<barrier_outcome, int> deliver_at_once(participant_db& p, tcc_step step, const tcc_request& request,
                                               int copies) {
  std::vector<std::thread> threads;
  std::vector<barrier_outcome> outcomes(copies);
  std::atomic<int> errors{0};
  std::atomic<bool> go{false};
  for (int i = 0; i < copies; ++i) {
    threads.emplace_back([&, i] {
      while (!go.load()) std::this_thread::yield();
      try {
        outcomes[i] = p.deliver(step, request);
      } catch (const std::exception& e) {
        MESSAGE("delivery failed: " << std::string(e.what()));
        ++errors;
      }
    });
  }
  go = true;
  for (auto& thread : threads) thread.join();
  REQUIRE(errors.load() == 0);
  std::map<barrier_outcome, int> by_kind;
  for (auto outcome : outcomes) ++by_kind[outcome];
  return by_kind;
}

}  // namespace

TEST_CASE("try, confirm and cancel run once each; duplicates do nothing; the other step conflicts") {
  for (const auto& [rm, dialect] : dialects()) {
    CAPTURE(rm);
    participant_db p(rm, dialect);

    auto confirmed = p.request();
    CHECK(p.deliver(tcc_step::try_, confirmed) == barrier_outcome::ran);
    CHECK(p.deliver(tcc_step::try_, confirmed) == barrier_outcome::duplicate);
    CHECK(p.deliver(tcc_step::confirm, confirmed) == barrier_outcome::ran);
    for (int again = 0; again < 4; ++again) CHECK(p.deliver(tcc_step::confirm, confirmed) == barrier_outcome::duplicate);
    CHECK(p.deliver(tcc_step::cancel, confirmed) == barrier_outcome::conflict);
    CHECK(p.effects(confirmed, tcc_step::try_) == 1);
    CHECK(p.effects(confirmed, tcc_step::confirm) == 1);
    CHECK(p.effects(confirmed, tcc_step::cancel) == 0);

    auto cancelled = p.request();
    CHECK(p.deliver(tcc_step::try_, cancelled) == barrier_outcome::ran);
    CHECK(p.deliver(tcc_step::cancel, cancelled) == barrier_outcome::ran);
    for (int again = 0; again < 4; ++again) CHECK(p.deliver(tcc_step::cancel, cancelled) == barrier_outcome::duplicate);
    CHECK(p.deliver(tcc_step::confirm, cancelled) == barrier_outcome::conflict);
    CHECK(p.deliver(tcc_step::try_, cancelled) == barrier_outcome::duplicate);  // it did run, before the cancel
    CHECK(p.effects(cancelled, tcc_step::cancel) == 1);
    CHECK(p.effects(cancelled, tcc_step::confirm) == 0);

    // A confirm without a try (misdirected, or a coordinator's mistake): nothing written, and a
    // failure rather than a refusal, so that the coordinator keeps the branch.
    auto never_tried = p.request();
    CHECK(p.deliver(tcc_step::confirm, never_tried) == barrier_outcome::not_tried);
    CHECK(answer_for(barrier_outcome::not_tried) == tcc_answer::failed);
    CHECK(p.barrier_rows(never_tried, tcc_step::confirm) == 0);
    CHECK(answer_for(barrier_outcome::conflict) == tcc_answer::refused);
    CHECK(answer_for(barrier_outcome::duplicate) == tcc_answer::done);
  }
}

TEST_CASE("a cancel without a try is recorded and does nothing; the late try is refused (no hanging)") {
  for (const auto& [rm, dialect] : dialects()) {
    CAPTURE(rm);
    participant_db p(rm, dialect);
    auto request = p.request();
    CHECK(p.deliver(tcc_step::cancel, request) == barrier_outcome::empty_cancel);
    CHECK(p.effects(request, tcc_step::cancel) == 0);
    CHECK(p.barrier_rows(request, tcc_step::try_) == 1);  // the fence
    CHECK(p.deliver(tcc_step::cancel, request) == barrier_outcome::duplicate);
    CHECK(p.deliver(tcc_step::try_, request) == barrier_outcome::refused_after_cancel);
    CHECK(p.effects(request, tcc_step::try_) == 0);
    CHECK(p.deliver(tcc_step::confirm, request) == barrier_outcome::conflict);
    CHECK(answer_for(barrier_outcome::refused_after_cancel) == tcc_answer::refused);
  }
}

TEST_CASE("business code that throws leaves no barrier row, so the step may come again") {
  for (const auto& [rm, dialect] : dialects()) {
    CAPTURE(rm);
    participant_db p(rm, dialect);
    auto request = p.request();
    auto db = p.fixture.tm->connect(rm);
    CHECK_THROWS_WITH_AS(p.barrier.run(*db, tcc_step::try_, request,
                                       [](connection& c) {
                                         REQUIRE(c.exec("INSERT INTO barrier_effects VALUES ('x', 1, 'try')").ok());
                                         throw std::runtime_error("insufficient funds");
                                       }),
                         "insufficient funds", std::runtime_error);
    CHECK(p.barrier_rows(request, tcc_step::try_) == 0);
    CHECK(p.effects(request, tcc_step::try_) == 0);
    CHECK(p.deliver(tcc_step::try_, request) == barrier_outcome::ran);
    CHECK(p.effects(request, tcc_step::try_) == 1);
  }
}

TEST_CASE("the same step delivered five times at once runs once") {
  for (const auto& [rm, dialect] : dialects()) {
    CAPTURE(rm);
    participant_db p(rm, dialect);
    for (int round = 0; round < 3; ++round) {
      auto request = p.request();
      auto tries = deliver_at_once(p, tcc_step::try_, request, 5);
      CHECK(tries[barrier_outcome::ran] == 1);
      CHECK(tries[barrier_outcome::duplicate] == 4);
      auto confirms = deliver_at_once(p, tcc_step::confirm, request, 5);
      CHECK(confirms[barrier_outcome::ran] == 1);
      CHECK(confirms[barrier_outcome::duplicate] == 4);
      CHECK(p.effects(request, tcc_step::try_) == 1);
      CHECK(p.effects(request, tcc_step::confirm) == 1);

      auto released = p.request();
      REQUIRE(p.deliver(tcc_step::try_, released) == barrier_outcome::ran);
      auto cancels = deliver_at_once(p, tcc_step::cancel, released, 5);
      CHECK(cancels[barrier_outcome::ran] == 1);
      CHECK(cancels[barrier_outcome::duplicate] == 4);
      CHECK(p.effects(released, tcc_step::cancel) == 1);

      auto empty = p.request();
      auto empty_cancels = deliver_at_once(p, tcc_step::cancel, empty, 5);
      CHECK(empty_cancels[barrier_outcome::empty_cancel] == 1);
      CHECK(empty_cancels[barrier_outcome::duplicate] == 4);
    }
  }
}

TEST_CASE("tries of different branches at once all run (new gtrids share the index's last gap)") {
  for (const auto& [rm, dialect] : dialects()) {
    CAPTURE(rm);
    participant_db p(rm, dialect);
    std::vector<tcc_request> requests;
    for (int i = 0; i < 8; ++i) requests.push_back(p.request());
    std::vector<std::thread> threads;
    std::atomic<int> ran{0};
    std::atomic<bool> go{false};
    for (const auto& request : requests) {
      threads.emplace_back([&p, &ran, &go, request] {
        while (!go.load()) std::this_thread::yield();
        try {
          ran += p.deliver(tcc_step::try_, request) == barrier_outcome::ran ? 1 : 0;
        } catch (const std::exception& e) {
          MESSAGE("try failed: " << std::string(e.what()));
        }
      });
    }
    go = true;
    for (auto& thread : threads) thread.join();
    CHECK(ran.load() == 8);
  }
}

TEST_CASE("a try racing its cancel: either the try ran and the cancel released it, or the try is refused") {
  for (const auto& [rm, dialect] : dialects()) {
    CAPTURE(rm);
    participant_db p(rm, dialect);
    std::map<barrier_outcome, int> seen;
    for (int round = 0; round < 10; ++round) {
      auto request = p.request();
      barrier_outcome tried{};
      barrier_outcome cancelled{};
      std::atomic<bool> go{false};
      std::thread trier([&] {
        while (!go.load()) std::this_thread::yield();
        tried = p.deliver(tcc_step::try_, request);
      });
      std::thread canceller([&] {
        while (!go.load()) std::this_thread::yield();
        cancelled = p.deliver(tcc_step::cancel, request);
      });
      go = true;
      trier.join();
      canceller.join();
      ++seen[cancelled];
      if (cancelled == barrier_outcome::ran) {
        CHECK(tried == barrier_outcome::ran);
        CHECK(p.effects(request, tcc_step::cancel) == 1);
      } else {
        CHECK(cancelled == barrier_outcome::empty_cancel);
        CHECK(tried == barrier_outcome::refused_after_cancel);
        CHECK(p.effects(request, tcc_step::try_) == 0);
      }
      // Either way nothing stays reserved: every try that ran was released.
      CHECK(p.effects(request, tcc_step::try_) == p.effects(request, tcc_step::cancel));
    }
    MESSAGE(rm << ": cancel ran after the try " << seen[barrier_outcome::ran] << " times, fenced it off "
               << seen[barrier_outcome::empty_cancel] << " times");
  }
}

TEST_CASE("bad requests are refused before anything reaches the database") {
  participant_db p("pg", "postgresql");
  auto db = p.fixture.tm->connect("pg");
  auto no_business = [](connection&) { FAIL("the business code must not run"); };
  for (const std::string& gtrid : {std::string(), std::string("a'; DROP TABLE x; --"), std::string(65, 'g')}) {
    CHECK_THROWS_AS(p.barrier.run(*db, tcc_step::try_, tcc_request{gtrid, 1, "wallet", "", {}}, no_business),
                    invalid_argument_error);
  }
  CHECK_THROWS_AS(p.barrier.run(*db, tcc_step::try_, tcc_request{"g.1", 0, "wallet", "", {}}, no_business),
                  invalid_argument_error);
  CHECK_THROWS_AS(p.barrier.run(*db, tcc_step::try_, tcc_request{"g.1", 2147483648U, "wallet", "", {}}, no_business),
                  invalid_argument_error);
  auto maria = p.fixture.tm->connect("maria");
  CHECK_THROWS_AS(p.barrier.run(*maria, tcc_step::try_, p.request(), no_business), configuration_error);
  CHECK_THROWS_AS(barrier_schema("oracle"), invalid_argument_error);
}

TEST_CASE("a step that names another database's identity does nothing here") {
  for (const auto& [rm, dialect] : dialects()) {
    CAPTURE(rm);
    participant_db p(rm, dialect);
    auto db = p.fixture.tm->connect(rm);
    const std::string own = p.barrier.identity(*db);
    CHECK(own.rfind("db-", 0) == 0);
    auto request = p.request();
    request.identity = "db-somewhere-else";
    for (tcc_step step : {tcc_step::try_, tcc_step::confirm, tcc_step::cancel}) {
      CHECK(p.barrier.run(*db, step, request, [](connection&) { FAIL("the business code must not run"); }) ==
            barrier_outcome::wrong_database);
      CHECK(p.barrier_rows(request, step) == 0);
    }
    CHECK(answer_for(barrier_outcome::wrong_database) == tcc_answer::failed);
    request.identity = own;
    CHECK(p.deliver(tcc_step::try_, request) == barrier_outcome::ran);
  }
}
