// support/doctest_main.cpp: the one main() of every test executable.
//
// xatm opens no log record until asked (xatm/logging.h). XATM_TEST_LOG names a level (trace,
// debug, info, warning, error): then records at and above it go to stderr. Otherwise tests
// install a sink that keeps nothing, because Boost.Log prints every record to stdout when no sink
// exists at all, and a test that captures log lines (support/log_capture.h) asks xatm for every
// record; its own sink sits next to this one.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <boost/log/core.hpp>
#include <boost/log/expressions.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
#include <boost/log/trivial.hpp>
#include <boost/log/utility/setup/console.hpp>
#include <boost/make_shared.hpp>
#include <cstdlib>
#include <iostream>

#include "xatm/logging.h"

namespace {

void install_test_log_sink() {
  namespace logging = boost::log;
  const char* level_name = std::getenv("XATM_TEST_LOG");
  logging::trivial::severity_level level = logging::trivial::info;
  if (level_name != nullptr && logging::trivial::from_string(level_name, std::strlen(level_name), level)) {
    logging::add_console_log(std::clog, logging::keywords::filter = logging::trivial::severity >= level);
    xatm::log_to_boost_log(static_cast<xatm::log_level>(static_cast<int>(level)));
    return;
  }
  using sink_type = logging::sinks::synchronous_sink<logging::sinks::text_ostream_backend>;
  auto silent = boost::make_shared<sink_type>();
  silent->set_filter(logging::expressions::attr<int>("xatm.never") == 1);  // accepts nothing
  logging::core::get()->add_sink(silent);
}

}  // namespace

int main(int argc, char** argv) {
  install_test_log_sink();
  doctest::Context context(argc, argv);
  return context.run();
}
