// logging/logging_test.cpp: xatm's records in a service that has its own Boost.Log setup
// (docs/logging.md): nothing until the service routes them, then the service's own sinks,
// filters and formatters see them next to its own records, with channel and severity readable,
// cut at the threshold the service chose. The TM here drives scripted RMs (no server).
#include <doctest/doctest.h>

#include <boost/log/expressions.hpp>
#include <boost/log/sources/record_ostream.hpp>
#include <boost/log/sources/severity_logger.hpp>
#include <boost/mpl/vector.hpp>
#include <algorithm>
#include <chrono>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/tm_access.h"
#include "logging/record_sink.h"
#include "support/temp_dir.h"
#include "testing/fake_rm.h"
#include "xatm/logging.h"
#include "xatm/transaction_manager.h"

namespace {

namespace logging = boost::log;
namespace expr = boost::log::expressions;
using xatm::log_level;
using xatm::test::record_sink;
using xatm::test::seen_record;

// The service's own severity scale: another type under the same attribute name "Severity".
enum class app_severity { chatter, normal, alarm };

std::ostream& operator<<(std::ostream& out, app_severity level) {
  switch (level) {
    case app_severity::chatter: return out << "CHATTER";
    case app_severity::normal: return out << "NORMAL";
    case app_severity::alarm: return out << "ALARM";
  }
  return out;
}

// A TM with one decision log and two scripted RMs, committing one two-phase transaction: the
// TM logs at info (opened, RMs registered) and the protocol at debug (votes, decision).
void run_two_phase_commit() {
  xatm::test::temp_dir dir("xatm-logging");
  xatm::tm_options options;
  options.tm_id = "logging-test";
  options.log_path = dir.file("decisions.db");
  options.recovery_interval = std::chrono::milliseconds(0);
  auto tm = xatm::detail::tm_access::open(options, {});
  std::vector<std::unique_ptr<xatm::testing::fake_rm>> rms;
  for (std::string name : {"rm1", "rm2"}) {
    auto server = std::make_shared<xatm::testing::fake_server>();
    xatm::detail::tm_access::register_rm(*tm, name, [name, server]() -> xatm::result<std::unique_ptr<xatm::resource_manager>> {
      return std::unique_ptr<xatm::resource_manager>(std::make_unique<xatm::testing::fake_rm>(name, server));
    });
    rms.push_back(std::make_unique<xatm::testing::fake_rm>(name, server));
  }
  auto tx = tm->begin();
  for (auto& rm : rms) tx.enlist(*rm);
  REQUIRE(tx.commit() == xatm::commit_outcome::committed);
}

std::vector<seen_record> xatm_records(const record_sink& sink) {
  std::vector<seen_record> mine;
  for (const auto& record : sink.records()) {
    if (record.channel && record.channel->rfind("xatm.", 0) == 0) mine.push_back(record);
  }
  return mine;
}

bool any_line_contains(const std::vector<seen_record>& records, const std::string& text) {
  return std::any_of(records.begin(), records.end(),
                     [&](const seen_record& record) { return record.line.find(text) != std::string::npos; });
}

// Puts xatm's threshold back as the test found it.
struct threshold_restorer {
  log_level before = xatm::log_threshold();
  ~threshold_restorer() { xatm::log_to_boost_log(before); }
};

}  // namespace

TEST_CASE("levels read and print by name") {
  for (auto level : {log_level::trace, log_level::debug, log_level::info, log_level::warning, log_level::error,
                     log_level::off}) {
    CHECK(xatm::parse_log_level(xatm::to_string(level)) == level);
  }
  CHECK(xatm::to_string(log_level::warning) == "warning");
  CHECK_FALSE(xatm::parse_log_level("WARNING").has_value());
  CHECK_FALSE(xatm::parse_log_level("fatal").has_value());
  CHECK_FALSE(xatm::parse_log_level("").has_value());
}

