// Decision-log faults against the real servers (docs/faults.md, rows 1-4 and 14): what an
// application and an operator see when the log's fsync fails, its disk is full, the file is
// damaged, belongs to another tm_id, or sits in a directory others can write. The cases move
// money PostgreSQL -> MariaDB (the crash bank of support/invariants.h) and end with the same
// verdict: after a restart (or after the operator restores the log) recovery leaves both
// servers in agreement, nothing of ours prepared, money conserved. The claims:
//  - nothing is reported committed without a durable decision, and a failed log refuses every
//    later commit until the TM is restarted;
//  - a damaged or foreign log stops the TM and xatm-recover: they never presume abort over it,
//    so the branches its decisions cover stay prepared until the log is back;
//  - the log's files are private (0600), and a directory others can write is refused.
// I/O faults come from the fault-injecting SQLite VFS (lib/testing/faulty_vfs.h) given to the TM as
// tm_wiring::log_vfs (lib/core/tm_access.h); logs left by a crash come from the crash workload, killed by a crash
// point (crash/crash_harness.h). Needs the `servers` fixture.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/tm_access.h"
#include "crash/crash_harness.h"
#include "crash/workload_common.h"
#include "testing/faulty_vfs.h"
#include "support/log_file.h"
#include "support/servers.h"
#include "support/temp_dir.h"
#include "support/tool_run.h"
#include "xatm/connection_settings.h"
#include "xatm/error.h"
#include "mysql/mysql.h"
#include "xatm/transaction_manager.h"

#ifndef XATM_RECOVER_BIN
#error "XATM_RECOVER_BIN must name the xatm-recover binary (set by tests/CMakeLists.txt)"
#endif

using namespace xatm;              // NOLINT(google-build-using-namespace): test file
using namespace xatm::crash_test;  // NOLINT(google-build-using-namespace): test file

namespace {

namespace fs = std::filesystem;
using test::tool_run;

// ---- files -------------------------------------------------------------------------------------

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read " << path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Writes `content` as the whole file, creating it 0600 (as the log's files must be).
void write_file(const fs::path& path, const std::string& content) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  REQUIRE_MESSAGE(fd >= 0, "cannot write " << path);
  const auto written = ::write(fd, content.data(), content.size());
  ::close(fd);
  REQUIRE(written == static_cast<ssize_t>(content.size()));
}

unsigned mode_of(const fs::path& path) {
  struct stat status {};
  REQUIRE_MESSAGE(::stat(path.c_str(), &status) == 0, "cannot stat " << path);
  return status.st_mode & 07777;
}

// Sets the process's umask for the life of the object.
struct umask_for_scope {
  mode_t previous;
  explicit umask_for_scope(mode_t mask) : previous(::umask(mask)) {}
  ~umask_for_scope() { ::umask(previous); }
  umask_for_scope(const umask_for_scope&) = delete;
  umask_for_scope& operator=(const umask_for_scope&) = delete;
};

// ---- transaction managers and transfers --------------------------------------------------------

tm_options options_for(const std::string& tm_id, const fs::path& log_path) {
  tm_options options;
  options.tm_id = tm_id;
  options.log_path = log_path.string();
  options.recovery_interval = std::chrono::milliseconds(0);  // recovery runs only when a test says so
  return options;
}

// A TM on the scenario's log opened through the fault-injecting VFS, with PostgreSQL ("pg")
// registered; the caller registers "maria".
std::unique_ptr<transaction_manager> open_faulty_tm(const scenario& s) {
  testing::register_faulty_vfs();
  tm_options options = options_for(s.tm_id(), s.log_path());
  auto tm = detail::tm_access::open(options, {.log_vfs = testing::faulty_vfs_name});
  tm->register_rm("pg", "postgresql", test::servers().pg);
  return tm;
}

// Opens and closes a TM on the scenario's log without starting a transaction (so without
// recovery): the close checkpoints everything into the main file and removes the -wal.
void close_log_cleanly(const scenario& s) {
  { transaction_manager tm(options_for(s.tm_id(), s.log_path())); }
  REQUIRE_FALSE(fs::exists(s.log_path().string() + "-wal"));
}

