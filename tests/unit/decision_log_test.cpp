// The decision log on real SQLite files in a private temp dir: incarnations, durability across a
// process that dies right after record() returns, refusal of foreign, damaged and unsafe logs
// (never repaired), the process lock, file modes, group commit, and fsync / disk-full failures
// injected through the faulty VFS.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "sqlite/sqlite_decision_store.h"
#include "xatm/xid.h"
#include "testing/faulty_vfs.h"
#include "support/temp_dir.h"

using namespace xatm;
using namespace xatm::detail;

namespace {

using xatm::test::temp_dir;

sqlite_store_options options_for(const std::string& path, std::string tm_id = "tm1", std::string vfs = {}) {
  sqlite_store_options options;
  options.path = path;
  options.tm_id = std::move(tm_id);
  options.vfs_name = std::move(vfs);
  return options;
}

std::unique_ptr<sqlite_decision_store> open_ok(const sqlite_store_options& options) {
  auto opened = sqlite_decision_store::open(options);
  if (!opened) FAIL("open failed: " << opened.error().describe());
  return std::move(opened).value();
}

// The refusal's message; fails the test when the open succeeded.
std::string open_refused(const sqlite_store_options& options) {
  auto opened = sqlite_decision_store::open(options);
  if (opened) FAIL("open of " << options.path << " succeeded but should have been refused");
  return opened.error().message;
}

decision_record decision(const std::string& gtrid, std::vector<std::string> rms = {"pg", "maria"},
                         decision_state state = decision_state::commit) {
  decision_record record;
  record.gtrid = gtrid;
  record.state = state;
  record.branch_rms = std::move(rms);
  return record;
}

void record_ok(sqlite_decision_store& log, const decision_record& record) {
  auto written = log.record(record);
  if (!written) FAIL("record " << record.gtrid << " failed: " << written.error().describe());
}

std::vector<decision_record> pending_ok(const sqlite_decision_store& log) {
  auto pending = log.pending();
  if (!pending) FAIL("pending() failed: " << pending.error().describe());
  return std::move(pending).value();
}

std::vector<std::string> pending_gtrids(const sqlite_decision_store& log) {
  std::vector<std::string> gtrids;
  for (const auto& record : pending_ok(log)) gtrids.push_back(record.gtrid);
  std::sort(gtrids.begin(), gtrids.end());
  return gtrids;
}

bool contains(const std::vector<std::string>& values, const std::string& value) {
  return std::find(values.begin(), values.end(), value) != values.end();
}

std::optional<mode_t> file_mode(const std::string& path) {
  struct stat status {};
  if (::stat(path.c_str(), &status) != 0) return std::nullopt;
  return status.st_mode & 07777;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file_at(const std::string& path, long offset, const std::string& bytes) {
  std::fstream out(path, std::ios::binary | std::ios::in | std::ios::out);
  out.seekp(offset);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

// Runs `body` in a forked child and returns its wait status. The child never returns into doctest.
template <class Body>
int run_child(Body body) {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    body();
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  return status;
}

// `count` decisions from `threads` threads at once, gtrids tm1.1.<prefix><n>.
void record_concurrently(sqlite_decision_store& log, int threads, int count_per_thread, int prefix = 0) {
  std::vector<std::thread> workers;
  std::atomic<int> failures{0};
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < count_per_thread; ++i) {
        const auto gtrid = "tm1.1." + std::to_string(prefix + t * count_per_thread + i);
        if (!log.record(decision(gtrid))) failures.fetch_add(1);
      }
    });
  }
  for (auto& worker : workers) worker.join();
  REQUIRE(failures.load() == 0);
}

}  // namespace

TEST_CASE("decision log: every open draws a new incarnation id and knows only the ids it issued") {
  temp_dir dir;
  const auto options = options_for(dir.file("decisions.db"));
  std::vector<std::string> ids;
  for (int open = 0; open < 3; ++open) {
    auto log = open_ok(options);
    CHECK(is_incarnation_id(log->incarnation_id()));
    ids.push_back(log->incarnation_id());
    for (const auto& id : ids) CHECK(log->is_own_incarnation(id));
    CHECK_FALSE(log->is_own_incarnation("abcdefghijkl"));
    CHECK_FALSE(log->is_own_incarnation("1"));  // no legacy incarnations in a new log
  }
  CHECK(std::set<std::string>(ids.begin(), ids.end()).size() == ids.size());
  // A new log at the same path (the old one lost) knows none of them.
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(dir.file("decisions.db") + suffix);
  auto fresh = open_ok(options);
  for (const auto& id : ids) CHECK_FALSE(fresh->is_own_incarnation(id));
}