TEST_CASE("a service with its own severity enum sees xatm's records once it routes them") {
  threshold_restorer restore;
  record_sink sink;
  // The service's sink, as docs/logging.md shows it: its own records at `normal` and above,
  // xatm's records by channel (xatm's threshold cuts those), and a formatter that prints either
  // severity type found under "Severity".
  sink.frontend().set_filter(expr::attr<app_severity>("Severity") >= app_severity::normal ||
                             expr::begins_with(expr::attr<std::string>("Channel"), "xatm."));
  sink.frontend().set_formatter(
      expr::stream << '[' << expr::attr<boost::mpl::vector<app_severity, logging::trivial::severity_level>>("Severity")
                   << "] " << expr::attr<std::string>("Channel") << ": " << expr::smessage);
  logging::sources::severity_logger<app_severity> service_log;

  SUBCASE("nothing of xatm's before the service asks") {
    xatm::log_to_boost_log(log_level::off);
    run_two_phase_commit();
    BOOST_LOG_SEV(service_log, app_severity::normal) << "service record";
    CHECK(xatm_records(sink).empty());
    CHECK(any_line_contains(sink.records(), "[NORMAL] : service record"));
  }

  SUBCASE("routed at info: info and above, no debug, channel and severity readable") {
    xatm::log_to_boost_log(log_level::info);
    CHECK(xatm::log_threshold() == log_level::info);
    BOOST_LOG_SEV(service_log, app_severity::chatter) << "service chatter";
    run_two_phase_commit();
    BOOST_LOG_SEV(service_log, app_severity::alarm) << "service alarm";
    const auto mine = xatm_records(sink);
    REQUIRE_FALSE(mine.empty());
    for (const auto& record : mine) {
      INFO(record.line);
      REQUIRE(record.xatm_severity.has_value());
      CHECK(*record.xatm_severity >= logging::trivial::info);
    }
    CHECK(any_line_contains(mine, "[info] xatm.tm: transaction manager logging-test"));
    CHECK(any_line_contains(mine, "[info] xatm.log: created decision log"));
    CHECK_FALSE(any_line_contains(mine, "every branch voted yes"));
    // The service's own filter and formatter still work on its own records.
    CHECK(any_line_contains(sink.records(), "[ALARM] : service alarm"));
    CHECK_FALSE(any_line_contains(sink.records(), "service chatter"));
  }

  SUBCASE("routed at debug: the protocol steps too") {
    xatm::log_to_boost_log(log_level::debug);
    run_two_phase_commit();
    const auto mine = xatm_records(sink);
    CHECK(any_line_contains(mine, "[debug] xatm.tm: "));
    CHECK(any_line_contains(mine, "every branch voted yes"));
    CHECK(any_line_contains(mine, "commit decision durable"));
  }

  SUBCASE("a filter on xatm's own severity type next to the service's") {
    xatm::log_to_boost_log(log_level::trace);
    sink.frontend().set_filter(expr::attr<app_severity>("Severity") >= app_severity::normal ||
                               (expr::begins_with(expr::attr<std::string>("Channel"), "xatm.") &&
                                expr::attr<logging::trivial::severity_level>("Severity") >= logging::trivial::info));
    run_two_phase_commit();
    const auto mine = xatm_records(sink);
    REQUIRE_FALSE(mine.empty());
    CHECK_FALSE(any_line_contains(mine, "every branch voted yes"));
    CHECK(any_line_contains(mine, "[info] xatm.log: "));
  }
}

TEST_CASE("log_to_stderr lowers the threshold, never raises it") {
  threshold_restorer restore;
  xatm::log_to_boost_log(log_level::off);
  xatm::log_to_stderr(log_level::error);
  CHECK(xatm::log_threshold() == log_level::error);
  xatm::log_to_boost_log(log_level::debug);
  xatm::log_to_stderr(log_level::warning);
  CHECK(xatm::log_threshold() == log_level::debug);
  xatm::log_to_stderr(log_level::off);  // removes the sink, leaves the threshold to the other sinks
  CHECK(xatm::log_threshold() == log_level::debug);
}