// One transfer of `amount` from PostgreSQL account `account` to the MariaDB account of the same
// number, with ledger rows for `token`, written in `tx` on the given connections; commit() is up
// to the test.
void write_transfer(global_transaction& tx, connection& pg, connection& maria, const test::transfer_bank& bank,
                    const std::string& token, int account, long amount) {
  const xatm::workload::transfer_sql sql(bank.suffix);
  tx.enlist(pg);
  tx.enlist(maria);
  for (auto& [rm, statement] :
       std::vector<std::pair<connection*, std::string>>{{&pg, sql.debit(account, amount)},
                                                        {&pg, sql.ledger_row(token, account, -amount)},
                                                        {&maria, sql.credit(account, amount)},
                                                        {&maria, sql.ledger_row(token, account, amount)}}) {
    auto done = rm->exec(statement);
    REQUIRE_MESSAGE(done.ok(), statement << ": " << done.error().describe());
  }
}

// A log left by a TM process killed right after a commit decision became durable: the decision
// is in the log's -wal only (the process never checkpointed it) and both its branches are
// prepared. Answers that transfer.
leftover leave_durable_decision(scenario& s) {
  crash_test::workload w(s, {.crash_at = "after_decision_durable:2"});
  const leftover left = in_flight_of(w);
  REQUIRE(test::prepared_branches_of(s.tm_id()) == std::vector<std::string>{left.gtrid, left.gtrid});
  REQUIRE(fs::exists(s.log_path().string() + "-wal"));
  return left;
}

// Commits `tx` with the log's fault switched on (testing::set_sync_failure or testing::set_disk_full),
// then switches every fault off again: the disk "works" once more, and the TM must stay failed
// all the same. commit() must throw log_failure_error; answers its message.
std::string commit_under_fault(global_transaction& tx, void (*set_fault)(bool)) {
  struct clear_faults_at_exit {
    ~clear_faults_at_exit() { testing::clear_faults(); }  // whatever commit() does, later tests see a sound disk
  } guard;
  set_fault(true);
  try {
    const auto outcome = tx.commit();
    FAIL("commit() returned " << static_cast<int>(outcome) << " although the decision log failed");
  } catch (const log_failure_error& e) {
    return e.what();
  }
  return {};
}

// ---- xatm-recover ------------------------------------------------------------------------------

// xatm-recover on `log` with both servers (and `extra` arguments); its output goes to files in
// `output_dir`.
tool_run run_xatm_recover(const fs::path& log, const fs::path& output_dir, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv{XATM_RECOVER_BIN,
                                "--log",
                                log.string(),
                                "--rm",
                                "pg=postgresql:" + test::servers().pg,
                                "--rm",
                                "maria=mariadb:" + test::servers().mysql};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return test::run_tool(argv, output_dir, std::chrono::seconds(30));  // "does not hang", nothing finer
}

// The tool refused to work: exit code 2 (nothing was done), and stderr says `why` about `log`.
void check_tool_refused(const tool_run& run, const fs::path& log, const std::string& why) {
  INFO("xatm-recover " << run.status.describe() << "\nstdout: " << run.out << "\nstderr: " << run.err);
  CHECK((run.status.exited && run.status.code == 2));
  CHECK(run.err.find(log.string()) != std::string::npos);
  CHECK(run.err.find(why) != std::string::npos);
  CHECK(run.err.find(test::mysql_password) == std::string::npos);
  CHECK(run.out.find("result:") == std::string::npos);  // no report: it did not even start
}

// Constructing a TM on `options` (wired as `wiring` says) throws E; answers its message.
template <class E>
std::string tm_refusal(const tm_options& options, const detail::tm_wiring& wiring = {}) {
  try {
    auto tm = detail::tm_access::open(options, wiring);
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("the TM threw the wrong exception: " << e.what());
  }
  FAIL("the TM opened the log " << options.log_path);
  return {};
}

}  // namespace

// ---- row 1: the decision log's fsync fails (EIO) ------------------------------------------------

