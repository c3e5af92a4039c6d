// support/log_capture.h: everything the library logs while a test looks. The library installs no
// Boost.Log sink and opens no record until asked (xatm/logging.h); a log_capture lowers xatm's
// threshold to trace and adds a sink without a filter, so it sees every record of every channel
// at every level (debug included) until it is destroyed, which puts the threshold back. Thread-safe:
// records from any thread are collected; read them with text() from the test's thread. One
// log_capture at a time.
#pragma once

#include <boost/log/core.hpp>
#include <boost/log/sinks/basic_sink_backend.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/smart_ptr/make_shared_object.hpp>
#include <mutex>
#include <string>

#include "xatm/logging.h"

namespace xatm::test {

class log_capture {
 public:
  log_capture() : sink_(boost::make_shared<sink>(boost::make_shared<backend>())) {
    boost::log::core::get()->add_sink(sink_);
    xatm::log_to_boost_log(log_level::trace);
  }
  ~log_capture() {
    xatm::log_to_boost_log(threshold_before_);
    boost::log::core::get()->remove_sink(sink_);
  }
  log_capture(const log_capture&) = delete;
  log_capture& operator=(const log_capture&) = delete;

  // Every record's message so far, one per line.
  std::string text() const { return sink_->locked_backend()->text(); }

 private:
  class backend : public boost::log::sinks::basic_formatted_sink_backend<char> {
   public:
    void consume(const boost::log::record_view&, const string_type& line) {
      std::lock_guard lock(mutex_);
      text_ += line + "\n";
    }
    std::string text() const {
      std::lock_guard lock(mutex_);
      return text_;
    }

   private:
    mutable std::mutex mutex_;
    std::string text_;
  };
  using sink = boost::log::sinks::synchronous_sink<backend>;
  boost::shared_ptr<sink> sink_;
  log_level threshold_before_ = xatm::log_threshold();
};

}  // namespace xatm::test
