// xatm-recover's command line as an operator and a script see it: --version, numbers that are
// range-checked, --json that parses (schema_version 1, enum fields) for a dry run and a real run
// over the branches a crashed TM left prepared, errors that are JSON objects under --json with the
// documented exit codes, and no password in anything the tool prints. Needs the `servers`
// fixture and the crash harness (its workload leaves the prepared branches).
#include <doctest/doctest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "crash/crash_harness.h"
#include "support/servers.h"
#include "support/temp_dir.h"
#include "support/tool_run.h"

#ifndef XATM_RECOVER_BIN
#error "XATM_RECOVER_BIN must name the xatm-recover binary (set by tests/CMakeLists.txt)"
#endif
#ifndef XATM_VERSION_LINE
#error "XATM_VERSION_LINE must be the expected --version line (set by tests/CMakeLists.txt)"
#endif

using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr int exit_clean = 0;
constexpr int exit_unresolved = 1;
constexpr int exit_usage = 2;

bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

xatm::test::tool_run run(std::vector<std::string> args, const std::filesystem::path& dir) {
  args.insert(args.begin(), XATM_RECOVER_BIN);
  auto done = xatm::test::run_tool(args, dir, 60s);
  INFO("stdout:\n" << done.out << "\nstderr:\n" << done.err);
  REQUIRE(!done.status.timed_out);
  REQUIRE(done.status.exited);
  CHECK_FALSE(contains(done.output(), xatm::test::mysql_password));
  CHECK_FALSE(contains(done.output(), xatm::test::pg_password));
  return done;
}

// stdout as one JSON document (fails the test when it is not one).
json parsed(const xatm::test::tool_run& done) {
  INFO("stdout:\n" << done.out);
  json document = json::parse(done.out, nullptr, /*allow_exceptions=*/false);
  REQUIRE(document.is_object());
  CHECK(document["schema_version"] == 1);
  return document;
}

// A --json error: {"schema_version":1,"error":{"code":...,"message":...}} and nothing else.
void check_json_error(const xatm::test::tool_run& done, const std::string& code, int exit_code) {
  CHECK(done.exit_code() == exit_code);
  const json document = parsed(done);
  REQUIRE(document.contains("error"));
  CHECK(document["error"]["code"] == code);
  CHECK(document["error"]["exit_code"] == exit_code);
  CHECK_FALSE(document["error"]["message"].get<std::string>().empty());
  CHECK_FALSE(document.contains("branches"));
}

std::vector<std::string> rms() {
  return {"--rm", "pg=postgresql:" + xatm::test::servers().pg, "--rm", "maria=mariadb:" + xatm::test::servers().mysql};
}

}  // namespace

TEST_CASE("xatm-recover --version prints one line and exits 0") {
  xatm::test::temp_dir dir{"xatm-recover-cli"};
  auto done = run({"--version"}, dir.path);
  CHECK(done.exit_code() == exit_clean);
  CHECK(done.out == std::string(XATM_VERSION_LINE) + "\n");
  CHECK(done.err.empty());
}

TEST_CASE("xatm-recover refuses a --precommit-timeout that is not a number of seconds in range, naming it") {
  xatm::test::temp_dir dir{"xatm-recover-cli"};
  for (const char* bad : {"nan", "inf", "-inf", "-1", "1e9", "ten", "", "0x"}) {
    CAPTURE(bad);
    auto done = run({"--terminate", "--precommit-timeout", bad, "--rm", "pg=postgresql:" + xatm::test::servers().pg},
                    dir.path);
    CHECK(done.exit_code() == exit_usage);
    CHECK(contains(done.err, "--precommit-timeout"));
    CHECK(done.out.empty());
    auto as_json = run({"--json", "--terminate", "--precommit-timeout", bad, "--rm", "pg=postgresql:" + xatm::test::servers().pg},
                       dir.path);
    check_json_error(as_json, "usage", exit_usage);
    CHECK(contains(parsed(as_json)["error"]["message"].get<std::string>(), "--precommit-timeout"));
  }
}

TEST_CASE("xatm-recover: a mistyped command line is refused, saying what was wrong and never the value") {
  xatm::test::temp_dir dir{"xatm-recover-cli"};
  const std::string secret = "s3cr3t-" + std::string(xatm::test::pg_password);
  // A flag given a value (--dry-run=...) is no --precommit-timeout problem: it must not be
  // blamed on an option the operator did not give, nor quote the value.
  for (const std::string flag : {"--dry-run", "--json", "--verbose", "--terminate"}) {
    CAPTURE(flag);
    auto done = run({"--log", "x.db", flag + "=" + secret, "--rm", "pg=postgresql:" + xatm::test::servers().pg}, dir.path);
    CHECK(done.exit_code() == exit_usage);
    CHECK_FALSE(contains(done.output(), "--precommit-timeout"));
    CHECK(contains(done.err, "takes no value"));
    CHECK_FALSE(contains(done.output(), secret));
  }
  // --precommit-timeout means nothing without --terminate: the operator meant to terminate.
  auto alone = run({"--log", "x.db", "--precommit-timeout", "5", "--rm", "pg=postgresql:" + xatm::test::servers().pg},
                   dir.path);
  CHECK(alone.exit_code() == exit_usage);
  CHECK(contains(alone.err, "--terminate"));
  // "a decimal number of seconds": no hexadecimal, no blanks around it.
  for (const char* bad : {"0x10", " 5", "5 "}) {
    CAPTURE(bad);
    auto done = run({"--terminate", "--precommit-timeout", bad, "--rm", "pg=postgresql:" + xatm::test::servers().pg},
                    dir.path);
    CHECK(done.exit_code() == exit_usage);
    CHECK(contains(done.err, "--precommit-timeout"));
  }
}