TEST_CASE(
    "a failed fsync of the decision: commit() throws log_failure_error, never committed; the TM refuses "
    "later commits; restart and recovery make both servers agree") {
  scenario s("log_fsync");
  auto tm = open_faulty_tm(s);
  tm->register_rm("maria", "mariadb", test::servers().mysql);
  xatm::workload::ack_file acks(s.next_file("acks").string());
  std::string undecided_gtrid;
  {
    auto pg = xatm::workload::open_pg_session(*tm);
    auto maria = xatm::workload::open_maria_session(*tm, acks);
    {
      // A commit before the fault. (It also puts the failing write in the middle of the -wal,
      // past its header: the frames of that record reach the file, only their fsync fails.)
      auto tx = tm->begin();
      write_transfer(tx, *pg, *maria, s.bank(), "fsync-0", 3, 100);
      REQUIRE(tx.commit() == commit_outcome::committed);
      acks.ack("fsync-0", test::ack_state::committed, tx.gtrid());
    }
    auto tx = tm->begin();
    undecided_gtrid = tx.gtrid();
    write_transfer(tx, *pg, *maria, s.bank(), "fsync-1", 1, 100);
    acks.ack("fsync-1", test::ack_state::begun, tx.gtrid());

    const std::string message = commit_under_fault(tx, testing::set_sync_failure);
    acks.ack("fsync-1", test::ack_state::log_failure, tx.gtrid());
    MESSAGE("commit() over a failed fsync: " << message);
    CHECK(message.find(tx.gtrid() + " is undecided until restart and recovery") != std::string::npos);
    CHECK(message.find("fsync failed") != std::string::npos);
    CHECK(message.find("restart") != std::string::npos);
    CHECK(tm->statistics().committed == 1);  // fsync-0 only
    CHECK(tm->statistics().decisions_logged == 1);
    // The record may be on disk: the branches stay prepared for recovery to decide.
    CHECK(test::prepared_branches_of(s.tm_id()) == std::vector<std::string>{tx.gtrid(), tx.gtrid()});
    CHECK_FALSE(ledger_has(s.bank(), "fsync-1"));
  }
  {
    // Even with the disk back, the TM takes no further commit, and says why.
    auto pg = xatm::workload::open_pg_session(*tm);
    auto maria = xatm::workload::open_maria_session(*tm, acks);
    auto tx = tm->begin();
    write_transfer(tx, *pg, *maria, s.bank(), "fsync-2", 2, 100);
    CHECK_THROWS_WITH_AS(tx.commit(), doctest::Contains("refuses commits until it is restarted and recovered"),
                         log_failure_error);
    acks.ack("fsync-2", test::ack_state::rolled_back, tx.gtrid());
    CHECK(test::prepared_branches_of(s.tm_id()) == std::vector<std::string>{undecided_gtrid, undecided_gtrid});
  }
  tm.reset();  // the failed log closes untouched

  // A new TM on the same log (default VFS) recovers from what the file holds: commit when the
  // record reached it, presumed abort when it did not. Either is correct; both servers agree.
  const auto summary = recover_with_library(s);
  const std::string outcome = summary.outcome_of(undecided_gtrid);
  MESSAGE("after restart, recovery resolved the transaction whose fsync failed: " << outcome);
  CHECK((outcome == "committed" || outcome == "rolled back"));
  CHECK(ledger_has(s.bank(), "fsync-1") == (outcome == "committed"));
  check_invariants(s, "after restart and recovery");
}

// ---- row 2: the log's disk is full --------------------------------------------------------------

