// logging/logging_service_test.cpp: xatm in a service's process against the real servers
// (docs/logging.md). A service that configures no logging gets nothing on stdout or stderr; the
// one-call stderr setup shows warnings and nothing below, on stderr only; PostgreSQL notices
// raised inside a branch, or sent while a connection starts up, land in the xatm.pg channel at
// their own severity, never raw on stderr.
// The service runs as a child process (logging_child.cpp) so that its stdout and stderr are its own.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <boost/log/expressions.hpp>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>

#include "logging/record_sink.h"
#include "support/adapter_checks.h"
#include "support/child_process.h"
#include "support/observers.h"
#include "support/servers.h"
#include "support/temp_dir.h"
#include "support/tm_fixture.h"
#include "xatm/logging.h"

namespace {

using xatm::test::child_process;
using xatm::test::exit_status;
using xatm::test::temp_dir;

struct child_run {
  exit_status status;
  std::string out;
  std::string err;
};

// Runs xatm-logging-child in `mode` with its own decision log dir, on PostgreSQL as `pg`.
child_run run_child(const std::string& mode, const std::string& pg = xatm::test::servers().pg) {
  temp_dir dir("xatm-logging-child");
  child_process child({XATM_LOGGING_CHILD_BIN, mode},
                      {"XATM_LOGGING_PG=" + pg, "XATM_LOGGING_MARIA=" + xatm::test::servers().mysql,
                       "XATM_LOGGING_DIR=" + dir.path.string()},
                      dir.path / "stdout", dir.path / "stderr");
  child_run run;
  run.status = child.wait(std::chrono::seconds(60));
  run.out = child.out();
  run.err = child.err();
  return run;
}

// What PostgreSQL sends every login of the role below during connection startup, before the
// connection is ready (as it does for a collation version mismatch): the role's own
// default_tablespace names no tablespace, and a setting the server cannot apply at login is a
// WARNING, not an error.
constexpr const char* startup_warning =
    "WARNING: invalid value for parameter \"default_tablespace\": \"xatm_no_such_tablespace\" "
    "DETAIL: Tablespace \"xatm_no_such_tablespace\" does not exist.";

// The `servers` fixture's database as the role xatm_startup_warning (a superuser like xatm, so
// the child's transaction runs as it does as xatm), created on first use.
std::string pg_with_startup_warning() {
  static const std::string conninfo = [] {
    auto admin = xatm::test::observe_pg();
    // Trusted like every local role but xatm_pw (servers.sh). ALTER ROLE only NOTICEs the
    // missing tablespace (it may be created later); the login is where it WARNs.
    xatm::test::run(*admin,
                    "DO $$ BEGIN CREATE ROLE xatm_startup_warning LOGIN SUPERUSER; "
                    "EXCEPTION WHEN duplicate_object THEN NULL; END $$");
    xatm::test::run(*admin, "ALTER ROLE xatm_startup_warning SET default_tablespace = 'xatm_no_such_tablespace'");
    auto settings = xatm::test::settings_of(xatm::test::servers().pg);
    settings.set("user", "xatm_startup_warning");
    return settings.to_conninfo();
  }();
  return conninfo;
}

// Everything written to this process's stderr (fd 2) while it lives, kept in a file.
class stderr_capture {
 public:
  stderr_capture() : saved_(::dup(2)) {
    const int file = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(file >= 0);
    REQUIRE(::dup2(file, 2) == 2);
    ::close(file);
  }
  ~stderr_capture() { restore(); }
  stderr_capture(const stderr_capture&) = delete;
  stderr_capture& operator=(const stderr_capture&) = delete;

  // Puts fd 2 back and answers what was written meanwhile.
  std::string text() {
    restore();
    std::ifstream in(path_);
    std::stringstream content;
    content << in.rdbuf();
    return content.str();
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }
  temp_dir dir_{"xatm-stderr"};
  std::string path_ = dir_.file("stderr");
  int saved_;
};

}  // namespace

TEST_CASE("a service that configures no logging sees nothing of xatm on stdout or stderr") {
  const child_run run = run_child("quiet");
  INFO("stdout: " << run.out << "\nstderr: " << run.err);
  REQUIRE(run.status.exited);
  REQUIRE(run.status.code == 0);
  CHECK(run.out.empty());
  CHECK(run.err.empty());
}

TEST_CASE("a server warning during connection startup reaches neither stdout nor stderr of a quiet service") {
  const child_run run = run_child("quiet", pg_with_startup_warning());
  INFO("stdout: " << run.out << "\nstderr: " << run.err);
  REQUIRE(run.status.exited);
  REQUIRE(run.status.code == 0);
  CHECK(run.out.empty());
  CHECK(run.err.empty());
}

