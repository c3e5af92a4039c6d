// Wall-clock jumps (docs/faults.md row "wall-clock jumps"). This test runs under libfaketime:
// tests/CMakeLists.txt preloads it with the monotonic clock left real
// (FAKETIME_DONT_FAKE_MONOTONIC=1) and names a timestamp file that libfaketime reads at every
// call (FAKETIME_NO_CACHE=1); the test moves its own wall clock by rewriting that file. Against
// the real servers it proves that xatm's timeouts follow the monotonic clock: a transaction with
// a 60 s timeout survives a +2 h jump and commits; a 1 s transaction timeout and a 1 s prepare
// timeout still fire although the wall clock went back 2 h; and gtrids stay distinct across a
// backwards jump and TM restarts on the same log (they carry incarnations, never times).
// Every jump is measured in the process first (system_clock moved, steady_clock did not), so no
// case can pass vacuously; without libfaketime every case fails, saying to install faketime.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "support/adapter_checks.h"
#include "support/observers.h"
#include "support/result_checks.h"
#include "support/tm_fixture.h"
#include "xatm/error.h"
#include "xatm/transaction_manager.h"

#ifndef XATM_LIBFAKETIME
#error "XATM_LIBFAKETIME must name libfaketime.so.1 (set by tests/CMakeLists.txt)"
#endif

using namespace xatm;  // NOLINT(google-build-using-namespace): test file

namespace {

using namespace std::chrono_literals;
using std::chrono::steady_clock;
using std::chrono::system_clock;
using test::observe_maria;
using test::observe_pg;
using test::run;
using test::single_value;
using test::thrown_by;

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

// Fails the test unless libfaketime is loaded into this process and set up as the CTest entry
// sets it up.
void require_faketime() {
  std::ifstream maps_file("/proc/self/maps");
  const std::string maps{std::istreambuf_iterator<char>(maps_file), std::istreambuf_iterator<char>()};
  REQUIRE_MESSAGE(contains(maps, "libfaketime"),
                  "libfaketime is not loaded (LD_PRELOAD='"
                      << environment("LD_PRELOAD") << "', expected " << XATM_LIBFAKETIME
                      << "): install the Debian package faketime (apt-get install faketime), "
                      << "reconfigure, and run this test through ctest, which sets LD_PRELOAD and FAKETIME_*");
  REQUIRE_MESSAGE(!environment("FAKETIME_TIMESTAMP_FILE").empty(),
                  "FAKETIME_TIMESTAMP_FILE is not set: run through ctest");
  REQUIRE_MESSAGE(environment("FAKETIME_DONT_FAKE_MONOTONIC") == "1", "the monotonic clock must stay real");
  REQUIRE_MESSAGE(environment("FAKETIME_NO_CACHE") == "1", "libfaketime must read the timestamp file at every call");
}

// This process's wall clock as libfaketime shows it. jump(hours) moves it to the real time plus
// `hours` and checks in the process that it did: system_clock jumped by the difference, net of
// the real time that passed (steady_clock's), and steady_clock did not jump. The destructor puts
// the wall clock back to the real time.
class wall_clock {
 public:
  wall_clock() : path_(environment("FAKETIME_TIMESTAMP_FILE")) {
    require_faketime();
    REQUIRE_MESSAGE(write(0), "cannot write " << path_);
  }
  ~wall_clock() { (void)write(0); }  // ignored: a failure shows in the next test's jump check
  wall_clock(const wall_clock&) = delete;
  wall_clock& operator=(const wall_clock&) = delete;

  void jump(int hours) {
    const auto wall_before = system_clock::now();
    const auto steady_before = steady_clock::now();
    REQUIRE_MESSAGE(write(hours), "cannot write " << path_);
    const auto wall_moved = system_clock::now() - wall_before;
    const auto steady_moved = steady_clock::now() - steady_before;
    const auto expected = std::chrono::hours(hours - offset_hours_);
    const auto jumped = std::chrono::duration_cast<std::chrono::seconds>(wall_moved - steady_moved);
    INFO("the wall clock jumped " << jumped.count() << " s, expected " << std::chrono::seconds(expected).count()
                                  << " s");
    REQUIRE(jumped > expected - 1min);
    REQUIRE(jumped < expected + 1min);
    REQUIRE(steady_moved < 30s);
    offset_hours_ = hours;
  }

