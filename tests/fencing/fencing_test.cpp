// Fencing against the real servers: recovery never acts on the wrong database, on a gtrid another
// log issued, or under a TM that is still running; its dry run says what the real run does; and
// the marker rows of finished three-phase transactions do not pile up. Each case is an operator's
// mistake or a lost log that lost committed data before these rules (docs/recovery.md):
//  - a mistyped connection string for one RM: nothing is done on it, its decision is kept, the
//    tool exits 5 and names the RM; the right one then finishes the work;
//  - the TM itself reopened with an RM name pointing elsewhere refuses it until it is re-pinned;
//  - a recreated log, or one restored from an older copy, never issues a gtrid again, and never
//    presumes abort of a branch a later incarnation prepared;
//  - two TMs given one tm_id with separate logs never touch each other's branches;
//  - xatm-recover on a copy of a running TM's log (or with its lock file deleted) presumes nothing;
//  - the dry run of a three-phase branch with a P marker says commit, as the real run does;
//  - marker rows of finished transactions are deleted by any recovery, whoever wrote them.
// Needs the `servers` fixture.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "core/markers.h"
#include "core/recovery.h"
#include "sqlite/sqlite_decision_store.h"
#include "support/adapter_checks.h"
#include "support/observers.h"
#include "support/result_checks.h"
#include "support/servers.h"
#include "support/tm_fixture.h"
#include "support/tool_run.h"
#include "xatm/error.h"
#include "mysql/mysql.h"
#include "postgresql/postgresql.h"
#include "xatm/transaction_manager.h"

#ifndef XATM_RECOVER_BIN
#error "XATM_RECOVER_BIN must name the xatm-recover binary (set by tests/CMakeLists.txt)"
#endif

using namespace xatm;  // NOLINT(google-build-using-namespace): test file
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

using test::observe_maria;
using test::observe_pg;
using test::prepared_gtrids;
using test::run;
using test::single_value;
using test::tool_run;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A TM of the test's own with no RMs registered and no background recovery.
struct fenced_tm : test::tm_fixture {
  explicit fenced_tm(tm_options settings = {})
      : tm_fixture("fence", test::without_background_recovery(std::move(settings)), test::fixture_rms::none) {}
};

// The PostgreSQL database a tired operator's typo reaches: it exists, it is not the TM's.
std::string typo_database() {
  auto admin = observe_pg();
  if (single_value(*admin, "SELECT count(*) FROM pg_database WHERE datname = 'xatm_fence_typo'") == "0") {
    run(*admin, "CREATE DATABASE xatm_fence_typo OWNER xatm");
  }
  std::string conninfo = test::servers().pg;
  conninfo.replace(conninfo.find("dbname=xatm_test"), 16, "dbname=xatm_fence_typo");
  return conninfo;
}

void create_rows_table(resource_manager& rm) {
  run(rm, "CREATE TABLE IF NOT EXISTS fence_rows (id varchar(80) PRIMARY KEY)");
}

// Prepares, on a connection that then goes away (a crashed TM), a branch that inserts `row`.
void prepare_by_hand(resource_manager& rm, const xid& branch, const std::string& row) {
  create_rows_table(rm);
  REQUIRE_OK(rm.start(branch));
  run(rm, "INSERT INTO fence_rows VALUES ('" + row + "')");
  REQUIRE_OK(rm.end(branch));
  REQUIRE_OK(rm.prepare(branch));
}
void prepare_on_pg(const std::string& conninfo, const xid& branch, const std::string& row) {
  auto rm = postgresql::connect("crashed", test::settings_of(conninfo)).value();
  prepare_by_hand(*rm, branch, row);
}
void prepare_on_maria(const xid& branch, const std::string& row) {
  auto rm = mysql::connect("crashed", test::settings_of(test::servers().mysql)).value();
  prepare_by_hand(*rm, branch, row);
}

