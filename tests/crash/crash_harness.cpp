// crash/crash_harness.cpp: scenarios, workload and tool processes, and recovery runs of the crash tests.
#include "crash/crash_harness.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "support/servers.h"
#include "support/tm_fixture.h"
#include "xatm/connection_settings.h"
#include "xatm/error.h"
#include "mysql/mysql.h"
#include "postgresql/postgresql.h"
#include "xatm/transaction_manager.h"

#ifndef XATM_RECOVER_BIN
#error "XATM_RECOVER_BIN must name the xatm-recover binary (set by tests/CMakeLists.txt)"
#endif
#ifndef XATM_CRASH_WORKLOAD_BIN
#error "XATM_CRASH_WORKLOAD_BIN must name the xatm-crash-workload binary (set by tests/CMakeLists.txt)"
#endif

namespace xatm::crash_test {
namespace {

using clock = std::chrono::steady_clock;

std::unique_ptr<resource_manager> connect_observer(bool postgres) {
  auto settings = connection_settings::parse(postgres ? test::servers().pg : test::servers().mysql).value();
  auto rm = postgres ? postgresql::connect("observer", settings) : mysql::connect("observer", settings);
  if (!rm) throw std::runtime_error("cannot connect to a test server: " + rm.error().describe());
  return std::move(rm).value();
}

// A string field of one branch of xatm-recover's JSON, or "" (absent or null).
std::string json_string(const nlohmann::json& branch, const char* key) {
  auto found = branch.find(key);
  return found != branch.end() && found->is_string() ? found->get<std::string>() : std::string();
}

bool is_of(const std::string& gtrid, const std::string& tm_id) { return gtrid.rfind(tm_id + ".", 0) == 0; }

}  // namespace

// ---- scenarios ---------------------------------------------------------------------------------

scenario::scenario(std::string name, int accounts) : name_(std::move(name)) {
  tm_id_ = test::unique_tm_id("crash");
  bank_.suffix = name_;
  bank_.accounts = accounts;
  bank_.create();
}

scenario::~scenario() {
  test::roll_back_prepared_of(tm_id_);  // only a failed test leaves any
  bank_.drop();
}  // dir_ goes last, with everything in it

std::filesystem::path scenario::next_file(const std::string& stem) {
  return dir_.path / (stem + "." + std::to_string(++files_));
}

test::ack_log scenario::acks() const {
  test::ack_log all;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path)) {
    if (entry.path().stem() != "acks") continue;
    auto one = test::read_acks(entry.path());
    all.tokens.merge(one.tokens);
    all.gtrids.merge(one.gtrids);
    all.maria_connections.insert(all.maria_connections.end(), one.maria_connections.begin(),
                                 one.maria_connections.end());
    all.pg_connections.insert(all.pg_connections.end(), one.pg_connections.begin(), one.pg_connections.end());
  }
  return all;
}

test::invariant_check scenario::check() const { return test::check_invariants(bank_, tm_id_, log_path(), acks()); }

void check_invariants(const scenario& s, const std::string& when) {
  const auto check = s.check();
  CHECK_MESSAGE(check.ok(), s.name() << " (" << s.tm_id() << ") " << when << ": invariants violated\n"
                                     << check.describe());
}

// ---- the workload ------------------------------------------------------------------------------

workload::workload(scenario& s, const workload_options& options)
    : ack_path_(s.next_file("acks")),
      process_(
          [&] {
            std::vector<std::string> argv{
                XATM_CRASH_WORKLOAD_BIN,
                "--tm-id",
                s.tm_id(),
                "--log",
                s.log_path().string(),
                "--ack",
                ack_path_.string(),
                "--tables",
                s.bank().suffix,
                "--accounts",
                std::to_string(options.first_account) + "-" +
                    std::to_string(options.last_account == 0 ? s.bank().accounts : options.last_account),
                "--threads",
                std::to_string(options.threads),
                "--transfers",
                std::to_string(options.transfers),
                "--token-prefix",
                "w" + ack_path_.extension().string().substr(1),
                "--doom-every",
                std::to_string(options.doom_every),
                "--commit-retry-ms",
                std::to_string(options.commit_retry_window.count()),
                "--prepare-timeout-ms",
                std::to_string(options.prepare_timeout.count())};
            if (options.skip_startup_recovery) argv.emplace_back("--skip-startup-recovery");
            return argv;
          }(),
          [&] {
            std::vector<std::string> env{"XATM_CRASH_PG=" + test::servers().pg,
                                         "XATM_CRASH_MARIA=" + test::servers().mysql,
                                         "XATM_WORKLOAD_LOG=" + options.log_level};
            if (!options.crash_at.empty()) env.push_back("XATM_CRASH_AT=" + options.crash_at);
            return env;
          }(),
          s.next_file("workload-out"), s.next_file("workload-err")) {}