TEST_CASE("xatm-recover --json: errors are JSON objects with the documented codes and exit codes") {
  xatm::test::temp_dir dir{"xatm-recover-cli"};
  SUBCASE("no decision log at the path") {
    check_json_error(run({"--json", "--log", (dir.path / "missing.db").string(), "--rm",
                          "pg=postgresql:" + xatm::test::servers().pg},
                         dir.path),
                     "configuration", exit_usage);
  }
  SUBCASE("a malformed --rm") { check_json_error(run({"--json", "--log", "x.db", "--rm", "no-equals-sign"}, dir.path), "usage", exit_usage); }
  SUBCASE("an unknown dialect; its password is never shown") {
    check_json_error(run({"--json", "--log", (dir.path / "missing.db").string(), "--rm",
                          "pg=oracle:host=x password=" + std::string(xatm::test::pg_password)},
                         dir.path),
                     "configuration", exit_usage);
  }
  SUBCASE("an argument not understood, which may be a password") {
    auto done = run({"--rm", "pg=postgresql:" + xatm::test::servers().pg, std::string(xatm::test::mysql_password), "--json"},
                    dir.path);
    check_json_error(done, "usage", exit_usage);
  }
  SUBCASE("without --json an error goes to stderr, stdout stays empty") {
    auto done = run({"--log", "x.db"}, dir.path);
    CHECK(done.exit_code() == exit_usage);
    CHECK(done.out.empty());
    CHECK(contains(done.err, "--rm"));
  }
}

TEST_CASE("xatm-recover --json over branches a crash left: a dry run says what it would do, the real run does it") {
  xatm::crash_test::scenario s("recover_cli");
  const auto left = xatm::crash_test::leave_prepared_work(s);
  std::vector<std::string> args{"--json", "--log", s.log_path().string()};
  for (const auto& arg : rms()) args.push_back(arg);

  // Results and decisions of this scenario's branches, by gtrid, from one run's JSON.
  auto branches_of = [&](const json& document, const std::string& gtrid) {
    std::vector<json> found;
    for (const auto& branch : document["branches"]) {
      if (branch["gtrid"] == gtrid) found.push_back(branch);
    }
    return found;
  };

  auto dry_args = args;
  dry_args.push_back("--dry-run");
  const auto dry = run(dry_args, s.next_file("dry").parent_path());
  CHECK(dry.exit_code() == exit_unresolved);
  const json report = parsed(dry);
  CHECK(report["tool"] == "xatm-recover");
  CHECK(report["dry_run"] == true);
  CHECK(report["log"] == s.log_path().string());
  CHECK(report["outcome"]["exit_code"] == exit_unresolved);
  CHECK(report["outcome"]["status"] == "unresolved");
  CHECK(report["unreachable_rms"].empty());
  const auto to_commit = branches_of(report, left.to_commit.gtrid);
  REQUIRE(to_commit.size() >= 2);  // one per RM, and the decision's own line
  for (const auto& branch : to_commit) {
    CAPTURE(branch.dump());
    if (branch["kind"] == "decision") {
      CHECK(branch["result"] == "would_forget");
      continue;
    }
    CHECK(branch["kind"] == "xa_branch");
    CHECK(branch["state"] == "prepared");
    CHECK(branch["decision"] == "commit");
    CHECK(branch["action"] == "commit");
    CHECK(branch["result"] == "would_commit");
    CHECK(branch["format_id"].is_number_integer());
    CHECK(branch["bqual"].is_string());
    CHECK((branch["rm"] == "pg" || branch["rm"] == "maria"));
  }
  const auto to_roll_back = branches_of(report, left.to_roll_back.gtrid);
  REQUIRE(to_roll_back.size() == 2);
  for (const auto& branch : to_roll_back) {
    CAPTURE(branch.dump());
    CHECK(branch["decision"] == "presumed_abort");
    CHECK(branch["action"] == "rollback");
    CHECK(branch["result"] == "would_roll_back");
  }

  // MariaDB may still hold a branch for a session that is ending: run until clean.
  json real;
  int code = -1;
  for (int attempt = 0; attempt < 10 && code != exit_clean; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(500ms);
    const auto done = run(args, s.next_file("real").parent_path());
    code = done.exit_code();
    real = parsed(done);
    CHECK(real["outcome"]["exit_code"] == code);
    for (const auto& branch : branches_of(real, left.to_commit.gtrid)) {
      if (branch["kind"] == "xa_branch") CHECK((branch["result"] == "committed" || branch["result"] == "unresolved"));
    }
    for (const auto& branch : branches_of(real, left.to_roll_back.gtrid)) {
      CHECK((branch["result"] == "rolled_back" || branch["result"] == "unresolved"));
    }
  }
  CHECK(code == exit_clean);
  CHECK(real["outcome"]["status"] == "clean");
  CHECK(real["dry_run"] == false);
}