bool row_visible(resource_manager& observer, const std::string& row) {
  create_rows_table(observer);
  return single_value(observer, "SELECT count(*) FROM fence_rows WHERE id = '" + row + "'") == "1";
}

// A COMMIT decision in the log at `path` (the TM that owns it must be closed).
void record_commit(const fs::path& path, const std::string& tm_id, const std::string& gtrid,
                   std::vector<std::string> rms) {
  auto log = detail::sqlite_decision_store::open({path.string(), tm_id, {}});
  REQUIRE_OK(log);
  detail::decision_record record{gtrid, detail::decision_state::commit, std::move(rms), 0};
  REQUIRE_OK(log.value()->record(record));
}

std::set<std::string> pending_gtrids(const fs::path& path, const std::string& tm_id) {
  auto log = detail::sqlite_decision_store::open({path.string(), tm_id, {}});
  REQUIRE_OK(log);
  auto pending = log.value()->pending();
  REQUIRE_OK(pending);
  const std::vector<detail::decision_record> records = std::move(pending).value();
  std::set<std::string> gtrids;
  for (const auto& record : records) gtrids.insert(record.gtrid);
  return gtrids;
}

tool_run recover_with_tool(const fs::path& log, const fs::path& out_dir,
                           const std::vector<std::pair<std::string, std::string>>& rms,
                           std::vector<std::string> extra = {}) {
  std::vector<std::string> argv{XATM_RECOVER_BIN, "--log", log.string()};
  for (const auto& [name, spec] : rms) {
    argv.push_back("--rm");
    argv.push_back(name + "=" + spec);
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  tool_run done = test::run_tool(argv, out_dir, 60s);
  INFO("xatm-recover stdout:\n" << done.out << "\nstderr:\n" << done.err);
  REQUIRE_MESSAGE(!done.status.timed_out, "xatm-recover did not end within 60 s");
  REQUIRE(done.status.exited);
  return done;
}

// A copy of a decision log (its file and -wal), as an operator's `cp` or a backup makes it.
void copy_log(const fs::path& from, const fs::path& to) {
  for (const char* suffix : {"", "-wal"}) {
    if (fs::exists(from.string() + suffix)) fs::copy_file(from.string() + suffix, to.string() + suffix);
  }
}

// The log gone: its file, -wal and -shm.
void remove_log(const fs::path& path) {
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path.string() + suffix);
}

std::string gtrid_of(const std::string& tm_id, const std::string& incarnation, std::uint64_t sequence,
                     commit_protocol protocol = commit_protocol::two_phase) {
  return format_gtrid({tm_id, incarnation, sequence, protocol}).value();
}

}  // namespace

// ---- RM identity --------------------------------------------------------------------------

