// The Prometheus text exposition format 0.0.4 of xatm/metrics.h, by hand: the format is small and
// stable (a HELP line, a TYPE line and `name{label="value"} number` samples per family), and a
// client library (prometheus-cpp) would become a dependency of every service linking libxatm.
#include "xatm/metrics.h"

#include <array>
#include <charconv>
#include <string_view>

#include "xatm/error.h"

namespace xatm {

namespace {

bool valid_label_name(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  constexpr std::array<std::string_view, 5> reserved{"outcome", "cause", "phase", "le", "action"};
  for (std::string_view taken : reserved) {
    if (name == taken) return false;
  }
  return true;
}

// A label value: backslash, double quote and line feed escaped, as the format asks.
void append_escaped(std::string& out, std::string_view value) {
  for (const char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

void append_number(std::string& out, double value) {
  std::array<char, 64> buffer{};
  auto [end, ignored] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  (void)ignored;  // 64 characters hold any double's shortest form
  out.append(buffer.data(), end);
}

void append_number(std::string& out, std::uint64_t value) { out += std::to_string(value); }

class writer {
 public:
  explicit writer(const metric_labels& labels) {
    for (const auto& [name, value] : labels) {
      if (!valid_label_name(name)) {
        throw invalid_argument_error(make_failure(
            xa_code::invalid, "metric label name '" + name +
                                  "' is not allowed: it must match [a-zA-Z_][a-zA-Z0-9_]* and not be one of outcome, "
                                  "cause, phase, le, action"));
      }
      common_ += (common_.empty() ? "" : ",") + name + "=\"";
      append_escaped(common_, value);
      common_ += '"';
    }
  }

  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;  // constant text here: no backslash or line feed to escape
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  // One sample: `name{common,own} value`. `own` is preformatted `a="b",c="d"` (or empty).
  template <class Number>
  void sample(std::string_view name, std::string_view own, Number value) {
    out_ += name;
    if (!common_.empty() || !own.empty()) {
      out_ += '{';
      out_ += common_;
      if (!common_.empty() && !own.empty()) out_ += ',';
      out_ += own;
      out_ += '}';
    }
    out_ += ' ';
    append_number(out_, value);
    out_ += '\n';
  }

  // A family of one unlabelled sample.
  template <class Number>
  void single(std::string_view name, std::string_view type, std::string_view help, Number value) {
    family(name, type, help);
    sample(name, "", value);
  }

  std::string take() { return std::move(out_); }

 private:
  std::string common_;
  std::string out_;
};

std::string le_label(std::string_view phase, double bound, bool infinite) {
  std::string own = "phase=\"";
  own += phase;
  own += "\",le=\"";
  if (infinite) {
    own += "+Inf";
  } else {
    append_number(own, bound);
  }
  own += '"';
  return own;
}

}  // namespace

std::string render_prometheus(const tm_statistics& stats, const tm_health& health, const metric_labels& labels) {
  writer out(labels);

  out.family("xatm_transactions_total", "counter",
             "Global transactions ended, by outcome and cause (docs/metrics.md).");
  for (std::size_t i = 0; i < outcome_kinds.size(); ++i) {
    std::string own = "outcome=\"";
    own += transaction_outcome_name(outcome_kinds[i].outcome);
    own += "\",cause=\"";
    own += outcome_cause_name(outcome_kinds[i].cause);
    own += '"';
    out.sample("xatm_transactions_total", own, stats.transactions[i]);
  }

  out.single("xatm_in_flight_transactions", "gauge", "Global transactions begun and not yet ended.", stats.in_flight);
  out.single("xatm_pending_decisions", "gauge",
             "Commit decisions in the decision log whose branches are not all known complete.",
             stats.pending_decisions);
  out.single("xatm_decisions_logged_total", "counter", "Commit decisions made durable in the decision log.",
             stats.decisions_logged);
  out.single("xatm_log_batches_total", "counter", "Durable writes (fsyncs) of the decision log.", stats.log_batches);
  out.single("xatm_log_usable", "gauge",
             "1 while the decision log takes decisions; 0 once a write failed and commits are refused until restart.",
             std::uint64_t{health.log_usable ? 1U : 0U});

  const recovery_statistics& recovery = stats.recovery;
  out.single("xatm_recovery_runs_total", "counter", "Recovery runs of this transaction manager.", recovery.runs);
  out.single("xatm_recovery_failed_runs_total", "counter", "Recovery runs that failed as a whole.",
             recovery.failed_runs);
  out.family("xatm_recovery_branches_total", "counter",
             "Branches recovery resolved or left, by action (TCC branches: confirmed, cancelled).");
  const std::array<std::pair<const char*, std::uint64_t>, 6> actions{{
      {"committed", recovery.committed},
      {"rolled_back", recovery.rolled_back},
      {"confirmed", recovery.tcc_confirmed},
      {"cancelled", recovery.tcc_cancelled},
      {"unresolved", recovery.unresolved},
      {"heuristic", recovery.heuristic},
  }};
  for (const auto& [action, value] : actions) {
    out.sample("xatm_recovery_branches_total", std::string("action=\"") + action + "\"", value);
  }
  out.single("xatm_recovery_decisions_completed_total", "counter",
             "Decisions recovery forgot because every branch was done.", recovery.decisions_completed);
  out.single("xatm_recovery_outstanding", "gauge",
             "What the last recovery run left: unresolved branches, unreachable or mismatched RMs, heuristics.",
             recovery.last_run_outstanding);
  out.single("xatm_recovery_last_run_timestamp_seconds", "gauge",
             "When the last recovery run ended, in seconds since the Unix epoch (0: none yet).",
             static_cast<double>(recovery.last_run_unix_ms) / 1000.0);

  out.family("xatm_phase_duration_seconds", "histogram",
             "Latency of commit phases that succeeded (prepare, decision, commit) and of whole transactions.");
  for (std::size_t p = 0; p < commit_phase_count; ++p) {
    const latency_histogram& histogram = stats.phases[p];
    const char* phase = commit_phase_name(static_cast<commit_phase>(p));
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < latency_histogram::bounds.size(); ++b) {
      cumulative += histogram.buckets[b];
      out.sample("xatm_phase_duration_seconds_bucket", le_label(phase, latency_histogram::bounds[b], false),
                 cumulative);
    }
    out.sample("xatm_phase_duration_seconds_bucket", le_label(phase, 0, true), histogram.count);
    const std::string own = std::string("phase=\"") + phase + "\"";
    out.sample("xatm_phase_duration_seconds_sum", own, histogram.sum_seconds);
    out.sample("xatm_phase_duration_seconds_count", own, histogram.count);
  }
  return out.take();
}

}  // namespace xatm
