#include "console_log.h"

#include <boost/log/attributes/value_extraction.hpp>
#include <boost/log/expressions.hpp>
#include <boost/log/support/date_time.hpp>
#include <boost/log/trivial.hpp>
#include <boost/log/utility/setup/common_attributes.hpp>
#include <boost/log/utility/setup/console.hpp>
#include <iostream>
#include <string>

namespace xatm::tools {

namespace logging = boost::log;
namespace expr = boost::log::expressions;

void install_console_log(std::string_view level, bool show_protocol) {
  logging::trivial::severity_level threshold = logging::trivial::info;
  if (!logging::trivial::from_string(level.data(), level.size(), threshold)) {
    threshold = logging::trivial::info;
  }
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