TEST_CASE(
    "a mistyped database for one RM: nothing is done on it, its decision is kept, the tool exits 5; "
    "the right database then finishes the commit") {
  const std::string typo = typo_database();
  fenced_tm t;
  t.tm->register_rm("pg_a", "postgresql", test::servers().pg);
  t.tm->register_rm("pg_b", "postgresql", test::servers().pg2);
  (void)t.tm->connect("pg_a");  // the first connections pin both databases' identities
  (void)t.tm->connect("pg_b");
  const std::string incarnation = t.tm->incarnation_id();
  t.close();

  // The crash: the decision is durable, both branches are prepared, nothing committed yet.
  const std::string gtrid = gtrid_of(t.tm_id, incarnation, 7);
  record_commit(t.log_path, t.tm_id, gtrid, {"pg_a", "pg_b"});
  prepare_on_pg(test::servers().pg, xid(xatm_format_id, gtrid, "1"), gtrid);
  prepare_on_pg(test::servers().pg2, xid(xatm_format_id, gtrid, "2"), gtrid);

  const std::vector<std::pair<std::string, std::string>> mistyped{{"pg_a", "postgresql:" + test::servers().pg},
                                                                  {"pg_b", "postgresql:" + typo}};
  auto dry = recover_with_tool(t.log_path, t.dir.path, mistyped, {"--dry-run"});
  CHECK(dry.exit_code() == 5);
  CHECK(contains(dry.out, "WRONG DATABASE"));
  CHECK(contains(dry.out, "pg_b"));

  auto wrong = recover_with_tool(t.log_path, t.dir.path, mistyped);
  CHECK(wrong.exit_code() == 5);
  CHECK(contains(wrong.out, "WRONG DATABASE RM 'pg_b'"));
  CHECK(contains(wrong.out, "xatm_fence_typo"));
  CHECK(row_visible(*observe_pg(), gtrid));                                           // pg_a follows the decision
  CHECK(prepared_gtrids(*observe_pg(test::servers().pg2), t.tm_id).contains(gtrid));  // pg_b untouched
  CHECK(pending_gtrids(t.log_path, t.tm_id).contains(gtrid));                         // not forgotten
  // The wrong database was only read: it did not get an identity of its own.
  CHECK(single_value(*observe_pg(typo), "SELECT count(*) FROM pg_tables WHERE tablename = 'xatm_identity'") == "0");

  auto right =
      recover_with_tool(t.log_path, t.dir.path,
                        {{"pg_a", "postgresql:" + test::servers().pg}, {"pg_b", "postgresql:" + test::servers().pg2}});
  CHECK(right.exit_code() == 0);
  CHECK(row_visible(*observe_pg(test::servers().pg2), gtrid));
  CHECK_FALSE(pending_gtrids(t.log_path, t.tm_id).contains(gtrid));
}

TEST_CASE("an RM name pointed at another database is refused by the TM until xatm-recover --repin") {
  fenced_tm t;
  t.tm->register_rm("pg", "postgresql", test::servers().pg);
  (void)t.tm->connect("pg");
  t.close();
  t.tm = std::make_unique<transaction_manager>(t.options);
  t.tm->register_rm("pg", "postgresql", test::servers().pg2);  // the configuration changed
  CHECK_THROWS_AS((void)t.tm->connect("pg"), configuration_error);
  auto report = t.tm->recover_now();
  REQUIRE(report.identity_mismatches.size() == 1);
  CHECK(contains(report.identity_mismatches.front(), "xatm_test2"));
  CHECK(report.unresolved());
  t.close();

  // The operator moved it on purpose: re-pin, and the TM accepts it.
  auto repinned =
      recover_with_tool(t.log_path, t.dir.path, {{"pg", "postgresql:" + test::servers().pg2}}, {"--repin", "pg"});
  CHECK(repinned.exit_code() == 0);
  CHECK(contains(repinned.out, "RE-PINNED pg"));
  t.tm = std::make_unique<transaction_manager>(t.options);
  t.tm->register_rm("pg", "postgresql", test::servers().pg2);
  CHECK_NOTHROW((void)t.tm->connect("pg"));
  CHECK(t.tm->recover_now().identity_mismatches.empty());
}

// ---- gtrids unique for ever ---------------------------------------------------------------

