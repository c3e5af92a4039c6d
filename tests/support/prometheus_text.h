// support/prometheus_text.h: a strict reader of the Prometheus text exposition format 0.0.4, for
// the metrics tests. It checks what a scraper relies on, failing the test at the first breach:
// every line is a HELP, a TYPE or a well-formed sample; a family's HELP and TYPE come before its
// samples; histogram buckets are cumulative (never decreasing) and the +Inf bucket equals _count.
// Answers the samples as "name{labels}" -> value. Header-only; use from the test's thread.
#pragma once

#include <doctest/doctest.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

namespace xatm::test {

inline std::map<std::string, double> parse_prometheus_text(const std::string& text) {
  static const std::regex help(R"re(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$)re");
  static const std::regex type(R"re(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$)re");
  static const std::regex sample(
      R"re(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:\\.|[^"\\])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:\\.|[^"\\])*")*\})? ([-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|Inf)|NaN)$)re");
  static const std::regex le_label(R"re(,?le="([^"]*)")re");
  std::map<std::string, double> samples;
  std::set<std::string> helped;
  std::map<std::string, std::string> types;
  std::map<std::string, double> last_bucket;  // series without `le` -> last cumulative count
  std::map<std::string, double> inf_bucket;
  std::istringstream lines(text);
  std::string line;
  REQUIRE_MESSAGE((!text.empty() && text.back() == '\n'), "the text ends with a line feed");
  while (std::getline(lines, line)) {
    CAPTURE(line);
    std::smatch m;
    if (std::regex_match(line, m, help)) {
      REQUIRE_MESSAGE(helped.insert(m[1]).second, "one HELP per family");
      continue;
    }
    if (std::regex_match(line, m, type)) {
      REQUIRE_MESSAGE(helped.contains(m[1]), "HELP before TYPE");
      REQUIRE_MESSAGE(types.emplace(m[1], m[2]).second, "one TYPE per family");
      continue;
    }
    REQUIRE_MESSAGE(std::regex_match(line, m, sample), "a well-formed sample line");
    std::string name = m[1];
    const std::string labels = m[2];
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string s = suffix;
      if (name.size() > s.size() && name.ends_with(s) && types.contains(name.substr(0, name.size() - s.size())) &&
          types.at(name.substr(0, name.size() - s.size())) == "histogram") {
        family = name.substr(0, name.size() - s.size());
      }
    }
    REQUIRE_MESSAGE(types.contains(family), "TYPE before the samples of " << family);
    const double value = m[3] == "+Inf" || m[3] == "Inf" ? 1e308 : std::stod(m[3]);
    REQUIRE_MESSAGE(samples.emplace(name + labels, value).second, "each series once");
    if (name.ends_with("_bucket")) {
      std::smatch le;
      REQUIRE_MESSAGE(std::regex_search(labels, le, le_label), "a bucket has le");
      const std::string series = std::regex_replace(labels, le_label, "");
      if (last_bucket.contains(series)) REQUIRE_MESSAGE(value >= last_bucket[series], "buckets are cumulative");
      last_bucket[series] = value;
      if (le[1] == "+Inf") inf_bucket[family + series] = value;
    } else if (name.ends_with("_count") && family != name) {
      REQUIRE_MESSAGE(inf_bucket.contains(family + labels), "+Inf bucket before _count");
      REQUIRE_MESSAGE(inf_bucket[family + labels] == value, "+Inf bucket equals _count");
    }
  }
  return samples;
}

}  // namespace xatm::test
