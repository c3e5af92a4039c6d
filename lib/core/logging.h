// Internal: Boost.Log channels, one per component. The library never installs a sink; the
// tools and examples do (tools/console_log.h). Records below the sinks' filter cost one check:
// BOOST_LOG_SEV evaluates the stream expression only when a sink wants the record.
#pragma once

#include <boost/log/sources/record_ostream.hpp>
#include <boost/log/sources/severity_channel_logger.hpp>
#include <boost/log/trivial.hpp>
#include <string>

namespace xatm::detail {

enum class log_channel { tm, log, recovery, pg, mysql };

// Not the _mt variant: each thread has its own loggers (logging.cpp), so none needs a lock.
using channel_logger = boost::log::sources::severity_channel_logger<boost::log::trivial::severity_level, std::string>;

// The calling thread's logger of a channel ("xatm.tm", "xatm.log", "xatm.recovery", "xatm.pg",
// "xatm.mysql").
channel_logger& logger_for(log_channel channel);

}  // namespace xatm::detail

// XATM_LOG(pg, debug) << "prepare " << branch.to_string();
#define XATM_LOG(channel, level) XATM_LOG_TO(::xatm::detail::log_channel::channel, level)

// The same for a channel chosen at run time (a log_channel value): XATM_LOG_TO(channel_, debug).
#define XATM_LOG_TO(channel_value, level) \
  BOOST_LOG_SEV(::xatm::detail::logger_for(channel_value), ::boost::log::trivial::level)