TEST_CASE("a recreated log and a log restored from an older copy never issue a gtrid again") {
  fenced_tm t;
  std::set<std::string> issued;
  auto issue = [&](int count) {
    for (int i = 0; i < count; ++i) {
      auto tx = t.tm->begin(commit_protocol::three_phase);
      CHECK(issued.insert(tx.gtrid()).second);  // never seen before
    }
  };
  issue(3);
  const fs::path copy = t.dir.path / "copy";
  fs::create_directory(copy);
  t.close();
  copy_log(t.log_path, copy / "decisions.db");
  t.reopen();
  issue(3);
  const std::string later_incarnation = t.tm->incarnation_id();
  t.close();

  // Restored from the copy: the incarnations after it are unknown to it.
  remove_log(t.log_path);
  copy_log(copy / "decisions.db", t.log_path);
  // A branch the later incarnation prepared, whose decision (if any) the restored log lacks.
  const std::string later_gtrid = gtrid_of(t.tm_id, later_incarnation, 2);
  prepare_on_pg(test::servers().pg, xid(xatm_format_id, later_gtrid, "1"), later_gtrid);
  t.tm = std::make_unique<transaction_manager>(t.options);
  t.tm->register_rm("pg", "postgresql", test::servers().pg);
  issue(3);
  auto report = t.tm->recover_now();
  bool reported = false;
  for (const auto& item : report.items) {
    if (item.gtrid != later_gtrid) continue;
    reported = true;
    CHECK(item.result == recovery_result::unresolved);
    CHECK(contains(item.detail, "never issued"));
  }
  CHECK(reported);
  CHECK(prepared_gtrids(*observe_pg(), t.tm_id).contains(later_gtrid));  // never presumed aborted
  t.close();

  // Lost altogether: a new log at the same path, with the same tm_id.
  remove_log(t.log_path);
  t.reopen();
  issue(3);
  t.close();
  REQUIRE_OK(observe_pg()->rollback(xid(xatm_format_id, later_gtrid, "1")));  // the test's own cleanup
}

TEST_CASE("two TMs given one tm_id, each with its own log, never touch each other's branches") {
  fenced_tm a;
  tm_options b_options = a.options;
  test::temp_dir b_dir("xatm-fence-b");
  b_options.log_path = b_dir.file("decisions.db");
  a.tm->register_rm("pg", "postgresql", test::servers().pg);
  (void)a.tm->recover_now();
  {
    // B has restarted once: on a log of the same tm_id without ids, A's incarnation would look
    // like one of B's dead ones and be presumed aborted.
    transaction_manager first(b_options);
  }
  transaction_manager b(b_options);
  b.register_rm("pg", "postgresql", test::servers().pg);

  const std::string gtrid = gtrid_of(a.tm_id, a.tm->incarnation_id(), 1);  // A's, in flight
  prepare_on_pg(test::servers().pg, xid(xatm_format_id, gtrid, "1"), gtrid);
  auto report = b.recover_now();
  bool reported = false;
  for (const auto& item : report.items) {
    if (item.gtrid != gtrid) continue;
    reported = true;
    CHECK(item.result == recovery_result::unresolved);
    CHECK(contains(item.detail, "second TM running with the same tm_id"));
  }
  CHECK(reported);
  CHECK(prepared_gtrids(*observe_pg(), a.tm_id).contains(gtrid));
  REQUIRE_OK(observe_pg()->rollback(xid(xatm_format_id, gtrid, "1")));
}

// ---- a TM that is still running -------------------------------------------------------------

TEST_CASE("xatm-recover on a copy of a running TM's log, or with its lock file deleted, presumes nothing") {
  fenced_tm t;
  t.tm->register_rm("pg", "postgresql", test::servers().pg);
  (void)t.tm->recover_now();  // recovery takes the incarnation's leases
  // A branch the running TM prepared and is still deciding (no decision yet).
  const std::string gtrid = gtrid_of(t.tm_id, t.tm->incarnation_id(), 1);
  const xid branch(xatm_format_id, gtrid, "1");
  prepare_on_pg(test::servers().pg, branch, gtrid);

  const fs::path copy_dir = t.dir.path / "copy";
  fs::create_directory(copy_dir);
  const fs::path copy = copy_dir / "decisions.db";
  copy_log(t.log_path, copy);
  const std::vector<std::pair<std::string, std::string>> rms{{"pg", "postgresql:" + test::servers().pg}};
  auto on_copy = recover_with_tool(copy, copy_dir, rms);
  CHECK(on_copy.exit_code() == 1);
  CHECK(contains(on_copy.out, "holds its lease"));
  CHECK(prepared_gtrids(*observe_pg(), t.tm_id).contains(gtrid));

  fs::remove(t.log_path.string() + ".lock");  // an operator "cleaning up" a stale-looking lock
  auto unlocked = recover_with_tool(t.log_path, t.dir.path, rms);
  CHECK(unlocked.exit_code() == 1);
  CHECK(prepared_gtrids(*observe_pg(), t.tm_id).contains(gtrid));

  t.close();  // the TM is gone, and with its sessions its leases: now presumed abort is right
  auto after = recover_with_tool(copy, copy_dir, rms);
  CHECK(after.exit_code() == 0);
  CHECK_FALSE(prepared_gtrids(*observe_pg(), t.tm_id).contains(gtrid));
  CHECK_FALSE(row_visible(*observe_pg(), gtrid));
}

