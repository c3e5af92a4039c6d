// xatm/metrics.h: a transaction manager's statistics and health as Prometheus text.
//
// render_prometheus() turns a tm_statistics snapshot and a tm_health (xatm/statistics.h) into the
// Prometheus text exposition format 0.0.4, ready to serve as GET /metrics with the content type
// below; docs/metrics.md lists every metric. It is written by hand rather than through a
// Prometheus client library, so that libxatm forces no such dependency on a service (which may
// already use another client: feed it the snapshot instead). A pure function: any thread.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "xatm/export.h"
#include "xatm/statistics.h"

namespace xatm {

// The Content-Type of render_prometheus()'s text.
inline constexpr const char* prometheus_content_type = "text/plain; version=0.0.4; charset=utf-8";

// Labels added to every sample, e.g. {{"tm_id", tm.tm_id()}}. Names match [a-zA-Z_][a-zA-Z0-9_]*
// and are not one of the metrics' own (outcome, cause, phase, le, action); values are escaped.
using metric_labels = std::vector<std::pair<std::string, std::string>>;

// The metrics text: HELP and TYPE lines, then the samples of each family; every series is there
// from the start, at zero. Throws invalid_argument_error for a bad or reserved label name.
XATM_EXPORT std::string render_prometheus(const tm_statistics& stats, const tm_health& health, const metric_labels& labels = {});

}  // namespace xatm
