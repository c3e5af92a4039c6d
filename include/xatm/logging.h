// xatm/logging.h: where xatm's log lines go, and how many of them it makes.
//
// xatm logs through Boost.Log and, as a library should, installs no sink on its own: the service
// owns the Boost.Log core, its sinks and filters (docs/logging.md). Until the service calls one
// of the functions below, xatm creates no log record at all, so a service that configured nothing
// sees nothing on its stdout or stderr (Boost.Log's fallback sink would print to stdout). Every
// function here may be called from any thread, at any time; records already being written finish.
#pragma once

#include <optional>
#include <string_view>

#include "xatm/export.h"

namespace xatm {

// The levels of xatm's records, lowest first. A record carries its level in Boost.Log's "Severity"
// attribute as the boost::log::trivial::severity_level of the same name (trace ... error).
enum class log_level : unsigned char { trace, debug, info, warning, error, off };

// Makes xatm write its records at `level` and above into the process's Boost.Log core, where the
// service's own sinks and filters see them like any other record; log_level::off (the default)
// stops them. Below this threshold xatm does not even open a record: the check is one relaxed
// atomic load, cheaper than Boost.Log's own filtering. Records carry the attributes "Channel"
// (std::string: "xatm.tm", "xatm.log", "xatm.recovery", "xatm.pg", "xatm.mysql") and "Severity"
// (boost::log::trivial::severity_level). xatm and the service must share one Boost.Log, built as a
// shared library (Boost.Log's own rule for a process of several modules), or the records reach a
// core the service never configured.
XATM_EXPORT void log_to_boost_log(log_level level) noexcept;

// The threshold now in force (log_level::off until a call above or below changes it).
XATM_EXPORT log_level log_threshold() noexcept;

// The one-call setup for a service with no logging of its own: a text sink on stderr showing
// xatm's records (its channels only) at `level` and above, one line each:
//   2024-05-01 12:00:01.234 warning xatm.tm  <message>
// and the threshold lowered to `level` if it was higher. Calling it again changes the level of
// the same sink; log_level::off removes the sink (the threshold stays: other sinks may want it).
// Throws std::bad_alloc only.
XATM_EXPORT void log_to_stderr(log_level level = log_level::warning);

// "trace", "debug", "info", "warning", "error", "off" -> the level; anything else -> nullopt.
XATM_EXPORT std::optional<log_level> parse_log_level(std::string_view name) noexcept;

// The level's name, as parse_log_level() reads it.
XATM_EXPORT std::string_view to_string(log_level level) noexcept;

}  // namespace xatm