// ---- three-phase markers ------------------------------------------------------------------

TEST_CASE(
    "the dry run of a three-phase branch with a P marker says commit, as the real run does; the markers "
    "then go") {
  fenced_tm t;
  t.tm->register_rm("pg", "postgresql", test::servers().pg);
  t.tm->register_rm("maria", "mariadb", test::servers().mysql);
  (void)t.tm->connect("pg");
  (void)t.tm->connect("maria");
  const std::string incarnation = t.tm->incarnation_id();
  t.close();
  // The coordinator pre-committed (P at the arbiter pg and the hint on maria) and died.
  const std::string gtrid = gtrid_of(t.tm_id, incarnation, 5, commit_protocol::three_phase);
  prepare_on_pg(test::servers().pg, xid(xatm_format_id, gtrid, "1@pg"), gtrid);
  prepare_on_maria(xid(xatm_format_id, gtrid, "2@pg"), gtrid);
  for (auto* rm : {observe_pg().release(), observe_maria().release()}) {
    std::unique_ptr<resource_manager> control(rm);
    REQUIRE_OK(detail::install_marker_table(*control));
    REQUIRE(detail::insert_marker(*control, gtrid, detail::marker_state::precommitted, "pg,maria").value() ==
            detail::marker_state::precommitted);
  }
  const std::vector<std::pair<std::string, std::string>> rms{{"pg", "postgresql:" + test::servers().pg},
                                                             {"maria", "mariadb:" + test::servers().mysql}};
  auto dry = recover_with_tool(t.log_path, t.dir.path, rms, {"--dry-run"});
  CHECK(dry.exit_code() == 1);
  for (const std::string rm : {"pg", "maria"}) {
    CAPTURE(rm);
    std::string line;
    for (std::size_t at = 0; (at = dry.out.find(gtrid, at)) != std::string::npos; ++at) {
      auto start = dry.out.rfind('\n', at) + 1;
      auto candidate = dry.out.substr(start, dry.out.find('\n', at) - start);
      if (contains(candidate, "  " + rm + "  ")) line = candidate;
    }
    CHECK(contains(line, "would commit"));
  }
  CHECK(prepared_gtrids(*observe_pg(), t.tm_id).contains(gtrid));

  auto real = recover_with_tool(t.log_path, t.dir.path, rms);
  CHECK(real.exit_code() == 0);
  CHECK(row_visible(*observe_pg(), gtrid));
  CHECK(row_visible(*observe_maria(), gtrid));
  // Every branch is final: the markers went with the same run.
  CHECK(single_value(*observe_pg(), "SELECT count(*) FROM xatm_marker WHERE gtrid = '" + gtrid + "'") == "0");
  CHECK(single_value(*observe_maria(), "SELECT count(*) FROM xatm_marker WHERE gtrid = '" + gtrid + "'") == "0");
}