TEST_CASE(
    "a full disk under the decision log: commit() rolls back with log_failure_error saying the log is full; "
    "a decision made before is not lost") {
  scenario s("log_full");
  // A decision made before the fault that is still needed: the TM process that made it died at
  // once, and MariaDB is unreachable when the TM restarts, so its start-up recovery commits the
  // PostgreSQL branch and must keep the decision for the MariaDB one.
  const leftover earlier = leave_durable_decision(s);
  std::atomic<bool> maria_reachable{false};
  const auto maria_settings = connection_settings::parse(test::servers().mysql).value();
  // Transfers of this TM use a bank of their own: the earlier MariaDB branch keeps its row locks.
  test::transfer_bank bank{.suffix = "log_full_new", .accounts = 2, .initial_balance = 1000};
  bank.create();
  auto tm = open_faulty_tm(s);
  detail::tm_access::register_rm(
      *tm, "maria", [&maria_reachable, maria_settings]() -> result<std::unique_ptr<resource_manager>> {
        if (!maria_reachable.load())
          return make_failure(xa_code::rm_failure, "unreachable (the test says so)", "maria");
        return mysql::connect("maria", maria_settings);
      });
  tm->begin().rollback();  // the start-up recovery
  REQUIRE(test::decisions_in_log_file(s.log_path()) == std::vector<std::string>{earlier.gtrid});
  REQUIRE(test::prepared_branches_of(s.tm_id()) == std::vector<std::string>{earlier.gtrid});  // MariaDB's
  maria_reachable = true;

  test::ack_log outcomes;  // of this TM's transfers, for the invariants of `bank`
  {
    auto pg = tm->connect("pg");
    auto maria = tm->connect("maria");
    auto tx = tm->begin();
    write_transfer(tx, *pg, *maria, bank, "full-1", 1, 100);
    const std::string message = commit_under_fault(tx, testing::set_disk_full);
    outcomes.tokens["full-1"] = test::ack_state::rolled_back;
    MESSAGE("commit() with the log's disk full: " << message);
    CHECK(message.find(tx.gtrid() + " rolled back") != std::string::npos);
    CHECK(message.find("SQLITE_FULL: the disk is full") != std::string::npos);
    // Nothing of it reached the log, so it was rolled back at once: nothing of it is prepared.
    CHECK(test::prepared_branches_of(s.tm_id()) == std::vector<std::string>{earlier.gtrid});
  }
  {
    auto pg = tm->connect("pg");
    auto maria = tm->connect("maria");
    auto tx = tm->begin();
    write_transfer(tx, *pg, *maria, bank, "full-2", 2, 100);
    CHECK_THROWS_WITH_AS(tx.commit(), doctest::Contains("refuses commits until it is restarted and recovered"),
                         log_failure_error);
    outcomes.tokens["full-2"] = test::ack_state::rolled_back;
  }
  tm.reset();

  // The earlier decision is still in the file, and nothing else is; recovery finishes it.
  CHECK(test::decisions_in_log_file(s.log_path()) == std::vector<std::string>{earlier.gtrid});
  const auto summary = recover_with_library(s);
  CHECK(summary.outcome_of(earlier.gtrid) == "committed");
  check_invariants(s, "after restart and recovery");
  const auto check = test::check_invariants(bank, s.tm_id(), s.log_path(), outcomes);
  CHECK_MESSAGE(check.ok(), "the new transfers' bank: " << check.describe());
  bank.drop();
}

// ---- row 3: a corrupt or truncated log, a missing -wal -----------------------------------------