TEST_CASE("decision log: a schema version 1 log is upgraded; its numbered incarnations stay its own") {
  temp_dir dir;
  const auto options = options_for(dir.file("decisions.db"));
  {
    auto log = open_ok(options);  // incarnation 1
    detail::decision_record record{"tm1.1.7", detail::decision_state::commit, {"pg"}, 0};
    REQUIRE(log->record(record).ok());
  }
  {
    // Turn it into what an xatm without incarnation ids wrote: version 1, no id tables.
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(dir.file("decisions.db").c_str(), &db) == SQLITE_OK);
    for (const char* sql :
         {"DROP TABLE incarnations", "DROP TABLE rm_identities", "DROP TABLE tcc_branches",
          "DELETE FROM meta WHERE key = 'legacy_incarnations'",
          "UPDATE meta SET value = '1' WHERE key = 'schema_version'",
          "UPDATE meta SET value = '2' WHERE key = 'incarnation'"}) {
      CHECK(sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK);
    }
    sqlite3_close(db);
  }
  auto log = open_ok(options);
  CHECK(log->incarnation() == 3);
  CHECK(is_incarnation_id(log->incarnation_id()));
  CHECK(log->is_own_incarnation("1"));
  CHECK(log->is_own_incarnation("2"));
  CHECK_FALSE(log->is_own_incarnation("3"));  // issued as an id, never as a number
  CHECK(log->is_own_incarnation(log->incarnation_id()));
  const auto pending = pending_ok(*log);
  REQUIRE(pending.size() == 1);
  CHECK(pending.front().gtrid == "tm1.1.7");  // the decisions survive the upgrade
}

TEST_CASE("decision log: a schema version 2 log is upgraded to 3 and takes TCC branch records") {
  temp_dir dir;
  const auto options = options_for(dir.file("decisions.db"));
  {
    auto log = open_ok(options);
    REQUIRE(log->record(detail::decision_record{"tm1.1.7", detail::decision_state::commit, {"pg"}, 0}).ok());
  }
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(dir.file("decisions.db").c_str(), &db) == SQLITE_OK);
    for (const char* sql : {"DROP TABLE tcc_branches", "UPDATE meta SET value = '2' WHERE key = 'schema_version'"}) {
      CHECK(sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK);
    }
    sqlite3_close(db);
  }
  auto log = open_ok(options);
  REQUIRE(pending_ok(*log).size() == 1);
  const std::string gtrid = "tm1." + log->incarnation_id() + ".1";
  REQUIRE(log->record_tcc_branch(detail::tcc_branch_record{gtrid, 1, "wallet", std::string("a\0b", 3), 0}).ok());
  // A transaction of TCC branches only: its decision names no RM.
  REQUIRE(log->record(detail::decision_record{gtrid, detail::decision_state::commit, {}, 0}).ok());
  auto records = log->tcc_branches();
  REQUIRE(records.ok());
  REQUIRE(records.value().size() == 1);
  CHECK(records.value().front().payload == std::string("a\0b", 3));
  log->mark_complete(gtrid);  // deletes the records with the decision (written at close)
  log.reset();
  auto reopened = open_ok(options);
  auto left = reopened->tcc_branches();
  REQUIRE(left.ok());
  CHECK(left.value().empty());
}

TEST_CASE("decision log: RM identities are pinned durably and re-pinned") {
  temp_dir dir;
  const auto options = options_for(dir.file("decisions.db"));
  {
    auto log = open_ok(options);
    CHECK_FALSE(log->pinned("pg").has_value());
    REQUIRE(log->pin({"pg", "db-aaaa", "postgresql database 'shop'", 0}).ok());
    CHECK(log->pinned("pg")->identity == "db-aaaa");
    CHECK_FALSE(log->pin({"bad name", "db-x", "", 0}).ok());
  }
  auto log = open_ok(options);
  REQUIRE(log->pinned("pg").has_value());
  CHECK(log->pinned("pg")->identity == "db-aaaa");
  CHECK(log->pinned("pg")->description == "postgresql database 'shop'");
  REQUIRE(log->pin({"pg", "db-bbbb", "postgresql database 'shop2'", 0}).ok());
  CHECK(log->pinned("pg")->identity == "db-bbbb");
}