TEST_CASE("any recovery deletes the marker rows of finished transactions, whoever wrote them, and only those") {
  fenced_tm t;
  t.tm->register_rm("pg", "postgresql", test::servers().pg);
  t.tm->register_rm("maria", "mariadb", test::servers().mysql);
  const std::string other = test::unique_tm_id("gone");
  const std::string finished = gtrid_of(other, "abcdefghijkl", 1, commit_protocol::three_phase);    // every branch committed
  const std::string elsewhere = gtrid_of(other, "abcdefghijkl", 2, commit_protocol::three_phase);   // a branch on an RM not here
  const std::string aborted = gtrid_of(other, "abcdefghijkl", 3, commit_protocol::three_phase);     // A: kept while young
  const std::string unfinished = gtrid_of(other, "abcdefghijkl", 4, commit_protocol::three_phase);  // still prepared on pg
  prepare_on_pg(test::servers().pg, xid(xatm_format_id, unfinished, "1@pg"), unfinished);
  auto pg = observe_pg();
  auto maria = observe_maria();
  (void)t.tm->connect("pg");  // both databases have their identities
  (void)t.tm->connect("maria");
  // The other coordinator named its RMs with their identities, as every coordinator does.
  const std::string pg_entry = "pg=" + single_value(*pg, "SELECT database_id FROM xatm_identity");
  const std::string maria_entry = "maria=" + single_value(*maria, "SELECT database_id FROM xatm_identity");
  const std::string both = pg_entry + "," + maria_entry;
  for (resource_manager* rm : {pg.get(), maria.get()}) {
    REQUIRE_OK(detail::install_marker_table(*rm));
    REQUIRE_OK(detail::insert_marker(*rm, finished, detail::marker_state::precommitted, both));
    REQUIRE_OK(detail::insert_marker(*rm, elsewhere, detail::marker_state::precommitted, pg_entry + ",faraway"));
    REQUIRE_OK(detail::insert_marker(*rm, unfinished, detail::marker_state::precommitted, both));
  }
  REQUIRE_OK(detail::insert_marker(*pg, aborted, detail::marker_state::aborted, pg_entry));
  // A row of plain names written by another TM: its names need not mean ours; it stays.
  const std::string plain = gtrid_of(other, "abcdefghijkl", 5, commit_protocol::three_phase);
  REQUIRE_OK(detail::insert_marker(*pg, plain, detail::marker_state::precommitted, "pg,maria"));
  auto rows_of = [](resource_manager& rm, const std::string& gtrid) {
    return single_value(rm, "SELECT count(*) FROM xatm_marker WHERE gtrid = '" + gtrid + "'");
  };

  auto report = t.tm->recover_now();
  CHECK(report.markers_deleted >= 2);
  CHECK(rows_of(*pg, finished) == "0");
  CHECK(rows_of(*maria, finished) == "0");
  CHECK(rows_of(*pg, elsewhere) == "1");   // faraway was not scanned
  CHECK(rows_of(*pg, unfinished) == "1");  // its branch is still prepared
  CHECK(rows_of(*maria, unfinished) == "1");
  CHECK(rows_of(*pg, aborted) == "1");  // an A row stays while a stalled coordinator could wake
  CHECK(rows_of(*pg, plain) == "1");

  // Past the retention, a finished A row goes too.
  detail::recovery_context context;
  auto log =
      detail::sqlite_decision_store::open({(t.dir.path / "other.db").string(), test::unique_tm_id("sweeper"), {}});
  REQUIRE_OK(log);
  context.tm_id = log.value()->tm_id();
  context.log = log.value().get();
  const auto settings = test::settings_of(test::servers().pg);
  context.rms.emplace("pg", [settings] { return postgresql::connect("pg", settings); });
  context.abort_marker_retention = std::chrono::seconds(0);
  (void)detail::run_recovery(context);
  CHECK(rows_of(*pg, aborted) == "0");
  CHECK(rows_of(*pg, unfinished) == "1");
  REQUIRE_OK(pg->rollback(xid(xatm_format_id, unfinished, "1@pg")));
  for (resource_manager* rm : {pg.get(), maria.get()}) {
    REQUIRE_OK(detail::delete_marker(*rm, elsewhere));
    REQUIRE_OK(detail::delete_marker(*rm, unfinished));
  }
  REQUIRE_OK(detail::delete_marker(*pg, plain));
}

