#include "core/logging.h"

#include <boost/log/keywords/channel.hpp>

namespace xatm::detail {

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

}  // namespace xatm::detail
