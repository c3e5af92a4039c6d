#include "core/logging.h"

#include <time.h>  // localtime_r

#include <boost/core/null_deleter.hpp>
#include <boost/log/attributes/value_extraction.hpp>
#include <boost/log/core.hpp>
#include <boost/log/expressions.hpp>
#include <boost/log/keywords/channel.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
#include <boost/smart_ptr/make_shared_object.hpp>
#include <array>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>

namespace xatm {
namespace detail {

std::atomic<unsigned char> log_threshold_value{static_cast<unsigned char>(log_level::off)};

channel_logger& logger_for(log_channel channel) {
  // One logger per channel and thread: a logger shared by all threads takes a lock on every
  // record it opens, even one no sink wants, and every client thread would meet there.
  static thread_local channel_logger tm{boost::log::keywords::channel = "xatm.tm"};
  static thread_local channel_logger log{boost::log::keywords::channel = "xatm.log"};
  static thread_local channel_logger recovery{boost::log::keywords::channel = "xatm.recovery"};
  static thread_local channel_logger pg{boost::log::keywords::channel = "xatm.pg"};
  static thread_local channel_logger mysql{boost::log::keywords::channel = "xatm.mysql"};
  switch (channel) {
    case log_channel::tm: return tm;
    case log_channel::log: return log;
    case log_channel::recovery: return recovery;
    case log_channel::pg: return pg;
    case log_channel::mysql: return mysql;
  }
  return tm;
}

}  // namespace detail

namespace {

namespace logging = boost::log;
namespace expr = boost::log::expressions;

// The macros name both enums' enumerators alike; the stderr filter converts by number.
static_assert(static_cast<int>(log_level::trace) == logging::trivial::trace &&
              static_cast<int>(log_level::debug) == logging::trivial::debug &&
              static_cast<int>(log_level::info) == logging::trivial::info &&
              static_cast<int>(log_level::warning) == logging::trivial::warning &&
              static_cast<int>(log_level::error) == logging::trivial::error);

constexpr std::array<std::string_view, 6> level_names = {"trace", "debug", "info", "warning", "error", "off"};

// The stderr sink's line: local time to the millisecond, level, channel, message. The time is
// taken when the line is written (the sink is synchronous, so that is when the record was made):
// xatm adds no attribute to the service's core, not even a time stamp.
void format_stderr_line(const logging::record_view& record, logging::formatting_ostream& line) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm local{};
  localtime_r(&seconds, &local);
  std::array<char, 32> stamp{};
  const std::size_t length = std::strftime(stamp.data(), stamp.size(), "%Y-%m-%d %H:%M:%S", &local);
  std::array<char, 8> fraction{};
  std::snprintf(fraction.data(), fraction.size(), ".%03d", static_cast<int>(millis));
  line << std::string_view(stamp.data(), length) << fraction.data() << ' ';
  if (auto severity = logging::extract<logging::trivial::severity_level>("Severity", record)) {
    line << logging::trivial::to_string(*severity);
  }
  line << ' ';
  if (auto channel = logging::extract<std::string>("Channel", record)) line << *channel;
  line << "  " << record[expr::smessage];
}

using stderr_sink = logging::sinks::synchronous_sink<logging::sinks::text_ostream_backend>;

// The sink log_to_stderr() installed, if any; guarded by stderr_sink_mutex.
std::mutex stderr_sink_mutex;
boost::shared_ptr<stderr_sink> stderr_sink_installed;

}  // namespace

void log_to_boost_log(log_level level) noexcept {
  detail::log_threshold_value.store(static_cast<unsigned char>(level), std::memory_order_relaxed);
}

log_level log_threshold() noexcept {
  return static_cast<log_level>(detail::log_threshold_value.load(std::memory_order_relaxed));
}

void log_to_stderr(log_level level) {
  std::lock_guard lock(stderr_sink_mutex);
  auto core = logging::core::get();
  if (level == log_level::off) {
    if (stderr_sink_installed) core->remove_sink(stderr_sink_installed);
    stderr_sink_installed.reset();
    return;
  }
  if (!stderr_sink_installed) {
    auto sink = boost::make_shared<stderr_sink>();
    sink->locked_backend()->add_stream(boost::shared_ptr<std::ostream>(&std::cerr, boost::null_deleter()));
    sink->locked_backend()->auto_flush(true);
    sink->set_formatter(&format_stderr_line);
    stderr_sink_installed = sink;
    core->add_sink(sink);
  }
  // Only xatm's channels: the service's own records are the service's business.
  const auto threshold = static_cast<logging::trivial::severity_level>(static_cast<int>(level));
  stderr_sink_installed->set_filter(expr::begins_with(expr::attr<std::string>("Channel"), "xatm.") &&
                                    expr::attr<logging::trivial::severity_level>("Severity") >= threshold);
  // Lowered only: a threshold below `level` serves the service's other sinks.
  unsigned char wanted = static_cast<unsigned char>(level);
  unsigned char current = detail::log_threshold_value.load(std::memory_order_relaxed);
  while (wanted < current &&
         !detail::log_threshold_value.compare_exchange_weak(current, wanted, std::memory_order_relaxed)) {
  }
}

std::optional<log_level> parse_log_level(std::string_view name) noexcept {
  for (std::size_t i = 0; i < level_names.size(); ++i) {
    if (level_names[i] == name) return static_cast<log_level>(i);
  }
  return std::nullopt;
}

std::string_view to_string(log_level level) noexcept {
  const auto index = static_cast<std::size_t>(level);
  return index < level_names.size() ? level_names[index] : "unknown";
}

}  // namespace xatm
