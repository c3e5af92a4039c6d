// A readable console sink for xatm's Boost.Log channels, for tools and examples (the library
// itself never installs a sink). Call once at the start of main().
#pragma once

#include <string_view>

namespace xatm::tools {

// level: "trace", "debug", "info", "warning", "error". Lines look like
// "12:00:01.234 info  xatm.tm  committed xat1:..." on stderr. With show_protocol, the protocol
// steps (channels xatm.tm and xatm.log at debug) show too, whatever the level.
void install_console_log(std::string_view level = "info", bool show_protocol = false);

}  // namespace xatm::tools
