// A readable console sink for xatm's Boost.Log channels, for tools and examples. It is the tools'
// own choice of lines; a service uses xatm/logging.h (log_to_stderr, or its own sinks after
// log_to_boost_log). Call once at the start of main().
#pragma once

#include <string_view>

namespace xatm::tools {

// level: "trace", "debug", "info", "warning", "error" (anything else counts as "info"). Lines look
// like "12:00:01.234567 info    xatm.tm  committed xat1:..." on stderr. With show_protocol, the
// protocol steps (channels xatm.tm and xatm.log at debug) show too, whatever the level. Sets
// xatm's threshold (xatm::log_to_boost_log) to the lowest level the sink shows.
void install_console_log(std::string_view level = "info", bool show_protocol = false);

}  // namespace xatm::tools