// ---- found by review ----------------------------------------------------------------------

TEST_CASE(
    "a marker row names its databases by identity: a recovery whose name reaches another database, or "
    "that has no log to verify names, never deletes it") {
  fenced_tm t;
  t.tm->register_rm("pg", "postgresql", test::servers().pg);
  t.tm->register_rm("b", "postgresql", test::servers().pg2);
  (void)t.tm->connect("pg");
  (void)t.tm->connect("b");
  const std::string pg_id = t.tm->recover_now().identity_mismatches.empty()
                                ? single_value(*observe_pg(), "SELECT database_id FROM xatm_identity")
                                : std::string();
  const std::string b_id = single_value(*observe_pg(test::servers().pg2), "SELECT database_id FROM xatm_identity");
  REQUIRE_FALSE(pg_id.empty());
  t.close();
  // A committed transaction whose branch on b is still pending (its hint there never written).
  const std::string gtrid = gtrid_of(test::unique_tm_id("hinted"), "abcdefghijkl", 1, commit_protocol::three_phase);
  auto pg = observe_pg();
  REQUIRE_OK(detail::install_marker_table(*pg));
  REQUIRE_OK(detail::insert_marker(*pg, gtrid, detail::marker_state::precommitted, "pg=" + pg_id + ",b=" + b_id));
  auto rows = [&] { return single_value(*pg, "SELECT count(*) FROM xatm_marker WHERE gtrid = '" + gtrid + "'"); };

  // A terminator without a log whose "b" is a typo, and one whose names carry no identities.
  const auto pg_settings = test::settings_of(test::servers().pg);
  const auto typo_settings = test::settings_of(typo_database());
  detail::recovery_context context;
  context.rms.emplace("pg", [pg_settings] { return postgresql::connect("pg", pg_settings); });
  context.rms.emplace("b", [typo_settings] { return postgresql::connect("b", typo_settings); });
  (void)detail::run_recovery(context);
  CHECK(rows() == "1");
  REQUIRE_OK(detail::delete_marker(*pg, gtrid));
  REQUIRE_OK(detail::insert_marker(*pg, gtrid, detail::marker_state::precommitted, "pg,b"));
  const auto b_settings = test::settings_of(test::servers().pg2);
  context.rms.erase("b");
  context.rms.emplace("b", [b_settings] { return postgresql::connect("b", b_settings); });
  (void)detail::run_recovery(context);
  CHECK(rows() == "1");  // plain names and no log: nothing proves which databases they meant

  // The right databases, by identity: finished, deleted.
  REQUIRE_OK(detail::delete_marker(*pg, gtrid));
  REQUIRE_OK(detail::insert_marker(*pg, gtrid, detail::marker_state::precommitted, "pg=" + pg_id + ",b=" + b_id));
  (void)detail::run_recovery(context);
  CHECK(rows() == "0");
}

TEST_CASE("a running TM's lease on any one RM protects its branches on all of them") {
  fenced_tm t;
  t.tm->register_rm("pg", "postgresql", test::servers().pg);
  t.tm->register_rm("maria", "mariadb", test::servers().mysql);
  (void)t.tm->recover_now();
  const std::string gtrid = gtrid_of(t.tm_id, t.tm->incarnation_id(), 1);
  prepare_on_pg(test::servers().pg, xid(xatm_format_id, gtrid, "1"), gtrid);
  // PostgreSQL restarted under the TM (here: its lease session ended): only MariaDB's lease is left.
  run(*observe_pg(),
      "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND pid <> "
      "pg_backend_pid()");
  const fs::path copy_dir = t.dir.path / "copy";
  fs::create_directory(copy_dir);
  copy_log(t.log_path, copy_dir / "decisions.db");
  auto on_copy =
      recover_with_tool(copy_dir / "decisions.db", copy_dir,
                        {{"pg", "postgresql:" + test::servers().pg}, {"maria", "mariadb:" + test::servers().mysql}});
  CHECK(on_copy.exit_code() == 1);
  CHECK(contains(on_copy.out, "holds its lease on maria"));
  CHECK(prepared_gtrids(*observe_pg(), t.tm_id).contains(gtrid));
  REQUIRE_OK(observe_pg()->rollback(xid(xatm_format_id, gtrid, "1")));
}

