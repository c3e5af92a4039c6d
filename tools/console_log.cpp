#include "console_log.h"

#include <boost/log/attributes/value_extraction.hpp>
#include <boost/log/expressions.hpp>
#include <boost/log/support/date_time.hpp>
#include <boost/log/trivial.hpp>
#include <boost/log/utility/setup/common_attributes.hpp>
#include <boost/log/utility/setup/console.hpp>
#include <iostream>
#include <string>

#include "xatm/logging.h"

namespace xatm::tools {

namespace logging = boost::log;
namespace expr = boost::log::expressions;

void install_console_log(std::string_view level, bool show_protocol) {
  const log_level shown = parse_log_level(level).value_or(log_level::info);
  // The library opens no record below its threshold: lower it to what this sink shows.
  log_to_boost_log(show_protocol && shown > log_level::debug ? log_level::debug : shown);
  if (shown == log_level::off) return;
  const auto threshold = static_cast<logging::trivial::severity_level>(static_cast<int>(shown));
  logging::add_common_attributes();
  logging::add_console_log(
      std::clog,
      logging::keywords::format =
          (expr::stream << expr::format_date_time<boost::posix_time::ptime>("TimeStamp", "%H:%M:%S.%f") << ' '
                        << std::left << std::setw(7) << logging::trivial::severity << ' '
                        << expr::attr<std::string>("Channel") << "  " << expr::smessage),
      logging::keywords::filter =
          logging::trivial::severity >= threshold ||
          (show_protocol && logging::trivial::severity >= logging::trivial::debug &&
           (expr::attr<std::string>("Channel") == "xatm.tm" || expr::attr<std::string>("Channel") == "xatm.log")),
      logging::keywords::auto_flush = true);
}

}  // namespace xatm::tools
