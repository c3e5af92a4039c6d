// The wallet service (examples/wallet_service.cpp) as a real separate process, once on PostgreSQL
// and once on MariaDB, driven through make_http_participant(): the HTTP client a coordinator uses.
// Each case checks the account row and the barrier table (xatm_tcc_barrier) from a connection of
// the test's own, so that what the wallet answers is held against what its database holds:
//  - a confirm or cancel delivered many times, one after another or all at once, acts once;
//  - a cancel without a try is recorded and the late try is refused (no hanging reservation),
//    also when the try really arrives late (XATM_WALLET_DELAY_TRY_MS);
//  - a confirm after the cancel and a cancel after the confirm are refused and change nothing;
//  - a try the business refuses reserves nothing and leaves no barrier row, so it may come again;
//  - bad input is answered 400 before the database is touched; bad URLs are refused at once;
//  - a wallet that is stopped or killed makes call() answer failed; once it is back, the pending
//    confirm takes the money once.
// The coordinator's side with a scripted participant is tests/tcc/tcc_coordinator_test.cpp's.
// Needs the `servers` fixture.
#include <doctest/doctest.h>
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <latch>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/adapter_checks.h"
#include "support/child_process.h"
#include "support/observers.h"
#include "support/servers.h"
#include "support/temp_dir.h"
#include "xatm/error.h"
#include "xatm/tcc.h"

#ifndef XATM_WALLET_BIN
#error "XATM_WALLET_BIN must name the xatm-example-wallet binary (set by tests/CMakeLists.txt)"
#endif

using namespace xatm;  // NOLINT(google-build-using-namespace): test file
using namespace std::chrono_literals;