TEST_CASE("decision log: a new log starts at incarnation 1 and every open increments it") {
  temp_dir dir;
  const auto options = options_for(dir.file("decisions.db"));
  for (std::uint64_t expected = 1; expected <= 3; ++expected) {
    auto log = open_ok(options);
    CHECK(log->incarnation() == expected);
    CHECK(log->tm_id() == "tm1");
    CHECK(pending_ok(*log).empty());
    CHECK_FALSE(log->failed());
  }
  // Closed cleanly: the WAL is checkpointed and gone, no half-built file is left behind.
  CHECK_FALSE(std::filesystem::exists(dir.file("decisions.db-wal")));
  CHECK_FALSE(std::filesystem::exists(dir.file("decisions.db.new")));
}

TEST_CASE("decision log: a recorded decision is pending after close and reopen") {
  temp_dir dir;
  const auto options = options_for(dir.file("decisions.db"));
  const auto before =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  {
    auto log = open_ok(options);
    record_ok(*log, decision("tm1.1.1", {"pg", "maria", "pg_2"}));
    auto stamped = decision("tm1.1.2.p3", {"maria"}, decision_state::precommit);
    stamped.created_unix_ms = 1234;
    record_ok(*log, stamped);
    CHECK(pending_ok(*log).size() == 2);  // visible at once: pending() reads the file
    CHECK(log->stats().decisions_written == 2);
  }
  auto log = open_ok(options);
  const auto pending = pending_ok(*log);
  REQUIRE(pending.size() == 2);
  // Oldest first: the explicit stamp 1234 sorts before "now".
  CHECK(pending[0].gtrid == "tm1.1.2.p3");
  CHECK(pending[0].state == decision_state::precommit);
  CHECK(pending[0].branch_rms == std::vector<std::string>{"maria"});
  CHECK(pending[0].created_unix_ms == 1234);
  CHECK(pending[1].gtrid == "tm1.1.1");
  CHECK(pending[1].state == decision_state::commit);
  CHECK(pending[1].branch_rms == std::vector<std::string>{"pg", "maria", "pg_2"});
  CHECK(pending[1].created_unix_ms >= before);
}

TEST_CASE("decision log: a completed decision is gone after close and reopen") {
  temp_dir dir;
  const auto options = options_for(dir.file("decisions.db"));
  {
    auto log = open_ok(options);
    record_ok(*log, decision("tm1.1.1"));
    record_ok(*log, decision("tm1.1.2"));
    log->mark_complete("tm1.1.1");
    // Not forced, yet written by the writer on its own shortly after (about 50 ms).
    for (int i = 0; i < 500 && log->stats().completions_written == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(log->stats().completions_written == 1);
    CHECK(pending_gtrids(*log) == std::vector<std::string>{"tm1.1.2"});
    log->mark_complete("tm1.1.2");  // queued only: the close writes it
  }
  auto log = open_ok(options);
  CHECK(pending_ok(*log).empty());
}

TEST_CASE("decision log: malformed and duplicate decisions are refused without failing the log") {
  temp_dir dir;
  auto log = open_ok(options_for(dir.file("decisions.db")));
  record_ok(*log, decision("tm1.1.1"));

  auto duplicate = log->record(decision("tm1.1.1"));
  REQUIRE_FALSE(duplicate.ok());
  CHECK(duplicate.error().code == xa_code::duplicate_id);
  CHECK(duplicate.outcome() == write_outcome::unknown);  // the decision already there is what counts

  for (const auto& bad : {decision("tm2.1.1"), decision("tm1.1"), decision("tm1.1.1,x"),
                          decision("tm1.1.4", {"pg", "a,b"}), decision("tm1.1.5", {"pg", ""})}) {
    auto refused = log->record(bad);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().code == xa_code::invalid);
    CHECK(refused.outcome() == write_outcome::not_written);
  }
  CHECK_FALSE(log->failed());
  record_ok(*log, decision("tm1.1.6"));
  CHECK(pending_gtrids(*log) == std::vector<std::string>{"tm1.1.1", "tm1.1.6"});
}