void workload::wait_ready(std::chrono::milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  while (!acks().ready) {
    if (auto ended = process_.poll()) {
      FAIL("the workload ended before it was ready: " << ended->describe() << "\n" << process_.err());
    }
    if (clock::now() > deadline) FAIL("the workload was not ready within " << timeout.count() << " ms");
    std::this_thread::sleep_for(5ms);
  }
}

exit_status workload::wait(std::chrono::milliseconds timeout) {
  const auto status = process_.wait(timeout);
  wait_for_sessions_gone();
  return status;
}

exit_status workload::kill() {
  const auto status = process_.kill();
  wait_for_sessions_gone();
  return status;
}

test::ack_log workload::acks() const { return test::read_acks(ack_path_); }

void workload::wait_for_sessions_gone() const {
  const auto acks = this->acks();
  // A server finishes the statement a dead client sent (a PREPARE, a COMMIT) before it notices
  // the death, and MariaDB keeps a prepared branch attached to its session until then: recovery
  // must not scan before. A session still running the application's DML carries an active
  // branch, never a prepared one, and may wait for a lock only recovery releases: it is not waited
  // for (its server rolls it back when the statement ends). After a server restart the ids are
  // reused by strangers: then this only costs the timeout, and a recovery run that still meets an
  // attached branch is retried anyway.
  auto wait_on = [](bool postgres, const std::vector<long>& ids) {
    if (ids.empty()) return;
    std::string list;
    for (long id : ids) list += (list.empty() ? "" : ",") + std::to_string(id);
    const std::string sql =
        postgres ? "SELECT count(*) FROM pg_stat_activity WHERE pid IN (" + list +
                       ") AND pid <> pg_backend_pid() AND NOT (state = 'active' AND (query LIKE 'UPDATE %' OR "
                       "query LIKE 'INSERT %'))"
                 : "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID IN (" + list +
                       ") AND ID <> CONNECTION_ID() AND COALESCE(INFO, '') NOT LIKE 'UPDATE %' AND "
                       "COALESCE(INFO, '') NOT LIKE 'INSERT %'";
    const auto deadline = clock::now() + 5s;
    try {
      auto observer = connect_observer(postgres);
      while (clock::now() < deadline) {
        auto rows = observer->exec(sql);
        if (!rows || rows.value().rows.at(0).at(0).value_or("1") == "0") return;
        std::this_thread::sleep_for(10ms);
      }
    } catch (const std::exception&) {
      // The server is down (an outage test): its sessions are gone with it.
    }
  };
  wait_on(false, acks.maria_connections);
  wait_on(true, acks.pg_connections);
}

leftover in_flight_of(workload& w) {
  const auto status = w.wait();
  REQUIRE_MESSAGE(status.killed_by_sigkill(), status.describe() << "\n" << w.err());
  const auto acks = w.acks();
  REQUIRE(acks.in_flight().size() == 1);
  const std::string token = acks.in_flight().front();
  return {token, acks.gtrids.at(token)};
}

leftovers leave_prepared_work(scenario& s) {
  leftovers left;
  workload_options first;
  first.crash_at = "after_decision_durable:3";
  first.last_account = s.bank().accounts / 2;
  workload committing(s, first);
  left.to_commit = in_flight_of(committing);
  workload_options second;
  second.crash_at = "after_all_prepared:3";
  second.first_account = s.bank().accounts / 2 + 1;
  second.skip_startup_recovery = true;
  workload preparing(s, second);
  left.to_roll_back = in_flight_of(preparing);
  REQUIRE(test::prepared_branches_of(s.tm_id()).size() == 4);
  return left;
}

// ---- xatm-recover ------------------------------------------------------------------------------

tool_process::tool_process(scenario& s, const std::string& crash_at)
    : process_({XATM_RECOVER_BIN, "--log", s.log_path().string(), "--rm", "pg=postgresql:" + test::servers().pg, "--rm",
                "maria=mariadb:" + test::servers().mysql, "--json"},
               crash_at.empty() ? std::vector<std::string>{} : std::vector<std::string>{"XATM_CRASH_AT=" + crash_at},
               s.next_file("tool-out"), s.next_file("tool-err")) {}

std::vector<recovery_line> parse_tool_report(const std::string& json, const std::string& tm_id) {
  std::vector<recovery_line> lines;
  // One branch per line (so that several runs' outputs, concatenated, parse too): each line
  // that holds a JSON object with a "kind" is a branch.
  std::istringstream in(json);
  std::string line;
  while (std::getline(in, line)) {
    auto from = line.find('{');
    auto to = line.rfind('}');
    if (from == std::string::npos || to == std::string::npos || to < from) continue;
    auto branch = nlohmann::json::parse(line.substr(from, to - from + 1), nullptr, /*allow_exceptions=*/false);
    if (!branch.is_object() || !branch.contains("kind")) continue;
    recovery_line parsed{json_string(branch, "rm"), json_string(branch, "gtrid"), json_string(branch, "state"),
                         json_string(branch, "result")};
    if (is_of(parsed.gtrid, tm_id)) lines.push_back(std::move(parsed));
  }
  return lines;
}

