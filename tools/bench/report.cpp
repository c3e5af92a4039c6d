#include "bench/report.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <cstdio>
#include <map>
#include <ostream>
#include <sstream>

#include "xatm/version.h"

namespace xatm::bench {
namespace {

// printf into a std::string, for fixed-width columns.
template <class... Args>
std::string format(const char* pattern, Args... args) {
  char buffer[512];
  std::snprintf(buffer, sizeof buffer, pattern, args...);
  return buffer;
}

using json = nlohmann::ordered_json;

// A measured number, or null where nothing was measured (a NaN or an infinity).
json number(double value) { return std::isfinite(value) ? json(value) : json(nullptr); }
json optional_number(const std::optional<double>& value) { return value ? number(*value) : json(nullptr); }

std::string xml_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

const char* mode_color(mode m) {
  switch (m) {
    case mode::local: return "#4c72b0";
    case mode::raw_xa: return "#dd8452";
    case mode::xa: return "#55a868";
    case mode::xa_early: return "#c44e52";
    case mode::three_phase: return "#8172b3";
    case mode::commit_marker: return "#937860";
    case mode::commit_marker_early: return "#da8bc3";
    case mode::tcc: return "#8c8c8c";
  }
  return "#000000";
}

// The smallest 1-2-5 step that cuts [0, max] into at most 5 intervals.
double nice_step(double max) {
  if (max <= 0) return 1;
  const double rough = max / 5;
  const double magnitude = std::pow(10.0, std::floor(std::log10(rough)));
  for (double factor : {1.0, 2.0, 5.0, 10.0}) {
    if (factor * magnitude >= rough) return factor * magnitude;
  }
  return 10 * magnitude;
}

std::vector<workload_kind> workloads_in(const run_result& run) {
  std::vector<workload_kind> kinds;
  for (const measurement& cell : run.cells) {
    if (std::find(kinds.begin(), kinds.end(), cell.workload) == kinds.end()) kinds.push_back(cell.workload);
  }
  return kinds;
}

std::vector<mode> modes_in(const run_result& run) {
  std::vector<mode> modes;
  for (mode m : {mode::local, mode::raw_xa, mode::xa, mode::xa_early, mode::three_phase, mode::commit_marker,
                 mode::commit_marker_early, mode::tcc}) {
    for (const measurement& cell : run.cells) {
      if (cell.m == m) {
        modes.push_back(m);
        break;
      }
    }
  }
  return modes;
}

std::string ratio_text(const std::optional<double>& ratio) { return ratio ? format("%.3f", *ratio) : "-"; }

}  // namespace

std::optional<double> throughput_ratio(const run_result& run, const measurement& cell, mode other) {
  const measurement* base = run.find(cell.workload, other, cell.clients);
  if (base == nullptr || base->throughput() <= 0) return std::nullopt;
  return cell.throughput() / base->throughput();
}

void print_tables(std::ostream& out, const run_result& run) {
  for (workload_kind kind : workloads_in(run)) {
    out << "\n== " << workload_name(kind) << "\n";
    out << format("%-8s %7s %9s %8s %8s %8s %8s %9s %10s %10s %10s %7s\n", "mode", "clients", "tx/s", "p50 ms",
                  "p95 ms", "p99 ms", "x local", "x raw-xa", "fsyncs/tx", "usr us/tx", "sys us/tx", "failed");
    std::vector<const measurement*> cells;
    for (const measurement& cell : run.cells) {
      if (cell.workload == kind) cells.push_back(&cell);
    }
    std::stable_sort(cells.begin(), cells.end(), [](const measurement* x, const measurement* y) {
      return x->clients != y->clients ? x->clients < y->clients : x->m < y->m;
    });
    for (const measurement* cell : cells) {
      const auto fsyncs = cell->log_fsyncs_per_tx();
      out << format("%-8s %7d %9.1f %8.2f %8.2f %8.2f %8s %9s %10s %10.0f %10.0f %7llu\n", mode_name(cell->m),
                    cell->clients, cell->throughput(), cell->percentile_ms(0.50), cell->percentile_ms(0.95),
                    cell->percentile_ms(0.99), ratio_text(throughput_ratio(run, *cell, mode::local)).c_str(),
                    ratio_text(throughput_ratio(run, *cell, mode::raw_xa)).c_str(),
                    fsyncs ? format("%.3f", *fsyncs).c_str() : "-", cell->user_us_per_tx(), cell->system_us_per_tx(),
                    static_cast<unsigned long long>(cell->failed));
    }
  }
}

std::vector<target_check> evaluate_targets(const run_result& run) {
  std::vector<target_check> targets;
  auto throughput_target = [&](workload_kind kind, int clients, mode base, const std::string& name,
                               mode tested = mode::xa, double limit = 0.95) {
    target_check check{name, false, false, 0, limit, {}};
    const measurement* xa = run.find(kind, tested, clients);
    const measurement* other = run.find(kind, base, clients);
    if (xa != nullptr && other != nullptr && other->throughput() > 0) {
      check.measured = true;
      check.value = xa->throughput() / other->throughput();
      check.met = check.value >= check.limit;
      check.detail = format("%s %.1f tx/s, %s %.1f tx/s", mode_name(tested), xa->throughput(), mode_name(base),
                            other->throughput());
      if (!check.met)
        check.detail += format(": missed by %.1f%% of %s", (check.limit - check.value) * 100, mode_name(base));
    } else {
      check.detail = "not measured in this run";
    }
    targets.push_back(std::move(check));
  };
  throughput_target(workload_kind::transfer, 16, mode::raw_xa, "transfer, 16 clients: xa throughput >= 0.95 x raw-xa");

  {
    target_check check{"transfer, 1 client: xa p50 <= raw-xa p50 + 1.2 x log fsync", false, false, 0, 0, {}};
    const measurement* xa = run.find(workload_kind::transfer, mode::xa, 1);
    const measurement* raw = run.find(workload_kind::transfer, mode::raw_xa, 1);
    if (xa != nullptr && raw != nullptr && !xa->latencies_us.empty() && !raw->latencies_us.empty()) {
      check.measured = true;
      check.value = xa->percentile_ms(0.5);
      check.limit = raw->percentile_ms(0.5) + 1.2 * run.log_fsync_ms;
      check.met = check.value <= check.limit;
      check.detail =
          format("xa p50 %.3f ms; raw-xa p50 %.3f ms + 1.2 x %.3f ms fsync = %.3f ms; xa adds %.3f ms", check.value,
                 raw->percentile_ms(0.5), run.log_fsync_ms, check.limit, check.value - raw->percentile_ms(0.5));
      if (!check.met) check.detail += format(": missed by %.3f ms", check.value - check.limit);
    } else {
      check.detail = "not measured in this run";
    }
    targets.push_back(std::move(check));
  }

  throughput_target(workload_kind::read_write, 1, mode::local, "read-write, 1 client: xa throughput >= 0.95 x local");
  throughput_target(workload_kind::read_write, 16, mode::local,
                    "read-write, 16 clients: xa throughput >= 0.95 x local");

  {
    target_check check{"transfer, 16 clients: decision-log fsyncs per decision < 0.1", false, false, 0, 0.1, {}};
    const measurement* xa = run.find(workload_kind::transfer, mode::xa, 16);
    if (xa != nullptr && xa->decisions_logged > 0) {
      check.measured = true;
      check.value = static_cast<double>(xa->log_batches) / static_cast<double>(xa->decisions_logged);
      check.met = check.value < check.limit;
      check.detail = format(
          "%llu decisions in %llu SQLite transactions (%.1f decisions per fsync)",
          static_cast<unsigned long long>(xa->decisions_logged), static_cast<unsigned long long>(xa->log_batches),
          xa->log_batches > 0 ? static_cast<double>(xa->decisions_logged) / static_cast<double>(xa->log_batches) : 0.0);
      if (!check.met) check.detail += format(": missed by %.3f", check.value - check.limit);
    } else {
      check.detail = "not measured in this run";
    }
    targets.push_back(std::move(check));
  }

  // The commit-marker protocol: faster than the databases' own XA, with no fsync of the TM's.
  throughput_target(workload_kind::transfer, 16, mode::raw_xa,
                    "transfer, 16 clients: marker throughput >= 1.25 x raw-xa", mode::commit_marker, 1.25);
  {
    target_check check{"transfer, 1 client: marker p50 <= raw-xa p50", false, false, 0, 0, {}};
    const measurement* marker = run.find(workload_kind::transfer, mode::commit_marker, 1);
    const measurement* raw = run.find(workload_kind::transfer, mode::raw_xa, 1);
    if (marker != nullptr && raw != nullptr && !marker->latencies_us.empty() && !raw->latencies_us.empty()) {
      check.measured = true;
      check.value = marker->percentile_ms(0.5);
      check.limit = raw->percentile_ms(0.5);
      check.met = check.value <= check.limit;
      check.detail = format("marker p50 %.3f ms, raw-xa p50 %.3f ms", check.value, check.limit);
      if (!check.met) check.detail += format(": missed by %.3f ms", check.value - check.limit);
    } else {
      check.detail = "not measured in this run";
    }
    targets.push_back(std::move(check));
  }
  {
    target_check check{"transfer: marker decision-log fsyncs per transaction = 0", false, false, 0, 0, {}};
    std::uint64_t batches = 0;
    std::uint64_t committed = 0;
    for (const measurement& cell : run.cells) {
      if (cell.workload != workload_kind::transfer || cell.m != mode::commit_marker) continue;
      check.measured = true;
      batches += cell.log_batches;
      committed += cell.tm_committed;
    }
    check.value = committed > 0 ? static_cast<double>(batches) / static_cast<double>(committed) : 0;
    check.met = check.measured && batches == 0;
    check.detail = check.measured
                       ? format("%llu SQLite transactions for %llu commits", static_cast<unsigned long long>(batches),
                                static_cast<unsigned long long>(committed))
                       : "not measured in this run";
    targets.push_back(std::move(check));
  }
  throughput_target(workload_kind::pg_pg, 16, mode::raw_xa, "pg-pg, 16 clients: marker throughput >= 1.2 x raw-xa",
                    mode::commit_marker, 1.2);
  throughput_target(workload_kind::transfer, 16, mode::local,
                    "transfer, 16 clients: marker throughput >= 0.8 x local (moonshot)", mode::commit_marker, 0.8);
  return targets;
}

void print_targets(std::ostream& out, const std::vector<target_check>& targets) {
  out << "\n== performance targets, from this run\n";
  for (const target_check& t : targets) {
    const char* verdict = !t.measured ? "n/a   " : t.met ? "met   " : "MISSED";
    out << verdict << "  " << t.name;
    if (t.measured) out << format(": %.3f (limit %.3f)", t.value, t.limit);
    out << "\n        " << t.detail << "\n";
  }
}

// One JSON object (docs/performance.md lists the fields), written by nlohmann-json; each result,
// target and check on a line of its own, so that the file reads and diffs line by line.
std::string to_json(const run_result& run, const std::vector<target_check>& targets) {
  const settings& s = run.config;
  json document;
  document["schema_version"] = 1;
  document["tool"] = "xatm-bench";
  document["version"] = xatm::version_string();
  document["started_utc"] = run.started_utc;
  json modes = json::array();
  for (mode m : s.modes) modes.push_back(mode_name(m));
  json workloads = json::array();
  for (workload_kind kind : s.workloads) workloads.push_back(workload_name(kind));
  document["settings"] = json{{"seconds", number(s.seconds)}, {"warmup", number(s.warmup)}, {"rounds", s.rounds},
                              {"accounts", s.accounts},       {"clients", s.clients},        {"modes", modes},
                              {"workloads", workloads}};
  document["log_fsync_ms"] = number(run.log_fsync_ms);
  document["log_fsync_low_ms"] = number(run.log_fsync_low_ms);
  document["log_fsync_high_ms"] = number(run.log_fsync_high_ms);
  document["log_fsync_samples"] = run.log_fsync_samples;
  json round_trips = json::object();
  for (const auto& [rm_name, ms] : run.round_trip_ms) round_trips[rm_name] = number(ms);
  document["round_trip_ms"] = round_trips;
  document["notes"] = run.notes;
  json results = json::array();
  for (const measurement& c : run.cells) {
    results.push_back(json{{"workload", workload_name(c.workload)},
                           {"mode", mode_name(c.m)},
                           {"clients", c.clients},
                           {"committed", c.committed},
                           {"failed", c.failed},
                           {"seconds", number(c.seconds)},
                           {"throughput", number(c.throughput())},
                           {"p50_ms", number(c.percentile_ms(0.5))},
                           {"p95_ms", number(c.percentile_ms(0.95))},
                           {"p99_ms", number(c.percentile_ms(0.99))},
                           {"ratio_to_local", optional_number(throughput_ratio(run, c, mode::local))},
                           {"ratio_to_raw_xa", optional_number(throughput_ratio(run, c, mode::raw_xa))},
                           {"log_fsyncs_per_tx", optional_number(c.log_fsyncs_per_tx())},
                           {"decisions_logged", c.decisions_logged},
                           {"log_batches", c.log_batches},
                           {"user_cpu_us_per_tx", number(c.user_us_per_tx())},
                           {"system_cpu_us_per_tx", number(c.system_us_per_tx())}});
  }
  document["results"] = std::move(results);
  json checked = json::array();
  for (const target_check& t : targets) {
    checked.push_back(json{{"name", t.name},
                           {"measured", t.measured},
                           {"met", t.met},
                           {"value", number(t.value)},
                           {"limit", number(t.limit)},
                           {"detail", t.detail}});
  }
  document["targets"] = std::move(checked);
  json verified = json::array();
  for (const verification& v : run.checks) {
    verified.push_back(
        json{{"workload", workload_name(v.workload)}, {"clients", v.clients}, {"ok", v.ok}, {"detail", v.detail}});
  }
  document["verification"] = std::move(verified);

  std::ostringstream out;
  out << "{\n";
  bool first = true;
  for (const auto& [key, value] : document.items()) {
    out << (first ? "" : ",\n") << "  " << json(key).dump() << ": ";
    first = false;
    if (value.is_array() && !value.empty() && value.front().is_object()) {
      out << "[\n";
      for (std::size_t i = 0; i < value.size(); ++i) out << "    " << value[i].dump() << (i + 1 < value.size() ? ",\n" : "\n");
      out << "  ]";
    } else {
      out << value.dump();
    }
  }
  out << "\n}\n";
  return out.str();
}

std::string to_csv(const run_result& run) {
  std::ostringstream out;
  out << "workload,mode,clients,committed,failed,seconds,throughput,p50_ms,p95_ms,p99_ms,ratio_to_local,"
         "ratio_to_raw_xa,log_fsyncs_per_tx,user_cpu_us_per_tx,system_cpu_us_per_tx\n";
  auto optional_cell = [](const std::optional<double>& value) {
    return value ? format("%.4f", *value) : std::string();
  };
  for (const measurement& c : run.cells) {
    out << workload_name(c.workload) << ',' << mode_name(c.m) << ',' << c.clients << ',' << c.committed << ','
        << c.failed << ',' << format("%.3f", c.seconds) << ',' << format("%.2f", c.throughput()) << ','
        << format("%.3f", c.percentile_ms(0.5)) << ',' << format("%.3f", c.percentile_ms(0.95)) << ','
        << format("%.3f", c.percentile_ms(0.99)) << ',' << optional_cell(throughput_ratio(run, c, mode::local)) << ','
        << optional_cell(throughput_ratio(run, c, mode::raw_xa)) << ',' << optional_cell(c.log_fsyncs_per_tx()) << ','
        << format("%.1f", c.user_us_per_tx()) << ',' << format("%.1f", c.system_us_per_tx()) << '\n';
  }
  return out.str();
}

std::string to_svg(const run_result& run) {
  const auto kinds = workloads_in(run);
  const auto modes = modes_in(run);
  std::vector<int> clients = run.config.clients;
  std::sort(clients.begin(), clients.end());
  constexpr double panel_width = 400;
  constexpr double panel_height = 220;
  constexpr double left = 70;
  constexpr double gap = 90;  // between the two panels
  constexpr double top = 70;  // title and legend
  constexpr double row_height = panel_height + 80;
  const double width = left + 2 * panel_width + gap + 30;
  const double height = top + row_height * static_cast<double>(kinds.size()) + 10;

  std::ostringstream svg;
  svg << format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n",
      width, height, width, height);
  svg << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg << format(
      "<text x=\"%.0f\" y=\"22\" font-size=\"15\" font-weight=\"bold\">xatm-bench: throughput and p99 "
      "latency by clients (%s; log fsync %.3f ms)</text>\n",
      left, xml_escape(run.started_utc).c_str(), run.log_fsync_ms);
  double legend_x = left;
  for (mode m : modes) {
    svg << format("<line x1=\"%.0f\" y1=\"44\" x2=\"%.0f\" y2=\"44\" stroke=\"%s\" stroke-width=\"3\"/>", legend_x,
                  legend_x + 24, mode_color(m));
    svg << format("<text x=\"%.0f\" y=\"48\">%s</text>\n", legend_x + 30, mode_name(m));
    legend_x += 100;
  }