TEST_CASE("decision log: a decision is durable once record() returns, even if the process dies at once") {
  temp_dir dir;
  const auto options = options_for(dir.file("decisions.db"));
  struct ending {
    const char* name;
    bool kill;
  };
  for (const ending end : {ending{"_exit(0) without closing", false}, ending{"SIGKILL", true}}) {
    CAPTURE(end.name);
    const std::string gtrid = std::string("tm1.1.") + (end.kill ? "2" : "1");
    const int status = run_child([&] {
      auto opened = sqlite_decision_store::open(options);
      if (!opened) ::_exit(2);
      auto log = std::move(opened).value();
      if (!log->record(decision(gtrid))) ::_exit(3);
      if (end.kill) ::raise(SIGKILL);
      ::_exit(0);  // skips the destructor: no clean close, no checkpoint
    });
    if (end.kill) {
      REQUIRE(WIFSIGNALED(status));
      CHECK(WTERMSIG(status) == SIGKILL);
    } else {
      REQUIRE(WIFEXITED(status));
      REQUIRE(WEXITSTATUS(status) == 0);
    }
    // The WAL survived the unclean end; the lock died with the child.
    CHECK(std::filesystem::exists(dir.file("decisions.db-wal")));
    auto log = open_ok(options);
    CHECK(contains(pending_gtrids(*log), gtrid));
  }
  auto log = open_ok(options);
  CHECK(pending_gtrids(*log) == std::vector<std::string>{"tm1.1.1", "tm1.1.2"});
  CHECK(log->incarnation() == 5);  // two children, two parent reopens, this one
}

TEST_CASE("decision log: a log of another tm_id is refused, naming both") {
  temp_dir dir;
  open_ok(options_for(dir.file("decisions.db"), "alpha"));
  const auto message = open_refused(options_for(dir.file("decisions.db"), "beta"));
  CHECK(message.find("'alpha'") != std::string::npos);
  CHECK(message.find("'beta'") != std::string::npos);
  // The refusal changed nothing: the owner still opens it, at the next incarnation.
  CHECK(open_ok(options_for(dir.file("decisions.db"), "alpha"))->incarnation() == 2);
}

TEST_CASE("decision log: an invalid tm_id or path is refused") {
  temp_dir dir;
  CHECK(sqlite_decision_store::open(options_for(dir.file("decisions.db"), "bad.id")).error().code == xa_code::invalid);
  CHECK(sqlite_decision_store::open(options_for(dir.file("decisions.db"), "")).error().code == xa_code::invalid);
  CHECK(sqlite_decision_store::open(options_for("")).error().code == xa_code::invalid);
  CHECK(sqlite_decision_store::open(options_for(dir.file("missing/decisions.db"))).error().code == xa_code::invalid);
}

TEST_CASE("decision log: a file that is not a database is refused and left as it is") {
  temp_dir dir;
  const auto path = dir.file("decisions.db");
  std::string garbage(8192, '\0');
  std::mt19937 random(42);
  for (char& byte : garbage) byte = static_cast<char>(random());
  { std::ofstream(path, std::ios::binary) << garbage; }
  ::chmod(path.c_str(), 0600);

  const auto message = open_refused(options_for(path));
  CHECK(message.find("damaged or not an SQLite database") != std::string::npos);
  CHECK(read_file(path) == garbage);
  CHECK_FALSE(std::filesystem::exists(path + "-wal"));
  open_refused(options_for(path));  // still refused: nothing was "repaired"

  // An empty file is no log either (a new log is never built in place, so it means damage).
  { std::ofstream(path, std::ios::binary | std::ios::trunc); }
  CHECK(open_refused(options_for(path)).find("not an xatm decision log") != std::string::npos);
  CHECK(std::filesystem::file_size(path) == 0);
}

TEST_CASE("decision log: a damaged log is refused, never repaired") {
  temp_dir dir;
  const auto path = dir.file("decisions.db");
  const auto options = options_for(path);
  {
    auto log = open_ok(options);
    record_concurrently(*log, 8, 250);
  }
  REQUIRE_FALSE(std::filesystem::exists(path + "-wal"));  // all of it is in the main file now
  const std::string intact = read_file(path);
  REQUIRE(intact.size() >= 16 * 4096);

  SUBCASE("bytes overwritten in the middle") {
    // Across the page boundary nearest the middle: whatever the pages there are, the open must
    // refuse the file. (SQLite keeps no page checksums: damage that leaves a page well formed,
    // say inside one gtrid's text, is beyond what PRAGMA quick_check can see.)
    std::string damage(1000, '\0');
    std::mt19937 random(7);
    for (char& byte : damage) byte = static_cast<char>(random());
    const auto page_size = static_cast<std::size_t>(static_cast<unsigned char>(intact[16]) << 8 |
                                                    static_cast<unsigned char>(intact[17]));  // header bytes 16-17
    REQUIRE(page_size >= 512);
    const long offset = static_cast<long>(intact.size() / 2 / page_size * page_size) - 300;
    write_file_at(path, offset, damage);
    const std::string damaged = read_file(path);
    const auto message = open_refused(options);
    MESSAGE("refusal: " << message);
    CHECK(message.find("never delete or recreate") != std::string::npos);
    CHECK(read_file(path) == damaged);
    open_refused(options);
  }
  SUBCASE("truncated to half") {
    std::filesystem::resize_file(path, intact.size() / 2);
    const auto message = open_refused(options);
    MESSAGE("refusal: " << message);
    CHECK(message.find("never delete or recreate") != std::string::npos);
    CHECK(std::filesystem::file_size(path) == intact.size() / 2);
    open_refused(options);
  }
}