  // Writes the offset without checking it (any thread); jump() is the checked form.
  bool write(int hours) const noexcept {
    char offset[16];
    std::snprintf(offset, sizeof offset, "%+dh\n", hours);
    const std::string temporary = path_ + ".tmp";
    std::FILE* file = std::fopen(temporary.c_str(), "w");
    if (file == nullptr) return false;
    bool written = std::fputs(offset, file) >= 0;
    written = std::fclose(file) == 0 && written;
    // rename: libfaketime never reads a half-written file.
    return written && std::rename(temporary.c_str(), path_.c_str()) == 0;
  }

 private:
  std::string path_;
  int offset_hours_ = 0;
};

const std::string rows_table = "wall_clock_rows";

bool row_exists(connection& rm, std::int64_t id) {
  return single_value(rm, "SELECT count(*) FROM " + rows_table + " WHERE id = " + std::to_string(id)) == "1";
}

// A transaction manager (support/tm_fixture.h) with the RMs "pg" and "maria" on a log of its
// own, its tm_id unique to this process and `tag`, no background recovery (it runs at the first
// begin() only), the rows table ready on both servers, and a connection to each RM for the
// application's branches. reopen() closes the TM and opens the same log again (a new
// incarnation); the connections stay.
struct tm_under_test : test::tm_fixture {
  std::unique_ptr<connection> pg;
  std::unique_ptr<connection> maria;

  tm_under_test(const std::string& tag, tm_options settings)
      : tm_fixture("clock-" + tag, test::without_background_recovery(std::move(settings))) {
    run(*observe_pg(), "CREATE TABLE IF NOT EXISTS " + rows_table + " (id bigint PRIMARY KEY, note text)");
    run(*observe_maria(),
        "CREATE TABLE IF NOT EXISTS " + rows_table + " (id bigint PRIMARY KEY, note text) ENGINE=InnoDB");
    pg = tm->connect("pg");
    maria = tm->connect("maria");
  }

  // A transaction with a branch on each connection, each of which inserted row `id` into the
  // rows table (PostgreSQL runs `pg_sql` instead when it is given).
  global_transaction begin_writing(std::int64_t id, const std::string& pg_sql = {}) {
    auto tx = tm->begin();
    tx.enlist(*pg);
    tx.enlist(*maria);
    run(*pg, pg_sql.empty() ? test::insert_row_sql(rows_table, id) : pg_sql);
    run(*maria, test::insert_row_sql(rows_table, id));
    return tx;
  }
};

tm_options with_timeouts(std::chrono::milliseconds transaction_timeout, std::chrono::milliseconds prepare_timeout) {
  tm_options options;
  options.transaction_timeout = transaction_timeout;
  options.prepare_timeout = prepare_timeout;
  return options;
}

}  // namespace

TEST_CASE("the wall clock really jumps in this process, and the monotonic clock does not") {
  wall_clock clock;
  const auto c_time_before = std::time(nullptr);
  clock.jump(+2);
  CHECK(std::time(nullptr) - c_time_before > 7000);  // the C API sees it too
  clock.jump(-2);
  const auto steady_before = steady_clock::now();
  std::this_thread::sleep_for(200ms);  // sleeping still takes real time
  CHECK(steady_clock::now() - steady_before >= 200ms);
  clock.jump(0);
}

TEST_CASE("a transaction with a 60 s timeout survives a +2 h wall-clock jump and commits on both servers") {
  wall_clock clock;
  tm_under_test t("plus", with_timeouts(60s, 10s));
  const auto id = test::next_row_id();
  {
    auto tx = t.begin_writing(id);
    clock.jump(+2);  // the transaction is now "two hours old" by the wall clock
    CHECK(tx.commit() == commit_outcome::committed);
  }
  CHECK(t.tm->statistics().decisions_logged == 1);
  CHECK(row_exists(*observe_pg(), id));
  CHECK(row_exists(*observe_maria(), id));
}

TEST_CASE("a transaction with a 1 s timeout still times out although the wall clock went back 2 h") {
  wall_clock clock;
  tm_under_test t("minus", with_timeouts(1s, 10s));
  const auto id = test::next_row_id();
  {
    auto tx = t.begin_writing(id);
    clock.jump(-2);                       // by the wall clock the transaction starts in two hours
    std::this_thread::sleep_for(1500ms);  // real time past its timeout
    const auto committing = steady_clock::now();
    auto expired = thrown_by<timeout_error>([&] { (void)tx.commit(); });
    CHECK(steady_clock::now() - committing < 30s);  // "does not hang", not a timing claim
    CHECK(expired.code() == xa_code::rollback_timeout);
    CHECK(contains(expired.what(), "is older than its timeout (1000 ms)"));
  }
  CHECK(t.tm->statistics().rolled_back == 1);
  CHECK(t.tm->statistics().decisions_logged == 0);
  CHECK_FALSE(row_exists(*observe_pg(), id));
  CHECK_FALSE(row_exists(*observe_maria(), id));
}

