// logging/record_sink.h: a Boost.Log sink that keeps every record it accepts with its channel and
// severity read back as the attributes xatm documents ("Channel": std::string, "Severity":
// boost::log::trivial::severity_level), and the line the sink's formatter made of it. The sink is
// a service's own: a test sets its filter and formatter. Records arrive from any thread; read
// them from the test's thread. Removed from the core when destroyed.
#pragma once

#include <boost/log/attributes/value_extraction.hpp>
#include <boost/log/core.hpp>
#include <boost/log/sinks/basic_sink_backend.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/log/trivial.hpp>
#include <boost/smart_ptr/make_shared_object.hpp>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace xatm::test {

struct seen_record {
  std::optional<std::string> channel;                               // none: not xatm's
  std::optional<boost::log::trivial::severity_level> xatm_severity;  // none: another type or absent
  std::string line;                                                  // as the sink's formatter wrote it
};

class record_backend : public boost::log::sinks::basic_formatted_sink_backend<char> {
 public:
  void consume(const boost::log::record_view& record, const string_type& line) {
    seen_record seen;
    if (auto channel = boost::log::extract<std::string>("Channel", record)) seen.channel = *channel;
    if (auto level = boost::log::extract<boost::log::trivial::severity_level>("Severity", record)) {
      seen.xatm_severity = *level;
    }
    seen.line = line;
    std::lock_guard lock(mutex_);
    records_.push_back(std::move(seen));
  }
  std::vector<seen_record> records() const {
    std::lock_guard lock(mutex_);
    return records_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<seen_record> records_;
};

using record_sink_frontend = boost::log::sinks::synchronous_sink<record_backend>;

// Adds the sink to the core for its lifetime.
class record_sink {
 public:
  record_sink() : sink_(boost::make_shared<record_sink_frontend>()) { boost::log::core::get()->add_sink(sink_); }
  ~record_sink() { boost::log::core::get()->remove_sink(sink_); }
  record_sink(const record_sink&) = delete;
  record_sink& operator=(const record_sink&) = delete;

  record_sink_frontend& frontend() { return *sink_; }
  std::vector<seen_record> records() const { return sink_->locked_backend()->records(); }

 private:
  boost::shared_ptr<record_sink_frontend> sink_;
};

}  // namespace xatm::test
