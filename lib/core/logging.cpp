#include "core/logging.h"

#include <boost/log/keywords/channel.hpp>

namespace xatm::detail {

channel_logger& logger_for(log_channel channel) {
  // One logger per channel, created on first use; the _mt logger is safe to share between threads.
  static channel_logger tm{boost::log::keywords::channel = "xatm.tm"};
  static channel_logger log{boost::log::keywords::channel = "xatm.log"};
  static channel_logger recovery{boost::log::keywords::channel = "xatm.recovery"};
  static channel_logger pg{boost::log::keywords::channel = "xatm.pg"};
  static channel_logger mysql{boost::log::keywords::channel = "xatm.mysql"};
  switch (channel) {
    case log_channel::tm: return tm;
    case log_channel::log: return log;
    case log_channel::recovery: return recovery;
    case log_channel::pg: return pg;
    case log_channel::mysql: return mysql;
  }
  return tm;
}

}  // namespace xatm::detail