TEST_CASE(
    "decisions pending in a log that pinned no identities (written before they existed): the TM does not "
    "pin their RMs on its own word") {
  const std::string typo = typo_database();
  fenced_tm t;
  const std::string incarnation = t.tm->incarnation_id();
  t.close();
  const std::string gtrid = gtrid_of(t.tm_id, incarnation, 3);
  record_commit(t.log_path, t.tm_id, gtrid, {"pg_a", "pg_b"});
  t.tm = std::make_unique<transaction_manager>(t.options);
  t.tm->register_rm("pg_a", "postgresql", test::servers().pg);
  t.tm->register_rm("pg_b", "postgresql", typo);  // a typo at the first start after the upgrade
  CHECK_THROWS_AS((void)t.tm->connect("pg_b"), configuration_error);
  auto report = t.tm->recover_now();
  // Both names the decision uses are unproven, the right one too: the operator confirms each.
  REQUIRE(report.identity_mismatches.size() == 2);
  CHECK(contains(report.identity_mismatches.front() + report.identity_mismatches.back(), "--repin pg_b"));
  CHECK(report.completed.empty());
  t.close();
  CHECK(pending_gtrids(t.log_path, t.tm_id).contains(gtrid));
}

TEST_CASE(
    "two TMs on one MariaDB server whose arbiters share a name: one never terminates the other's "
    "three-phase branch against its own database") {
  // MariaDB's XA RECOVER lists every database's prepared branches, so the second TM's scan of its
  // "orders" sees the first TM's branch; its "orders" is another database, with its own markers.
  run(*observe_maria(), "CREATE DATABASE IF NOT EXISTS xatm_fence_b");
  std::string other_db = test::servers().mysql;
  other_db.replace(other_db.find("dbname=xatm_test"), 16, "dbname=xatm_fence_b");
  fenced_tm first;
  first.tm->register_rm("orders", "mariadb", test::servers().mysql);
  (void)first.tm->connect("orders");  // pins; its three-phase bquals are `<n>@orders@<identity tag>`
  const std::string tag = single_value(*observe_maria(), "SELECT database_id FROM xatm_identity").substr(3, 12);
  const std::string incarnation = first.tm->incarnation_id();
  first.close();
  {
    // The other database is in three-phase use too: it has a marker table to write an A into.
    auto other = mysql::connect("observer", test::settings_of(other_db)).value();
    REQUIRE_OK(detail::install_marker_table(*other));
  }

  const std::string gtrid = gtrid_of(first.tm_id, incarnation, 9, commit_protocol::three_phase);
  const xid branch(xatm_format_id, gtrid, "1@orders@" + tag);
  prepare_on_maria(branch, gtrid);  // the first TM died before its P

  tm_options options;
  options.terminate_others = true;
  options.precommit_timeout = std::chrono::milliseconds(0);
  fenced_tm second(options);
  second.tm->register_rm("orders", "mariadb", other_db);
  for (int run = 0; run < 2; ++run) {
    for (const auto& item : second.tm->recover_now().items) {
      if (item.gtrid == gtrid) CHECK(item.result == recovery_result::unresolved);
    }
  }
  CHECK(prepared_gtrids(*observe_maria(), first.tm_id).contains(gtrid));
  auto other = mysql::connect("observer", test::settings_of(other_db)).value();
  CHECK(single_value(*other, "SELECT count(*) FROM xatm_marker WHERE gtrid = '" + gtrid + "'") == "0");
  REQUIRE_OK(observe_maria()->rollback(branch));
}