TEST_CASE(
    "a damaged decision log stops the TM and xatm-recover; nobody presumes abort, and the restored log "
    "commits what it decided") {
  scenario s("log_damage");
  const leftover decided = leave_durable_decision(s);
  const fs::path log = s.log_path();
  const fs::path wal = log.string() + "-wal";
  std::string why;                // what both refusals must say
  std::function<void()> restore;  // what the operator does: put the saved copy back

  SUBCASE("bytes overwritten in the middle of the main file") {
    close_log_cleanly(s);  // the decision is in the main file now
    const std::string intact = read_file(log);
    const std::size_t page_size = static_cast<unsigned char>(intact.at(16)) << 8 |
                                  static_cast<unsigned char>(intact.at(17));  // header bytes 16-17
    REQUIRE(intact.size() >= 4 * page_size);
    // 1000 random bytes across the page boundary nearest the middle: the end of one page's
    // cells and the next page's header. (SQLite keeps no page checksums: damage that leaves a
    // page well formed, say inside a gtrid's text, is beyond what the log can notice.)
    std::string damaged = intact;
    std::mt19937 random(7);
    const std::size_t offset = intact.size() / 2 / page_size * page_size - 300;
    for (std::size_t i = offset; i < offset + 1000; ++i) damaged[i] = static_cast<char>(random());
    write_file(log, damaged);
    why = "is damaged";
    restore = [log, intact] { write_file(log, intact); };
  }
  SUBCASE("the main file truncated to half") {
    close_log_cleanly(s);
    const std::string intact = read_file(log);
    fs::resize_file(log, intact.size() / 2);
    why = "is damaged";
    restore = [log, intact] { write_file(log, intact); };
  }
  SUBCASE("the -wal of an unclean shutdown deleted") {
    const std::string saved = read_file(wal);  // the decision is only in here
    REQUIRE(fs::remove(wal));
    why = "was not closed cleanly and its write-ahead log " + wal.string() + " is missing";
    restore = [wal, saved] { write_file(wal, saved); };
  }
  SUBCASE("the -wal of an unclean shutdown deleted, then the log looked at with sqlite3") {
    const std::string saved = read_file(wal);
    REQUIRE(fs::remove(wal));
    // Any reader (an operator's sqlite3 shell) makes SQLite create an empty -wal: it must not
    // pass for the lost one.
    CHECK(test::decisions_in_log_file(log).empty());  // the decision is gone with the -wal
    REQUIRE((fs::exists(wal) && fs::file_size(wal) == 0));
    why = "was not closed cleanly and its write-ahead log " + wal.string() + " is missing (or empty)";
    restore = [wal, saved] { write_file(wal, saved); };
  }
  const std::string damaged_main = read_file(log);
  const bool wal_found = fs::exists(wal);  // absent, or (after a reader's look) empty

  const std::string refusal = tm_refusal<log_failure_error>(options_for(s.tm_id(), log));
  MESSAGE("the TM: " << refusal);
  CHECK(refusal.find(log.string()) != std::string::npos);
  CHECK(refusal.find(why) != std::string::npos);
  CHECK(refusal.find("never delete or recreate a decision log") != std::string::npos);

  // The tool, as an operator would first run it: no --tm-id, so it reads the owner from the log.
  const tool_run run = run_xatm_recover(log, log.parent_path());
  MESSAGE("xatm-recover: " << run.err);
  check_tool_refused(run, log, why);

  // Nobody repaired or recreated anything, nobody presumed abort: the files are as they were
  // found, a second start is refused the same way, the decided transfer is still prepared.
  CHECK(read_file(log) == damaged_main);
  CHECK(fs::exists(wal) == wal_found);
  if (wal_found) CHECK(fs::file_size(wal) == 0);
  CHECK(tm_refusal<log_failure_error>(options_for(s.tm_id(), log)).find(why) != std::string::npos);
  CHECK(test::prepared_branches_of(s.tm_id()) == std::vector<std::string>{decided.gtrid, decided.gtrid});

  // The operator restores the log from the copy; recovery then commits what it decided.
  restore();
  const auto summary = recover_with_tool(s);
  CHECK(summary.outcome_of(decided.gtrid) == "committed");
  CHECK(ledger_has(s.bank(), decided.token));
  check_invariants(s, "after the restored log was recovered");
}

// ---- row 4: a log of another tm_id --------------------------------------------------------------

TEST_CASE("two TMs' logs swapped: each TM and xatm-recover --tm-id refuse the other's log, naming both tm_ids") {
  test::temp_dir dir("xatm-log-fault");
  const std::string a = "logfault-" + std::to_string(::getpid()) + "-a";
  const std::string b = "logfault-" + std::to_string(::getpid()) + "-b";
  const fs::path log_a = dir.path / "a.db";
  const fs::path log_b = dir.path / "b.db";
  { transaction_manager tm(options_for(a, log_a)); }
  { transaction_manager tm(options_for(b, log_b)); }
  auto swap_logs = [&] {
    fs::rename(log_a, dir.path / "swapping.db");
    fs::rename(log_b, log_a);
    fs::rename(dir.path / "swapping.db", log_b);
  };
  swap_logs();
  const std::string b_log_before = read_file(log_a);

  for (const auto& [tm_id, owner, path] : {std::tuple{a, b, log_a}, std::tuple{b, a, log_b}}) {
    CAPTURE(tm_id);
    const std::string refusal = tm_refusal<configuration_error>(options_for(tm_id, path));
    MESSAGE("the TM: " << refusal);
    CHECK(refusal.find("belongs to tm_id '" + owner + "', not to the configured tm_id '" + tm_id + "'") !=
          std::string::npos);
    const tool_run run = run_xatm_recover(path, dir.path, {"--tm-id", tm_id});
    MESSAGE("xatm-recover --tm-id " << tm_id << ": " << run.err);
    check_tool_refused(run, path, "belongs to tm_id '" + owner + "', not to the configured tm_id '" + tm_id + "'");
  }
  CHECK(read_file(log_a) == b_log_before);  // refused means untouched
  CHECK_FALSE(fs::exists(log_a.string() + "-wal"));

  swap_logs();  // back where they belong: both open again
  CHECK_NOTHROW(transaction_manager{options_for(a, log_a)});
  CHECK_NOTHROW(transaction_manager{options_for(b, log_b)});
}