// ---- recovery ----------------------------------------------------------------------------------

std::size_t recovery_summary::count(const std::string& result) const {
  return static_cast<std::size_t>(
      std::count_if(lines.begin(), lines.end(), [&](const recovery_line& line) { return line.result == result; }));
}

std::string recovery_summary::outcome_of(const std::string& gtrid) const {
  bool committed = false;
  bool rolled_back = false;
  bool forgotten = false;
  bool already_done = false;
  for (const auto& line : lines) {
    if (line.gtrid != gtrid) continue;
    const bool done = line.result == recovery_result_code(recovery_result::already_done);
    committed = committed || line.result == recovery_result_code(recovery_result::committed);
    rolled_back = rolled_back || line.result == recovery_result_code(recovery_result::rolled_back);
    forgotten = forgotten || (done && line.state == "gone");
    already_done = already_done || (done && line.state != "gone");
  }
  if (committed && rolled_back) return "committed AND rolled back";
  if (committed) return "committed";
  if (rolled_back) return "rolled back";
  if (forgotten) return "decision forgotten";
  if (already_done) return "already done by someone else";
  return "nothing";
}

const char* recovery_path_name(recovery_path path) { return path == recovery_path::library ? "library" : "tool"; }

std::unique_ptr<transaction_manager> open_transaction_manager(const scenario& s) {
  tm_options options;
  options.tm_id = s.tm_id();
  options.log_path = s.log_path().string();
  options.recovery_interval = std::chrono::milliseconds(0);
  auto tm = std::make_unique<transaction_manager>(options);
  tm->register_rm("pg", "postgresql", test::servers().pg);
  tm->register_rm("maria", "mariadb", test::servers().mysql);
  return tm;
}

recovery_summary recover_with_library(const scenario& s) {
  recovery_summary summary;
  const auto tm = open_transaction_manager(s);
  const auto deadline = clock::now() + 20s;
  for (;;) {
    const auto report = tm->recover_now();
    ++summary.runs;
    for (const auto& item : report.items) {
      if (!is_of(item.gtrid, s.tm_id())) continue;
      summary.lines.push_back({item.rm_name, item.gtrid, item.state_found, recovery_result_code(item.result)});
    }
    REQUIRE_MESSAGE(!report.heuristic(), s.name() << ": library recovery reported a heuristic outcome");
    if (!report.unresolved()) break;
    REQUIRE_MESSAGE(clock::now() < deadline, s.name() << ": library recovery left work unresolved for 20 s");
    std::this_thread::sleep_for(100ms);
  }
  // The first begin() runs recovery once more (nothing is left for it); then the log is closed,
  // which writes the completions.
  tm->begin().rollback();
  return summary;
}

recovery_summary recover_with_tool(scenario& s) {
  recovery_summary summary;
  const auto deadline = clock::now() + 20s;
  for (;;) {
    tool_process tool(s);
    const auto status = tool.wait();
    ++summary.runs;
    auto lines = parse_tool_report(tool.out(), s.tm_id());
    summary.lines.insert(summary.lines.end(), lines.begin(), lines.end());
    if (status.exited && status.code == 0) break;
    REQUIRE_MESSAGE((status.exited && status.code == 1 && clock::now() < deadline),
                    s.name() << ": xatm-recover " << status.describe() << "\n"
                             << tool.out() << tool.err());
    std::this_thread::sleep_for(100ms);
  }
  return summary;
}

recovery_summary recover(scenario& s, recovery_path path) {
  return path == recovery_path::library ? recover_with_library(s) : recover_with_tool(s);
}

bool ledger_has(const test::transfer_bank& bank, const std::string& token) {
  auto rows =
      connect_observer(true)->exec("SELECT count(*) FROM " + bank.ledger_table() + " WHERE token = '" + token + "'");
  if (!rows) throw std::runtime_error("reading the ledger: " + rows.error().describe());
  return rows.value().rows.at(0).at(0).value_or("0") != "0";
}

void wait_for_servers(std::chrono::seconds timeout) {
  const auto deadline = clock::now() + timeout;
  for (;;) {
    auto pg = postgresql::connect("probe", connection_settings::parse(test::servers().pg).value());
    auto maria = mysql::connect("probe", connection_settings::parse(test::servers().mysql).value());
    if (pg && maria && pg.value()->exec("SELECT 1") && maria.value()->exec("SELECT 1")) return;
    REQUIRE_MESSAGE(clock::now() < deadline, "the servers do not answer after " << timeout.count() << " s");
    std::this_thread::sleep_for(100ms);
  }
}

}  // namespace xatm::crash_test