namespace {

// Bounds for waiting on the wallet, generous for a loaded machine. No case measures time.
constexpr auto call_timeout = std::chrono::milliseconds(10s);
constexpr auto start_deadline = 60s;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The test passwords, as they are and by a fragment no other text holds (catches escaped
// spellings), in nothing the wallet prints.
void check_no_password(const std::string& text) {
  for (const std::string& secret : {std::string(test::mysql_password), std::string(test::pg_password),
                                    std::string("w0rd"), std::string("s3cr3t")}) {
    CHECK_MESSAGE(!contains(text, secret), "the wallet printed a password");
  }
}

// "wallettest.<pid>.<n>": unique among cases, runs and test processes.
std::string next_gtrid() {
  static int counter = 0;
  return "wallettest." + std::to_string(::getpid()) + "." + std::to_string(++counter);
}
std::string next_account() {
  static int counter = 0;
  return "acct-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

tcc_request request_for(const std::string& gtrid, const std::string& account, long amount) {
  return {gtrid, 1, "wallet", "account=" + account + ";amount=" + std::to_string(amount), {}};
}

struct account_row {
  long long balance = 0;
  long long reserved = 0;
  bool operator==(const account_row&) const = default;
};
doctest::String toString(const account_row& row) {
  return ("balance=" + std::to_string(row.balance) + " reserved=" + std::to_string(row.reserved)).c_str();
}

// The database a wallet runs on: its --db value, and how the test looks at it.
struct database {
  std::string dialect;  // "postgresql" or "mariadb"
  std::string conninfo;
};
database postgresql_database() { return {"postgresql", test::servers().pg}; }
database mariadb_database() { return {"mariadb", test::servers().mysql}; }

// One wallet process (restartable on its state dir and port), its participant, and the test's
// own view of its database.
class wallet_under_test {
 public:
  explicit wallet_under_test(database db, std::vector<std::string> env = {})
      : db_(std::move(db)), env_(std::move(env)) {
    observer_ = db_.dialect == "postgresql" ? test::observe_pg() : test::observe_maria();
    start();
  }

  // Starts the wallet and waits for its `wallet listening on HOST:PORT` line. The first start
  // takes any free port; a restart takes the same one, as a redeployed service keeps its URL.
  void start() {
    const bool not_running = !process_ || process_->poll().has_value();
    REQUIRE_MESSAGE(not_running, "the wallet is still running");
    ++runs_;
    const std::string log = "wallet-" + std::to_string(runs_);
    process_ = std::make_unique<test::child_process>(
        std::vector<std::string>{XATM_WALLET_BIN, "--db", db_.dialect + ":" + db_.conninfo, "--state-dir",
                                 dir_.file("state"), "--host", "127.0.0.1", "--port", std::to_string(port_)},
        env_, dir_.file(log + ".out"), dir_.file(log + ".err"));
    const std::string prefix = "wallet listening on 127.0.0.1:";
    const auto deadline = std::chrono::steady_clock::now() + start_deadline;
    std::string out;
    while ((out = process_->out()).find('\n') == std::string::npos) {
      if (auto ended = process_->poll()) FAIL("the wallet " << ended->describe() << ":\n" << process_->err());
      if (std::chrono::steady_clock::now() > deadline) FAIL("the wallet did not listen:\n" << process_->err());
      std::this_thread::sleep_for(20ms);
    }
    const std::string line = out.substr(0, out.find('\n'));
    REQUIRE_MESSAGE(line.starts_with(prefix), "first line: " << line);
    const int port = std::stoi(line.substr(prefix.size()));
    if (port_ != 0) REQUIRE(port == port_);
    port_ = port;
    participant_ = make_http_participant("http://127.0.0.1:" + std::to_string(port_) + "/");
  }
  void kill() { static_cast<void>(process_->kill()); }
  void pause() const { REQUIRE(::kill(process_->pid(), SIGSTOP) == 0); }
  void resume() const { REQUIRE(::kill(process_->pid(), SIGCONT) == 0); }
  // SIGTERM, and the exit status of a clean shutdown.
  test::exit_status stop() {
    REQUIRE(::kill(process_->pid(), SIGTERM) == 0);
    return process_->wait(start_deadline);
  }

  tcc_reply call(tcc_step step, const tcc_request& request, std::chrono::milliseconds timeout = call_timeout) {
    return participant_->call(step, request, timeout);
  }

  // An account of `balance` with nothing reserved, through the wallet's POST /accounts.
  std::string new_account(long balance) {
    std::string account = next_account();
    auto response =
        http().Post("/accounts", "account=" + account + ";balance=" + std::to_string(balance), "text/plain");
    REQUIRE(response);
    REQUIRE_MESSAGE(response->status == 200, response->body);
    return account;
  }
  httplib::Client http() const {
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(call_timeout);
    return client;
  }

  // The account as the database holds it.
  account_row account(const std::string& name) {
    auto rows = test::run(*observer_, "SELECT balance, reserved FROM wallet_accounts WHERE account = '" + name + "'");
    REQUIRE(rows.rows.size() == 1);
    return {std::stoll(rows.rows[0][0].value()), std::stoll(rows.rows[0][1].value())};
  }
  // The branch's barrier rows as "step/origin", sorted.
  std::vector<std::string> barrier_rows(const std::string& gtrid) {
    auto rows = test::run(*observer_, "SELECT step, origin FROM xatm_tcc_barrier WHERE gtrid = '" + gtrid + "'");
    std::vector<std::string> found;
    for (const auto& row : rows.rows) found.push_back(row[0].value() + "/" + row[1].value());
    std::sort(found.begin(), found.end());
    return found;
  }

  // Waits until the wallet's log has a line starting with `start` (each step it answers logs
  // one) and returns it.
  std::string wait_for_log_line(const std::string& start) {
    const auto deadline = std::chrono::steady_clock::now() + start_deadline;
    while (true) {
      const std::string err = process_->err();
      for (std::size_t at = 0; at < err.size();) {
        const std::size_t end = err.find('\n', at);
        if (end == std::string::npos) break;
        if (err.compare(at, start.size(), start) == 0) return err.substr(at, end - at);
        at = end + 1;
      }
      if (std::chrono::steady_clock::now() > deadline) FAIL("no line '" << start << "' in the wallet's log:\n" << err);
      std::this_thread::sleep_for(20ms);
    }
  }

  // Everything the wallet printed, in every run so far (the current one included).
  std::string output() const {
    std::string all;
    for (int run = 1; run <= runs_; ++run) {
      for (const char* stream : {".out", ".err"}) {
        std::ifstream in(dir_.file("wallet-" + std::to_string(run) + stream), std::ios::binary);
        all += std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      }
    }
    return all;
  }

  const database& db() const { return db_; }

 private:
  database db_;
  std::vector<std::string> env_;
  test::temp_dir dir_{"xatm-wallet"};
  std::unique_ptr<test::child_process> process_;
  int runs_ = 0;
  int port_ = 0;
  std::shared_ptr<tcc_participant> participant_;
  std::unique_ptr<resource_manager> observer_;
};

// Runs `check` against a wallet on PostgreSQL, then (a new subcase) on MariaDB. Afterwards
// neither server's password may show anywhere in what the wallet printed.
template <class Check>
void on_each_database(Check check, std::vector<std::string> env = {}) {
  auto run = [&](database db) {
    wallet_under_test wallet(std::move(db), env);
    INFO("wallet output:\n" << wallet.output());
    check(wallet);
    check_no_password(wallet.output());
  };
  SUBCASE("postgresql") { run(postgresql_database()); }
  SUBCASE("mariadb") { run(mariadb_database()); }
}

// Sends `step` for `request` from `count` threads released together; the replies in any order.
std::vector<tcc_reply> deliver_at_once(wallet_under_test& wallet, tcc_step step, const tcc_request& request,
                                       int count) {
  std::vector<tcc_reply> replies(static_cast<std::size_t>(count));
  std::latch go(count);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < replies.size(); ++i) {
    threads.emplace_back([&, i] {
      go.arrive_and_wait();
      replies[i] = wallet.call(step, request);  // call() is thread-safe and never throws
    });
  }
  for (auto& thread : threads) thread.join();
  return replies;
}

std::string describe(const std::vector<tcc_reply>& replies) {
  std::string text;
  for (const auto& reply : replies) text += std::string(tcc_answer_name(reply.answer)) + " " + reply.detail + "; ";
  return text;
}

// How many replies are done with the barrier saying `detail` ("ran", "duplicate", ...).
long done_with(const std::vector<tcc_reply>& replies, const std::string& detail) {
  return std::count_if(replies.begin(), replies.end(), [&](const tcc_reply& reply) {
    return reply.answer == tcc_answer::done && reply.detail == detail;
  });
}

void check_reply(const tcc_reply& reply, tcc_answer answer, const std::string& detail) {
  INFO("answer " << tcc_answer_name(reply.answer) << ": " << reply.detail);
  CHECK(reply.answer == answer);
  CHECK(reply.detail == detail);
}

// `step` (confirm or cancel) for a try of 30 on an account of 100 that holds another
// reservation of 20 (a step that acted twice would eat into it): delivered 1 to 5 times one
// after another, and 5 times at once, it acts once and leaves the account at `after`. Returns
// the account of the last round.
std::string check_acts_once(wallet_under_test& wallet, tcc_step step, account_row after) {
  const std::string own_row = std::string(tcc_step_name(step)) + "/" + tcc_step_name(step);
  auto reserve = [&wallet](const std::string& account) {
    const auto request = request_for(next_gtrid(), account, 30);
    check_reply(wallet.call(tcc_step::try_, request), tcc_answer::done, "ran");
    check_reply(wallet.call(tcc_step::try_, request_for(next_gtrid(), account, 20)), tcc_answer::done, "ran");
    CHECK(wallet.account(account) == account_row{100, 50});
    return request;
  };
  for (int deliveries = 1; deliveries <= 5; ++deliveries) {
    CAPTURE(deliveries);
    const std::string account = wallet.new_account(100);
    const auto request = reserve(account);
    for (int i = 1; i <= deliveries; ++i) {
      check_reply(wallet.call(step, request), tcc_answer::done, i == 1 ? "ran" : "duplicate");
      CHECK(wallet.account(account) == after);
    }
    CHECK(wallet.barrier_rows(request.gtrid) == std::vector<std::string>{own_row, "try/try"});
  }

  const std::string account = wallet.new_account(100);
  const auto request = reserve(account);
  const auto replies = deliver_at_once(wallet, step, request, 5);
  INFO("replies: " << describe(replies));
  CHECK(done_with(replies, "ran") == 1);
  CHECK(done_with(replies, "duplicate") == 4);
  CHECK(wallet.account(account) == after);
  CHECK(wallet.barrier_rows(request.gtrid) == std::vector<std::string>{own_row, "try/try"});
  return account;
}

}  // namespace

TEST_CASE("a confirm delivered again and again, one after another or at once, takes the money once") {
  on_each_database([](wallet_under_test& wallet) {
    const std::string account = check_acts_once(wallet, tcc_step::confirm, {70, 20});
    // The wallet's own view agrees with the database's.
    auto response = wallet.http().Get("/accounts/" + account);
    REQUIRE(response);
    CHECK(response->status == 200);
    CHECK(response->body == "balance=70;reserved=20");
  });
}

TEST_CASE("a cancel delivered again and again, one after another or at once, releases the reservation once") {
  on_each_database([](wallet_under_test& wallet) { check_acts_once(wallet, tcc_step::cancel, {100, 20}); });
}

TEST_CASE("a cancel without a try is recorded, and the try that comes after it is refused") {
  on_each_database([](wallet_under_test& wallet) {
    const std::string account = wallet.new_account(100);
    const auto request = request_for(next_gtrid(), account, 30);
    check_reply(wallet.call(tcc_step::cancel, request), tcc_answer::done, "empty_cancel");
    CHECK(wallet.account(account) == account_row{100, 0});
    // The try row is written by the cancel: it is what fences off the late try.
    CHECK(wallet.barrier_rows(request.gtrid) == std::vector<std::string>{"cancel/cancel", "try/cancel"});
    check_reply(wallet.call(tcc_step::cancel, request), tcc_answer::done, "duplicate");

    check_reply(wallet.call(tcc_step::try_, request), tcc_answer::refused, "refused_after_cancel");
    CHECK(wallet.account(account) == account_row{100, 0});
    CHECK(wallet.barrier_rows(request.gtrid) == std::vector<std::string>{"cancel/cancel", "try/cancel"});

    // Empty cancels racing each other: one records, the others are duplicates.
    const auto raced = request_for(next_gtrid(), account, 30);
    const auto replies = deliver_at_once(wallet, tcc_step::cancel, raced, 5);
    INFO("replies: " << describe(replies));
    CHECK(done_with(replies, "empty_cancel") == 1);
    CHECK(done_with(replies, "duplicate") == 4);
    check_reply(wallet.call(tcc_step::try_, raced), tcc_answer::refused, "refused_after_cancel");
    CHECK(wallet.account(account) == account_row{100, 0});
  });
}

TEST_CASE("a try that reaches the wallet after its cancel reserves nothing") {
  // The wallet holds every try for a while before handling it: the coordinator's try times out,
  // it cancels, and the try is handled afterwards, as a try stuck in a network would be.
  on_each_database(
      [](wallet_under_test& wallet) {
        const std::string account = wallet.new_account(100);
        const auto request = request_for(next_gtrid(), account, 30);
        const tcc_reply timed_out = wallet.call(tcc_step::try_, request, 200ms);
        CHECK(timed_out.answer == tcc_answer::failed);  // the wallet cannot answer before its delay
        const tcc_reply cancelled = wallet.call(tcc_step::cancel, request);
        REQUIRE(cancelled.answer == tcc_answer::done);
        const std::string try_line = wallet.wait_for_log_line("try " + request.gtrid + " branch 1: ");
        // The cancel normally overtakes the held try; on a machine slow enough for the try to
        // run first, the cancel released it. Either way nothing stays reserved.
        if (cancelled.detail == "empty_cancel") {
          CHECK(contains(try_line, ": 409 refused_after_cancel"));
          CHECK(wallet.barrier_rows(request.gtrid) == std::vector<std::string>{"cancel/cancel", "try/cancel"});
        } else {
          CHECK(cancelled.detail == "ran");
          CHECK(contains(try_line, ": 200 ran"));
          CHECK(wallet.barrier_rows(request.gtrid) == std::vector<std::string>{"cancel/cancel", "try/try"});
        }
        CHECK(wallet.account(account) == account_row{100, 0});
      },
      {"XATM_WALLET_DELAY_TRY_MS=1500"});
}

TEST_CASE("a confirm after the cancel, and a cancel after the confirm, are refused and change nothing") {
  on_each_database([](wallet_under_test& wallet) {
    const std::string account = wallet.new_account(100);
    const auto cancelled = request_for(next_gtrid(), account, 30);
    check_reply(wallet.call(tcc_step::try_, cancelled), tcc_answer::done, "ran");
    check_reply(wallet.call(tcc_step::cancel, cancelled), tcc_answer::done, "ran");
    check_reply(wallet.call(tcc_step::confirm, cancelled), tcc_answer::refused, "conflict");
    CHECK(wallet.account(account) == account_row{100, 0});
    CHECK(wallet.barrier_rows(cancelled.gtrid) == std::vector<std::string>{"cancel/cancel", "try/try"});

    const auto confirmed = request_for(next_gtrid(), account, 30);
    check_reply(wallet.call(tcc_step::try_, confirmed), tcc_answer::done, "ran");
    check_reply(wallet.call(tcc_step::confirm, confirmed), tcc_answer::done, "ran");
    check_reply(wallet.call(tcc_step::cancel, confirmed), tcc_answer::refused, "conflict");
    CHECK(wallet.account(account) == account_row{70, 0});
    CHECK(wallet.barrier_rows(confirmed.gtrid) == std::vector<std::string>{"confirm/confirm", "try/try"});

    // A confirm with no try at all: nothing was reserved, so nothing can be taken; a failure,
    // not a refusal (that would tell the coordinator the branch is final).
    const auto never_tried = request_for(next_gtrid(), account, 30);
    check_reply(wallet.call(tcc_step::confirm, never_tried), tcc_answer::failed, "POST /confirm: HTTP 404: not_tried");
    CHECK(wallet.account(account) == account_row{70, 0});
    CHECK(wallet.barrier_rows(never_tried.gtrid).empty());
  });
}

TEST_CASE("a try the business refuses reserves nothing and leaves no barrier row, so it may come again") {
  on_each_database([](wallet_under_test& wallet) {
    const std::string account = wallet.new_account(20);
    const auto request = request_for(next_gtrid(), account, 30);
    check_reply(wallet.call(tcc_step::try_, request), tcc_answer::refused, "insufficient funds");
    CHECK(wallet.account(account) == account_row{20, 0});
    CHECK(wallet.barrier_rows(request.gtrid).empty());

    // Money arrives; the same try delivered again now reserves.
    auto topped_up = wallet.http().Post("/accounts", "account=" + account + ";balance=50", "text/plain");
    REQUIRE(topped_up);
    REQUIRE(topped_up->status == 200);
    check_reply(wallet.call(tcc_step::try_, request), tcc_answer::done, "ran");
    CHECK(wallet.account(account) == account_row{50, 30});
    CHECK(wallet.barrier_rows(request.gtrid) == std::vector<std::string>{"try/try"});

    // Reserved money is not available to another try.
    const auto second = request_for(next_gtrid(), account, 30);
    check_reply(wallet.call(tcc_step::try_, second), tcc_answer::refused, "insufficient funds");
    CHECK(wallet.account(account) == account_row{50, 30});

    const auto nobody = request_for(next_gtrid(), next_account(), 1);
    check_reply(wallet.call(tcc_step::try_, nobody), tcc_answer::refused, "no such account");
    CHECK(wallet.barrier_rows(nobody.gtrid).empty());
  });
}

TEST_CASE("bad input is answered 400 before the database is touched") {
  on_each_database([](wallet_under_test& wallet) {
    const std::string account = wallet.new_account(100);
    const std::vector<std::string> bad_payloads{
        "",
        "account=" + account,
        "account=" + account + ";amount=abc",
        "account=" + account + ";amount=0",
        "account=" + account + ";amount=-5",
        "account=" + account + ";amount=1;extra=2",
        "amount=5;account=" + account,
        "account=x' OR '1'='1;amount=5",
    };
    for (const auto& payload : bad_payloads) {
      CAPTURE(payload);
      const tcc_request request{next_gtrid(), 1, "wallet", payload, {}};
      const tcc_reply reply = wallet.call(tcc_step::try_, request);
      CHECK(reply.answer == tcc_answer::failed);
      CHECK(contains(reply.detail, "HTTP 400"));
      CHECK(wallet.barrier_rows(request.gtrid).empty());
    }
    // A gtrid outside [A-Za-z0-9_.-] is refused by the wallet too (the barrier would refuse it).
    const tcc_reply bad_gtrid = wallet.call(tcc_step::try_, request_for("not a gtrid", account, 5));
    CHECK(bad_gtrid.answer == tcc_answer::failed);
    CHECK(contains(bad_gtrid.detail, "HTTP 400"));
    CHECK(wallet.account(account) == account_row{100, 0});

    // No Xatm-* headers at all (not our client): 400.
    auto bare = wallet.http().Post("/try", "account=" + account + ";amount=5", "application/octet-stream");
    REQUIRE(bare);
    CHECK(bare->status == 400);
    CHECK(contains(bare->body, "Xatm-Gtrid"));
    CHECK(wallet.account(account) == account_row{100, 0});

    auto unknown = wallet.http().Get("/accounts/" + next_account());
    REQUIRE(unknown);
    CHECK(unknown->status == 404);
    auto health = wallet.http().Get("/health");
    REQUIRE(health);
    CHECK(health->body == "ok");
  });
}

TEST_CASE("make_http_participant refuses a malformed URL before sending anything, without echoing it") {
  for (const char* url : {"ftp://x", "http://user:pw@h:1", "http://", "http://h:0", "http://h:65536", "http://h:x",
                          "http://h:", "http://h/a?b=1", "http://h/a#b", "http://h /a", "wallet:8080", "http://[::1"}) {
    CAPTURE(url);
    try {
      static_cast<void>(make_http_participant(url));
      FAIL("accepted");
    } catch (const invalid_argument_error& e) {
      CHECK(e.code() == xa_code::invalid);
      CHECK_FALSE(contains(e.what(), "pw"));
      CHECK_FALSE(contains(e.what(), url));
    }
  }
  for (const char* url : {"http://127.0.0.1:1", "HTTPS://wallet.example/api/v1/", "http://[::1]:8080/x", "http://h"}) {
    CAPTURE(url);
    CHECK(make_http_participant(url) != nullptr);
  }
  // Nobody listens there: an answer of failed, not an exception.
  const tcc_reply reply =
      make_http_participant("http://127.0.0.1:1")->call(tcc_step::confirm, request_for(next_gtrid(), "a", 1), 2s);
  CHECK(reply.answer == tcc_answer::failed);
  CHECK(contains(reply.detail, "no answer"));
}

TEST_CASE("the wallet's command line is checked before it connects, and its password is never printed") {
  test::temp_dir dir("xatm-wallet-usage");
  const std::string maria = "mariadb:" + test::servers().mysql;
  const std::vector<std::vector<std::string>> bad_lines{
      {XATM_WALLET_BIN},
      {XATM_WALLET_BIN, "--db", maria},                                     // no --state-dir
      {XATM_WALLET_BIN, "--db", "oracle:x", "--state-dir", dir.file("s")},  // unknown dialect
      {XATM_WALLET_BIN, "--db", maria, "--state-dir", dir.file("s"), "--port", "70000"},
      {XATM_WALLET_BIN, "--state-dir", dir.file("s"), maria},  // a stray conninfo
  };
  int n = 0;
  for (const auto& argv : bad_lines) {
    CAPTURE(n);
    test::child_process wallet(argv, {}, dir.file(std::to_string(n) + ".out"), dir.file(std::to_string(n) + ".err"));
    ++n;
    const auto status = wallet.wait(start_deadline);
    CHECK(status.exited);
    CHECK(status.code == 2);
    CHECK(contains(wallet.err(), "usage:"));
    check_no_password(wallet.out() + wallet.err());
  }
  // A connection string the dialect does not take: a configuration error, named, not echoed.
  test::child_process malformed(
      {XATM_WALLET_BIN, "--db", "mariadb:colour=blue password='pw s3cr3t'", "--state-dir", dir.file("s")}, {},
      dir.file("malformed.out"), dir.file("malformed.err"));
  const auto malformed_status = malformed.wait(start_deadline);
  CHECK(malformed_status.exited);
  CHECK(malformed_status.code == 2);
  CHECK(contains(malformed.err(), "colour"));
  check_no_password(malformed.out() + malformed.err());

  // A wrong password: the wallet cannot start, and says so without either password.
  auto wrong = test::settings_of(test::servers().mysql);
  wrong.set("password", "wrong pw'%s3cr3t");
  test::child_process refused({XATM_WALLET_BIN, "--db", "mariadb:" + wrong.to_conninfo(), "--state-dir", dir.file("s")},
                              {}, dir.file("refused.out"), dir.file("refused.err"));
  const auto status = refused.wait(start_deadline);
  INFO(refused.err());
  CHECK(status.exited);
  CHECK(status.code == 1);
  CHECK(contains(refused.err(), "xatm-example-wallet: "));
  check_no_password(refused.out() + refused.err());
}

TEST_CASE("a wallet that is stopped or killed answers failed; back again, the pending confirm takes the money once") {
  on_each_database([](wallet_under_test& wallet) {
    const std::string account = wallet.new_account(100);
    const auto request = request_for(next_gtrid(), account, 30);
    check_reply(wallet.call(tcc_step::try_, request), tcc_answer::done, "ran");

    // Frozen: the kernel accepts the connection, nobody answers; call() gives up at its timeout.
    // The confirm it sent waits in the socket and runs when the wallet wakes: a lost reply.
    wallet.pause();
    const tcc_reply frozen = wallet.call(tcc_step::confirm, request, 500ms);
    wallet.resume();
    CHECK(frozen.answer == tcc_answer::failed);
    CHECK(contains(frozen.detail, "no answer"));
    const tcc_reply again = wallet.call(tcc_step::confirm, request);
    CHECK(again.answer == tcc_answer::done);  // "ran" or "duplicate", whichever came first
    CHECK(wallet.account(account) == account_row{70, 0});

    // Killed: no answer at all.
    const auto pending = request_for(next_gtrid(), account, 20);
    check_reply(wallet.call(tcc_step::try_, pending), tcc_answer::done, "ran");
    CHECK(wallet.account(account) == account_row{70, 20});
    wallet.kill();
    const tcc_reply dead = wallet.call(tcc_step::confirm, pending, 2s);
    CHECK(dead.answer == tcc_answer::failed);
    CHECK(contains(dead.detail, "no answer"));
    CHECK(wallet.account(account) == account_row{70, 20});  // the reservation outlives the process

    // Restarted on the same database, state dir and port: the retried confirm runs once.
    wallet.start();
    check_reply(wallet.call(tcc_step::confirm, pending), tcc_answer::done, "ran");
    check_reply(wallet.call(tcc_step::confirm, pending), tcc_answer::done, "duplicate");
    CHECK(wallet.account(account) == account_row{50, 0});
    CHECK(wallet.barrier_rows(pending.gtrid) == std::vector<std::string>{"confirm/confirm", "try/try"});

    // SIGTERM: a clean exit.
    const auto stopped = wallet.stop();
    CHECK(stopped.exited);
    CHECK(stopped.code == 0);
  });
}