// ---- row 14: file permissions -------------------------------------------------------------------

TEST_CASE(
    "the log and its -wal and -shm are 0600 even under umask 0; a log directory or file others can write "
    "is refused by the TM and by xatm-recover") {
  scenario s("log_mode");
  const fs::path log = s.log_path();
  const fs::path dir = log.parent_path();
  xatm::workload::ack_file acks(s.next_file("acks").string());
  {
    const umask_for_scope open_umask(0);
    transaction_manager tm(options_for(s.tm_id(), log));
    tm.register_rm("pg", "postgresql", test::servers().pg);
    tm.register_rm("maria", "mariadb", test::servers().mysql);
    auto pg = tm.connect("pg");
    auto maria = tm.connect("maria");
    auto tx = tm.begin();
    write_transfer(tx, *pg, *maria, s.bank(), "mode-1", 1, 100);
    REQUIRE(tx.commit() == commit_outcome::committed);
    acks.ack("mode-1", test::ack_state::committed, tx.gtrid());
    REQUIRE(tm.statistics().decisions_logged == 1);                         // a two-phase commit: it wrote the log
    CHECK(read_file(log).find(test::mysql_password) == std::string::npos);  // RM names only, no credentials
    for (const char* suffix : {"", "-wal", "-shm"}) {
      const fs::path file = log.string() + suffix;
      CAPTURE(file);
      REQUIRE(fs::exists(file));
      CHECK(mode_of(file) == 0600);
    }
  }
  CHECK(mode_of(log) == 0600);

  for (const unsigned mode : {0777U, 0770U, 0702U}) {
    CAPTURE(mode);
    fs::permissions(dir, static_cast<fs::perms>(mode));
    const std::string refusal = tm_refusal<configuration_error>(options_for(s.tm_id(), log));
    MESSAGE("the TM: " << refusal);
    CHECK(refusal.find("decision log directory " + dir.string() + " is writable by group or others") !=
          std::string::npos);
    CHECK(refusal.find("chmod go-w " + dir.string()) != std::string::npos);
    const tool_run run = run_xatm_recover(log, dir);
    check_tool_refused(run, dir, "is writable by group or others");
    fs::permissions(dir, fs::perms::owner_all);
  }

  fs::permissions(log, static_cast<fs::perms>(0660));
  const std::string refusal = tm_refusal<configuration_error>(options_for(s.tm_id(), log));
  MESSAGE("the TM: " << refusal);
  CHECK(refusal.find(log.string() + " is writable by group or others") != std::string::npos);
  check_tool_refused(run_xatm_recover(log, dir), log, "is writable by group or others");
  fs::permissions(log, static_cast<fs::perms>(0600));

  CHECK_NOTHROW(transaction_manager{options_for(s.tm_id(), log)});  // the refusals changed nothing
  check_invariants(s, "after the refusals");
}

// ---- the test hook ------------------------------------------------------------------------------

TEST_CASE("a log VFS (tm_wiring::log_vfs) naming no registered SQLite VFS is a configuration_error") {
  test::temp_dir dir("xatm-log-fault");
  tm_options options = options_for("logfault-vfs", dir.path / "decisions.db");
  CHECK(
      tm_refusal<configuration_error>(options, {.log_vfs = "no-such-vfs"}).find("no SQLite VFS named 'no-such-vfs'") !=
      std::string::npos);
  CHECK_FALSE(fs::exists(dir.path / "decisions.db"));
}