TEST_CASE("a 1 s prepare timeout still fires when the wall clock goes back 2 h during the prepare") {
  // PostgreSQL's prepare runs the deferred trigger: it sleeps 5 s, then votes no. Cut off by the
  // prepare timeout the commit throws timeout_error; had the deadline missed the jump, the no-vote
  // would have arrived after 5 s as rolled_back_error.
  run(*observe_pg(),
      "DROP TABLE IF EXISTS wall_clock_slow_vote;"
      "CREATE TABLE wall_clock_slow_vote (id bigint PRIMARY KEY);"
      "CREATE OR REPLACE FUNCTION wall_clock_slow_no() RETURNS trigger LANGUAGE plpgsql AS "
      "$$BEGIN PERFORM pg_sleep(5); RAISE EXCEPTION 'slow no-vote'; END$$;"
      "CREATE CONSTRAINT TRIGGER slow_no AFTER INSERT ON wall_clock_slow_vote "
      "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION wall_clock_slow_no()");
  wall_clock clock;
  tm_under_test t("prepare", with_timeouts(60s, 1s));
  const auto id = test::next_row_id();
  const auto wall_before = system_clock::now();
  const auto steady_before = steady_clock::now();
  std::atomic<bool> commit_returned{false};
  std::atomic<bool> jumped_during_commit{false};
  {
    auto tx = t.begin_writing(id, "INSERT INTO wall_clock_slow_vote VALUES (" + std::to_string(id) + ")");
    std::thread jumper([&] {
      std::this_thread::sleep_for(300ms);  // the prepares are under way by then
      jumped_during_commit = !commit_returned.load() && clock.write(-2);
    });
    auto cut_off = thrown_by<timeout_error>([&] { (void)tx.commit(); });
    commit_returned = true;
    jumper.join();
    CHECK(steady_clock::now() - steady_before < 30s);  // "does not hang", not a timing claim
    CHECK(cut_off.rm_name() == "pg");
    CHECK(contains(cut_off.what(), "no answer to prepare within the timeout"));
  }
  // The jump was real, and landed while commit() waited for the prepare.
  CHECK(jumped_during_commit);
  const auto jumped = (system_clock::now() - wall_before) - (steady_clock::now() - steady_before);
  CHECK(jumped < -2h + 1min);
  CHECK(jumped > -2h - 1min);
  CHECK(t.tm->statistics().decisions_logged == 0);
  CHECK(single_value(*observe_pg(), "SELECT count(*) FROM wall_clock_slow_vote") == "0");
  CHECK_FALSE(row_exists(*observe_maria(), id));
}

TEST_CASE("gtrids stay distinct across a backwards wall-clock jump and TM restarts on the same log") {
  wall_clock clock;
  tm_under_test t("gtrids", with_timeouts(60s, 10s));
  std::set<std::string> gtrids;
  std::vector<std::uint64_t> incarnations;
  int committed = 0;
  // Three commits through both servers, under the TM as it is now.
  auto commit_three = [&] {
    incarnations.push_back(t.tm->incarnation());
    for (int i = 0; i < 3; ++i) {
      auto tx = t.begin_writing(test::next_row_id());
      CHECK(tx.commit() == commit_outcome::committed);
      gtrids.insert(tx.gtrid());
      ++committed;
    }
  };
  commit_three();
  clock.jump(-2);
  commit_three();  // same incarnation, the wall clock two hours behind
  t.reopen();
  commit_three();  // a new incarnation while the clock is still behind
  clock.jump(0);
  t.reopen();
  commit_three();  // and after the jump back
  CHECK(gtrids.size() == static_cast<std::size_t>(committed));
  REQUIRE(incarnations.size() == 4);
  CHECK(incarnations[1] == incarnations[0]);
  CHECK(incarnations[2] == incarnations[1] + 1);
  CHECK(incarnations[3] == incarnations[2] + 1);
  for (const auto& gtrid : gtrids) {
    CAPTURE(gtrid);
    auto parts = parse_gtrid(gtrid);
    REQUIRE(parts.ok());
    CHECK(parts.value().tm_id == t.options.tm_id);
  }
}