TEST_CASE("decision log: an unknown schema version and a foreign SQLite database are refused") {
  temp_dir dir;
  const auto path = dir.file("decisions.db");
  open_ok(options_for(path));
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'", nullptr, nullptr, nullptr) ==
            SQLITE_OK);
    sqlite3_close(db);
  }
  CHECK(open_refused(options_for(path)).find("schema version 99") != std::string::npos);

  const auto other = dir.file("other.db");
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(other.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  ::chmod(other.c_str(), 0600);
  CHECK(open_refused(options_for(other)).find("not an xatm decision log") != std::string::npos);
}

TEST_CASE("decision log: a lost -wal after an unclean shutdown is refused") {
  temp_dir dir;
  const auto path = dir.file("decisions.db");
  const auto options = options_for(path);
  const int status = run_child([&] {
    auto opened = sqlite_decision_store::open(options);
    if (!opened || !opened.value()->record(decision("tm1.1.1"))) ::_exit(2);
    ::raise(SIGKILL);
  });
  REQUIRE(WIFSIGNALED(status));
  REQUIRE(std::filesystem::remove(path + "-wal"));
  const auto message = open_refused(options);
  CHECK(message.find("-wal is missing") != std::string::npos);
  open_refused(options);  // the empty -wal SQLite made while looking must not hide the loss
}

TEST_CASE("decision log: one user at a time, in this process or another") {
  temp_dir dir;
  const auto path = dir.file("decisions.db");
  const auto options = options_for(path);
  {
    auto log = open_ok(options);
    const auto message = open_refused(options);
    CHECK(message.find("is in use by process " + std::to_string(::getpid())) != std::string::npos);
    auto holder = sqlite_decision_store::lock_holder(path);
    REQUIRE(holder.ok());
    CHECK(holder.value() == std::optional<int>(::getpid()));
  }
  auto holder = sqlite_decision_store::lock_holder(path);
  REQUIRE(holder.ok());
  CHECK_FALSE(holder.value().has_value());

  // Another process holds it: the child opens, tells the parent, and waits to be told to go.
  int to_parent[2];
  int to_child[2];
  REQUIRE(::pipe(to_parent) == 0);
  REQUIRE(::pipe(to_child) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    auto opened = sqlite_decision_store::open(options);
    const char ready = opened ? 'y' : 'n';
    if (::write(to_parent[1], &ready, 1) != 1) ::_exit(2);
    char go = 0;
    if (::read(to_child[0], &go, 1) != 1) ::_exit(3);
    ::_exit(0);
  }
  char ready = 0;
  REQUIRE(::read(to_parent[0], &ready, 1) == 1);
  REQUIRE(ready == 'y');
  CHECK(open_refused(options).find("is in use by process " + std::to_string(child)) != std::string::npos);
  holder = sqlite_decision_store::lock_holder(path);
  REQUIRE(holder.ok());
  CHECK(holder.value() == std::optional<int>(child));
  REQUIRE(::write(to_child[1], "g", 1) == 1);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  for (int fd : {to_parent[0], to_parent[1], to_child[0], to_child[1]}) ::close(fd);
  CHECK(open_ok(options)->incarnation() == 3);
}

TEST_CASE("decision log: files are 0600 whatever the umask") {
  temp_dir dir;
  const auto path = dir.file("decisions.db");
  const mode_t previous = ::umask(022);
  auto log = open_ok(options_for(path));
  ::umask(previous);
  record_ok(*log, decision("tm1.1.1"));
  for (const char* suffix : {"", "-wal", "-shm", ".lock"}) {
    CAPTURE(suffix);
    CHECK(file_mode(path + suffix) == std::optional<mode_t>(0600));
  }
}