  // x: clients on a log2 scale (1, 4, 16 evenly spaced).
  const double log_min = std::log2(static_cast<double>(std::max(1, clients.front())));
  const double log_max = std::log2(static_cast<double>(std::max(1, clients.back())));
  auto x_of = [&](double panel_left, int c) {
    if (log_max <= log_min) return panel_left + panel_width / 2;
    const double at = (std::log2(static_cast<double>(std::max(1, c))) - log_min) / (log_max - log_min);
    return panel_left + 20 + at * (panel_width - 40);
  };

  for (std::size_t row = 0; row < kinds.size(); ++row) {
    const double panel_top = top + row_height * static_cast<double>(row) + 20;
    for (int panel = 0; panel < 2; ++panel) {
      const bool is_throughput = panel == 0;
      const double panel_left = left + (panel_width + gap) * panel;
      double max_value = 0;
      for (const measurement& c : run.cells) {
        if (c.workload != kinds[row]) continue;
        max_value = std::max(max_value, is_throughput ? c.throughput() : c.percentile_ms(0.99));
      }
      const double step = nice_step(max_value * 1.05);
      const double y_max = std::max(step, std::ceil(max_value * 1.05 / step) * step);
      auto y_of = [&](double value) { return panel_top + panel_height - value / y_max * panel_height; };
      svg << format("<text x=\"%.0f\" y=\"%.0f\" font-size=\"13\" font-weight=\"bold\">%s: %s</text>\n", panel_left,
                    panel_top - 8, workload_name(kinds[row]),
                    is_throughput ? "throughput (committed tx/s)" : "p99 latency (ms)");
      svg << format("<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#888\"/>\n",
                    panel_left, panel_top, panel_width, panel_height);
      for (double tick = 0; tick <= y_max + step / 2; tick += step) {
        const double y = y_of(tick);
        svg << format("<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>", panel_left, y,
                      panel_left + panel_width, y);
        svg << format("<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", panel_left - 6, y + 4, tick);
      }
      for (int c : clients) {
        const double x = x_of(panel_left, c);
        svg << format("<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%d</text>\n", x,
                      panel_top + panel_height + 16, c);
      }
      svg << format("<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">clients</text>\n", panel_left + panel_width / 2,
                    panel_top + panel_height + 34);
      for (mode m : modes) {
        std::string points;
        std::string dots;
        for (int c : clients) {
          const measurement* cell = run.find(kinds[row], m, c);
          if (cell == nullptr) continue;
          const double value = is_throughput ? cell->throughput() : cell->percentile_ms(0.99);
          const double x = x_of(panel_left, c);
          const double y = y_of(value);
          points += format("%.1f,%.1f ", x, y);
          dots += format(
              "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>%s, %d clients: %.2f</title>"
              "</circle>",
              x, y, mode_color(m), mode_name(m), c, value);
        }
        if (points.empty()) continue;
        svg << format("<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", mode_color(m)) << points
            << "\"/>" << dots << "\n";
      }
    }
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace xatm::bench