TEST_CASE("log_to_stderr() shows a server warning of connection startup as xatm's record, not libpq's") {
  const child_run run = run_child("stderr", pg_with_startup_warning());
  INFO("stdout: " << run.out << "\nstderr: " << run.err);
  REQUIRE(run.status.exited);
  REQUIRE(run.status.code == 0);
  CHECK(run.out.empty());
  CHECK(run.err.find(std::string(" warning xatm.pg  [pg] server says ") + startup_warning + "\n") != std::string::npos);
  CHECK(run.err.find("WARNING:  ") == std::string::npos);  // libpq's own printing
}

TEST_CASE("the control: records routed into a core with no sink reach stdout through Boost.Log's fallback") {
  // What "quiet" guards against: this is the output a service got before xatm kept its records
  // to itself, and what it gets if it routes them without adding a sink.
  const child_run run = run_child("boost-fallback");
  INFO("stdout: " << run.out << "\nstderr: " << run.err);
  REQUIRE(run.status.exited);
  REQUIRE(run.status.code == 0);
  CHECK(run.out.find("every branch voted yes") != std::string::npos);
  CHECK(run.out.find("xatm-logging-child notice") != std::string::npos);
}

TEST_CASE("log_to_stderr() prints xatm's warnings and nothing below, on stderr only") {
  const child_run run = run_child("stderr");
  INFO("stdout: " << run.out << "\nstderr: " << run.err);
  REQUIRE(run.status.exited);
  REQUIRE(run.status.code == 0);
  CHECK(run.out.empty());
  CHECK(run.err.find(" warning xatm.pg  [pg] server says WARNING: xatm-logging-child warning\n") != std::string::npos);
  CHECK(run.err.find(" debug ") == std::string::npos);
  CHECK(run.err.find(" info ") == std::string::npos);
  CHECK(run.err.find("xatm-logging-child notice") == std::string::npos);  // a NOTICE is info
  CHECK(run.err.find("WARNING:  ") == std::string::npos);                 // libpq's own printing
}

TEST_CASE("a PostgreSQL notice inside a branch lands in xatm.pg at its severity, not raw on stderr") {
  namespace expr = boost::log::expressions;
  const xatm::log_level before = xatm::log_threshold();
  xatm::test::tm_fixture fixture("logging");
  xatm::test::record_sink sink;
  sink.frontend().set_filter(expr::attr<std::string>("Channel") == "xatm.pg");
  sink.frontend().set_formatter(expr::stream << expr::smessage);
  auto pg = fixture.tm->connect("pg");
  std::string raw_stderr;
  {
    xatm::log_to_boost_log(xatm::log_level::info);
    stderr_capture capture;
    auto tx = fixture.tm->begin();
    tx.enlist(*pg);
    pg->exec("DO $$ BEGIN RAISE NOTICE 'hello'; END $$").value();
    pg->exec("DO $$ BEGIN RAISE WARNING 'careful'; END $$").value();
    pg->exec("DO $$ BEGIN RAISE DEBUG 'hidden'; END $$").value();  // below client_min_messages: never sent
    tx.rollback();
    raw_stderr = capture.text();
    xatm::log_to_boost_log(before);
  }
  CHECK(raw_stderr.empty());
  bool notice = false;
  bool warning = false;
  for (const auto& record : sink.records()) {
    INFO(record.line);
    CHECK(record.line.find("hidden") == std::string::npos);
    if (record.line == "[pg] server says NOTICE: hello") {
      notice = true;
      CHECK(record.xatm_severity == boost::log::trivial::info);
    }
    if (record.line == "[pg] server says WARNING: careful") {
      warning = true;
      CHECK(record.xatm_severity == boost::log::trivial::warning);
    }
  }
  CHECK(notice);
  CHECK(warning);
}

TEST_CASE("a PostgreSQL warning during connection startup lands in xatm.pg as a warning, not raw on stderr") {
  namespace expr = boost::log::expressions;
  const xatm::log_level before = xatm::log_threshold();
  xatm::test::tm_fixture fixture("logging-startup", {}, xatm::test::fixture_rms::none);
  fixture.tm->register_rm("pg", "postgresql", pg_with_startup_warning());
  xatm::test::record_sink sink;
  sink.frontend().set_filter(expr::attr<std::string>("Channel") == "xatm.pg");
  sink.frontend().set_formatter(expr::stream << expr::smessage);
  std::string raw_stderr;
  {
    xatm::log_to_boost_log(xatm::log_level::info);
    stderr_capture capture;
    auto pg = fixture.tm->connect("pg");
    CHECK(xatm::test::run(*pg, "SELECT current_user").rows.at(0).at(0) == "xatm_startup_warning");
    raw_stderr = capture.text();
    xatm::log_to_boost_log(before);
  }
  CHECK(raw_stderr.empty());
  bool warned = false;
  for (const auto& record : sink.records()) {
    INFO(record.line);
    if (record.line == std::string("[pg] server says ") + startup_warning) {
      warned = true;
      CHECK(record.xatm_severity == boost::log::trivial::warning);
    }
  }
  CHECK(warned);
}