TEST_CASE("decision log: a directory writable by group or others is refused") {
  temp_dir dir;
  const auto path = dir.file("decisions.db");
  for (const mode_t mode : {mode_t{0770}, mode_t{0702}, mode_t{01777}}) {
    CAPTURE(mode);
    REQUIRE(::chmod(dir.path.c_str(), mode) == 0);
    CHECK(open_refused(options_for(path)).find("writable by group or others") != std::string::npos);
  }
  CHECK_FALSE(std::filesystem::exists(path));
  REQUIRE(::chmod(dir.path.c_str(), 0700) == 0);
  open_ok(options_for(path));
}

TEST_CASE("decision log: group commit shares fsyncs between concurrent committers") {
  temp_dir dir;
  auto log = open_ok(options_for(dir.file("decisions.db")));
  constexpr int threads = 16;
  constexpr int per_thread = 200;
  record_concurrently(*log, threads, per_thread);
  const auto stats = log->stats();
  CHECK(stats.decisions_written == threads * per_thread);
  const double ratio = static_cast<double>(stats.batches) / static_cast<double>(stats.decisions_written);
  MESSAGE("16 committers: " << stats.batches << " batches (fsyncs) for " << stats.decisions_written
                            << " decisions = " << ratio << " fsyncs per decision");
  CHECK(ratio < 1.0);
  CHECK(pending_ok(*log).size() == threads * per_thread);
}

namespace {

// Through the faulty VFS: records tm1.1.1, then tm1.1.2 with `inject` on, and checks that the
// failure says so (`outcome`, SQLite's `native_code`, a message containing `says`) and fails the
// log for good.
void check_fails_for_good(const std::string& path, void (*inject)(bool), write_outcome outcome, int native_code,
                          const char* says) {
  auto log = open_ok(options_for(path, "tm1", testing::faulty_vfs_name));
  record_ok(*log, decision("tm1.1.1"));
  const auto synced_before = testing::synced_count();

  inject(true);
  auto failed = log->record(decision("tm1.1.2"));
  testing::clear_faults();
  REQUIRE_FALSE(failed.ok());
  MESSAGE("failure: " << failed.error().message);
  CHECK(failed.outcome() == outcome);
  CHECK(failed.error().code == xa_code::rm_error);
  CHECK(failed.error().native_code == native_code);
  CHECK(failed.error().message.find(says) != std::string::npos);
  CHECK(failed.error().message.find("restart") != std::string::npos);
  CHECK(log->failed());

  // Failed for good, although the disk "works" again: nothing is retried, written or synced.
  auto later = log->record(decision("tm1.1.3"));
  REQUIRE_FALSE(later.ok());
  CHECK(later.outcome() == write_outcome::not_written);
  CHECK(later.error().message.find("failed earlier") != std::string::npos);
  log->mark_complete("tm1.1.1");
  CHECK_FALSE(log->pending().ok());
  CHECK(testing::synced_count() == synced_before);
}

}  // namespace

TEST_CASE("decision log: a write or fsync failure fails the log for good; the file still opens afterwards") {
  testing::register_faulty_vfs();
  temp_dir dir;
  const auto path = dir.file("decisions.db");
  SUBCASE("fsync fails") {
    check_fails_for_good(path, testing::set_sync_failure, write_outcome::unknown, SQLITE_IOERR_FSYNC, "fsync");
    auto reopened = open_ok(options_for(path));
    const auto gtrids = pending_gtrids(*reopened);
    CHECK(contains(gtrids, "tm1.1.1"));        // acknowledged: there, and still pending
    CHECK_FALSE(contains(gtrids, "tm1.1.3"));  // refused before any write
    // tm1.1.2 is in doubt: its frames reached the file but their fsync failed. Either is correct.
    MESSAGE("the decision whose fsync failed is " << std::string(contains(gtrids, "tm1.1.2") ? "present" : "absent"));
  }
  SUBCASE("the disk is full") {
    check_fails_for_good(path, testing::set_disk_full, write_outcome::not_written, SQLITE_FULL, "full");
    auto reopened = open_ok(options_for(path));
    // Nothing of tm1.1.2 could be written, so it cannot be there.
    CHECK(pending_gtrids(*reopened) == std::vector<std::string>{"tm1.1.1"});
  }
}
