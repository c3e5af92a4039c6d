// Internal: Boost.Log channels, one per component, and the XATM_LOG macros. The library never
// installs a sink on its own (include/xatm/logging.h, docs/logging.md): the service does, or
// calls xatm::log_to_stderr(). A record below xatm's threshold (xatm::log_to_boost_log; off
// until the service asks) is never opened, so Boost.Log is not touched at all, and the stream
// expression after the macro is not evaluated.
#pragma once

#include <boost/log/sources/record_ostream.hpp>
#include <boost/log/sources/severity_channel_logger.hpp>
#include <boost/log/trivial.hpp>
#include <atomic>
#include <string>

#include "xatm/logging.h"

namespace xatm::detail {

enum class log_channel { tm, log, recovery, pg, mysql };

// Not the _mt variant: each thread has its own loggers (logging.cpp), so none needs a lock.
using channel_logger = boost::log::sources::severity_channel_logger<boost::log::trivial::severity_level, std::string>;

// The calling thread's logger of a channel ("xatm.tm", "xatm.log", "xatm.recovery", "xatm.pg",
// "xatm.mysql").
channel_logger& logger_for(log_channel channel);

// xatm::log_threshold() as a number; log_level::off until the service asks for records.
extern std::atomic<unsigned char> log_threshold_value;

// Whether a record at `level` is wanted at all. Relaxed: a record opened or skipped around the
// moment the threshold changes is harmless either way, and no other memory depends on it.
inline bool log_wanted(log_level level) noexcept {
  return static_cast<unsigned char>(level) >= log_threshold_value.load(std::memory_order_relaxed);
}

}  // namespace xatm::detail

// XATM_LOG(pg, debug) << "prepare " << branch.to_string();
#define XATM_LOG(channel, level) XATM_LOG_TO(::xatm::detail::log_channel::channel, level)

// The same for a channel chosen at run time (a log_channel value): XATM_LOG_TO(channel_, debug).
// A for statement rather than `if (...) {} else`, so that `if (c) XATM_LOG(...) << x;` in the
// caller raises no dangling-else question; it runs at most once.
#define XATM_LOG_TO(channel_value, level)                                                          \
  for (bool xatm_log_wanted_ = ::xatm::detail::log_wanted(::xatm::log_level::level); xatm_log_wanted_; \
       xatm_log_wanted_ = false)                                                                   \
  BOOST_LOG_SEV(::xatm::detail::logger_for(channel_value), ::boost::log::trivial::level)
