// xatm-recover: resolves the prepared branches a crashed TM left behind, from its decision log.
// A thin main over xatm::recover_offline() (lib/core/recovery.cpp holds the algorithm). The
// command line is parsed by CLI11 and --json is written by nlohmann-json (docs/recovery.md has
// its schema); no argument a user gave is ever echoed, since a connection string may hold a password.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "console_log.h"
#include "xatm/error.h"
#include "xatm/recovery.h"
#include "xatm/version.h"

namespace {

// Exit codes (also in --help and docs/recovery.md).
constexpr int exit_clean = 0;           // nothing of ours left in doubt
constexpr int exit_unresolved = 1;      // something could not be resolved now
constexpr int exit_usage = 2;           // bad command line, configuration, or a log that cannot be used
constexpr int exit_heuristic = 3;       // an RM did the opposite of the decision
constexpr int exit_busy = 4;            // the log is in use: its TM is running and recovers by itself
constexpr int exit_wrong_database = 5;  // an RM reaches another database than its name was pinned to

// The version of --json's layout (docs/recovery.md): raised when a field changes meaning or goes.
constexpr int json_schema_version = 1;
// --precommit-timeout's ceiling: a day. More is a typo (milliseconds?), not a plan.
constexpr double max_precommit_timeout_seconds = 86400;

constexpr const char* help_text = R"(usage: xatm-recover --log PATH --rm NAME=DIALECT:CONNINFO [--rm ...]
                    [--tcc NAME=URL ...] [--tm-id ID] [--dry-run] [--json] [--verbose]
                    [--terminate [--precommit-timeout SECONDS]] [--repin NAME ...]
                    [--allow-unsafe-durability]
       xatm-recover --install-schema --rm NAME=DIALECT:CONNINFO [--rm ...]
       xatm-recover --version | --help

Resolves the prepared XA branches that a crashed xatm transaction manager left on its databases,
using the TM's decision log: a branch whose transaction the log says COMMIT is committed, a branch
of the TM with no record is rolled back (presumed abort). Prepared transactions of anybody else
(another formatID or another tm_id) are listed and never touched.

  --log PATH        the TM's SQLite decision log (required). It must exist: a missing log is an
                    error, never "nothing was decided".
  --rm NAME=SPEC    a resource manager, by the name the TM registered it under (required, one per
                    RM). SPEC is the dialect, a colon, and a libpq-style connection string:
                      --rm orders=postgresql:'host=/run/postgresql dbname=shop user=xatm'
                      --rm stock=mariadb:'unix_socket=/run/mysqld/mysqld.sock user=xatm dbname=shop'
                    Dialects: postgresql, mysql, mariadb. Passwords are never printed.
  --tcc NAME=URL    a TCC participant over HTTP, by the name the TM registered it under, and its
                    base URL (POST URL/confirm, URL/cancel): the log's TCC branches are confirmed
                    (their transaction has a COMMIT record) or cancelled (it has none). A branch
                    whose participant is not given stays unresolved, and so does its decision.
  --tm-id ID        the TM's tm_id (default: the one stored in the log).
  --dry-run         report what would be done; change nothing.
  --json            print the report as JSON instead of a table (schema: recovery.md); an
                    error is then a JSON object too: {"schema_version":1,"error":{"code",...}}.
  --verbose         log each step to stderr.
  --terminate       also resolve OTHER coordinators' three-phase branches (gtrids ending in .p3)
                    that stay prepared for --precommit-timeout (default 30 s, 0 to 86400, a
                    decimal number of seconds: 0.5 is half a second): the marker at the
                    arbiter RM decides (three-phase.md). Works without their logs; with
                    --terminate, --log may be omitted (or name a file that does not exist): the
                    tool then decides nothing of its own, it only terminates by the markers.
  --repin NAME      the RM NAME was moved on purpose (to a database that is not a replica or a
                    backup of the old one): record the identity of the database its --rm reaches
                    now in the log, then recover. Repeat for several RMs. Not with --dry-run.
                    For a --tcc NAME: the participant's database (GET URL/identity), refused
                    while the log holds branches of it.
  --install-schema  create xatm's tables (xatm_identity, xatm_marker for three-phase and
                    commit-marker modes, xatm_tcc_barrier for TCC participants) on every --rm,
                    then exit.
  --allow-unsafe-durability
                    act on RMs whose servers can lose a committed transaction on a host crash.
                    Without it such an RM is refused (reported UNREACHABLE with the setting, and
                    nothing is done there; exit 1): PostgreSQL with fsync = off or
                    max_prepared_transactions = 0, MariaDB/MySQL with
                    innodb_flush_log_at_trx_commit other than 1 (MariaDB: 1 or 3), or log_bin ON
                    with sync_binlog other than 1. For throwaway test servers only.
  --version         print "xatm-recover <version>" and exit 0.
  --help, -h        print this text and exit 0.

The log pins, for each RM name, the identity of the database the TM reached under it (a row in
that database's xatm_identity table, which replicas and backups carry along). An --rm that reaches
another database is left alone, and no decision with a branch there is forgotten (exit 5).

The tool takes the log's lock: while the TM that owns the log is running it exits with 4 (that
TM recovers by itself); two runs at once cannot both act.

Exit codes:
  0  nothing of this TM is left in doubt (foreign branches may remain: they are not ours)
  1  something is unresolved (an RM unreachable, a branch still attached to a live session, or
     --dry-run found work): run again later, see recovery.md
  2  usage or configuration error, or a damaged log (nothing was done)
  3  heuristic outcome: a branch did the opposite of the logged decision; a human must look
  4  busy: the log is in use by a running TM or another xatm-recover
  5  wrong database: an --rm reaches another database than the one the log pinned for its name
     (a typo in the connection string?); nothing was done on it

Documents (recovery.md is the runbook, three-phase.md, commit-marker.md, connections.md): in
xatm's documentation directory, /usr/share/doc/xatm from the Debian package, share/doc/xatm under
the prefix of `cmake --install`, docs/ in the source tree.
)";


// ---- --json ------------------------------------------------------------------------------------

using json = nlohmann::ordered_json;

// Splits a report line "name: why" into the RM it names (one of `names`, the longest that fits)
// and the rest; an identity problem ("RM 'name' reaches ...") names it in quotes.
std::pair<std::string, std::string> split_named(const std::string& line, const std::vector<std::string>& names) {
  std::string best;
  for (const auto& name : names) {
    if (name.size() > best.size() && line.rfind(name + ": ", 0) == 0) best = name;
  }
  if (!best.empty()) return {best, line.substr(best.size() + 2)};
  for (const auto& name : names) {
    if (name.size() > best.size() && line.find("'" + name + "'") != std::string::npos) best = name;
  }
  return {best, line};
}

// What kind of line of the report an item is: a prepared XA branch, a TCC branch of the log, or
// a decision of the log (no branch of its own: forgotten, or kept).
const char* item_kind(const xatm::recovery_item& item) {
  if (item.xid == "-") return "decision";
  if (item.xid.rfind("tcc ", 0) == 0) return "tcc_branch";
  return "xa_branch";
}

// The outcome of the whole run, as the exit code says it.
const char* outcome_code(int exit_code) {
  switch (exit_code) {
    case exit_clean: return "clean";
    case exit_unresolved: return "unresolved";
    case exit_heuristic: return "heuristic";
    case exit_wrong_database: return "wrong_database";
    default: return "error";
  }
}

json item_json(const xatm::recovery_item& item) {
  json out;
  out["kind"] = item_kind(item);
  out["rm"] = item.rm_name;
  out["xid"] = item.xid;  // as the table shows it (xid::to_string(), "tcc <n>", or "-")
  if (item.branch) {
    out["format_id"] = item.branch->format_id();
    out["gtrid"] = item.branch->gtrid();
    out["bqual"] = item.branch->bqual();
  } else {
    out["format_id"] = nullptr;
    out["gtrid"] = item.gtrid.empty() ? json(nullptr) : json(item.gtrid);
    out["bqual"] = nullptr;
  }
  out["state"] = item.state_found;
  out["decision"] = xatm::recovery_decision_code(item.decided);
  out["action"] = item.action;
  out["result"] = xatm::recovery_result_code(item.result);
  out["age_seconds"] = item.age_seconds ? json(*item.age_seconds) : json(nullptr);
  out["message"] = item.detail;
  return out;
}

json named_list(const std::vector<std::string>& lines, const std::vector<std::string>& names) {
  json list = json::array();
  for (const auto& line : lines) {
    auto [rm, message] = split_named(line, names);
    list.push_back(json{{"rm", rm.empty() ? json(nullptr) : json(rm)}, {"message", message}});
  }
  return list;
}

// The report as one JSON object. Pretty-printed by hand at the top level so that each branch is
// one line (a grep or a line-oriented reader still finds a branch by its gtrid); every value
// is serialized by nlohmann-json.
void print_json(const json& document) {
  std::cout << "{\n";
  bool first = true;
  for (const auto& [key, value] : document.items()) {
    std::cout << (first ? "" : ",\n") << "  " << json(key).dump() << ": ";
    first = false;
    if (value.is_array() && !value.empty()) {
      std::cout << "[\n";
      for (std::size_t i = 0; i < value.size(); ++i) {
        std::cout << "    " << value[i].dump() << (i + 1 < value.size() ? ",\n" : "\n");
      }
      std::cout << "  ]";
    } else {
      std::cout << value.dump();
    }
  }
  std::cout << "\n}\n";
}

json report_json(const xatm::recovery_report& report, const xatm::offline_recovery_options& options, int exit_code) {
  std::vector<std::string> names;
  for (const auto& rm : options.rms) names.push_back(rm.first);
  for (const auto& participant : options.tcc) names.push_back(participant.first);
  json document;
  document["schema_version"] = json_schema_version;
  document["tool"] = "xatm-recover";
  document["version"] = xatm::version_string();
  document["log"] = options.log_path.empty() ? json(nullptr) : json(options.log_path);
  document["dry_run"] = options.dry_run;
  document["outcome"] = json{{"exit_code", exit_code},
                             {"status", outcome_code(exit_code)},
                             {"decisions_pending_before", report.decisions_pending_before},
                             {"decisions_completed", report.completed.size()},
                             {"markers_deleted", report.markers_deleted}};
  document["unreachable_rms"] = named_list(report.unreachable_rms, names);
  document["wrong_databases"] = named_list(report.identity_mismatches, names);
  document["repinned"] = named_list(report.repinned, names);
  json items = json::array();
  for (const auto& item : report.items) items.push_back(item_json(item));
  document["branches"] = std::move(items);
  // Last: the first line that names a gtrid is its branch's.
  document["completed"] = report.completed;
  return document;
}

// An error, as --json prints it: {"schema_version":1,"error":{"code":...,"message":...}}.
void print_json_error(const std::string& code, const std::string& message, int exit_code) {
  json document;
  document["schema_version"] = json_schema_version;
  document["tool"] = "xatm-recover";
  document["version"] = xatm::version_string();
  document["error"] = json{{"code", code}, {"message", message}, {"exit_code", exit_code}};
  std::cout << document.dump(2) << "\n";
}

// ---- the table -----------------------------------------------------------------------------------

void print_table(const xatm::recovery_report& report) {
  std::vector<std::vector<std::string>> rows{{"XID", "RM", "STATE FOUND", "DECISION", "ACTION", "RESULT"}};
  for (const auto& item : report.items) {
    std::string result = xatm::recovery_result_name(item.result);
    if (item.age_seconds) result += " (prepared " + std::to_string(*item.age_seconds) + " s ago)";
    if (!item.detail.empty()) result += ": " + item.detail;
    // A decision's own line (no branch left, or forgotten) names its gtrid.
    const std::string what = item.xid == "-" && !item.gtrid.empty() ? "decision " + item.gtrid : item.xid;
    rows.push_back({what, item.rm_name, item.state_found, item.decision, item.action, result});
  }
  std::vector<std::size_t> widths(6, 0);
  for (const auto& row : rows) {
    for (std::size_t c = 0; c + 1 < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < row.size(); ++c) {
      std::cout << row[c];
      if (c + 1 < row.size()) std::cout << std::string(widths[c] - row[c].size() + 2, ' ');
    }
    std::cout << "\n";
  }
  if (report.items.empty()) std::cout << "(no prepared branches found)\n";
  for (const auto& rm : report.repinned) std::cout << "RE-PINNED " << rm << "\n";
  for (const auto& rm : report.unreachable_rms) std::cout << "UNREACHABLE RM " << rm << "\n";
  for (const auto& problem : report.identity_mismatches) std::cout << "WRONG DATABASE " << problem << "\n";
  if (report.markers_deleted > 0) {
    std::cout << "three-phase markers of finished transactions deleted: " << report.markers_deleted << "\n";
  }
  std::cout << "decisions pending before: " << report.decisions_pending_before
            << ", completed now: " << report.completed.size() << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  // Errors follow --json as soon as it is on the command line, even if parsing fails later.
  const bool json_errors = std::any_of(argv + 1, argv + argc, [](const char* arg) { return std::string_view(arg) == "--json"; });
  auto fail = [&](const char* code, const std::string& message, int exit_code) {
    if (json_errors) {
      print_json_error(code, message, exit_code);
    } else {
      std::cerr << "xatm-recover: " << message << (exit_code == exit_usage && std::string_view(code) == "usage" ? "\n(see xatm-recover --help)" : "") << "\n";
    }
    return exit_code;
  };

  xatm::offline_recovery_options options;
  bool json_output = false;
  bool verbose = false;
  bool install_schema = false;
  std::vector<std::string> rm_specs;
  std::vector<std::string> tcc_specs;
  std::string precommit_text;

  CLI::App app{"xatm-recover", "xatm-recover"};
  app.set_help_flag();  // the help text is ours (help_text): CLI11's would not say what it means
  app.allow_extras(false);
  bool help = false;
  bool version = false;
  app.add_flag("-h,--help", help);
  app.add_flag("--version", version);
  app.add_option("--log", options.log_path)->expected(1);
  app.add_option("--rm", rm_specs)->expected(1)->allow_extra_args(false)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--tcc", tcc_specs)->expected(1)->allow_extra_args(false)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--tm-id", options.tm_id)->expected(1);
  app.add_flag("--dry-run", options.dry_run);
  app.add_flag("--json", json_output);
  app.add_flag("--verbose", verbose);
  auto* terminate_option = app.add_flag("--terminate", options.terminate);
  // Read as text and converted below: CLI11's conversion would take hexadecimal and blanks, and
  // its failure would not tell this option from a flag given a value.
  auto* precommit_option = app.add_option("--precommit-timeout", precommit_text)->expected(1);
  precommit_option->needs(terminate_option);
  app.add_option("--repin", options.repin)->expected(1)->allow_extra_args(false)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_flag("--install-schema", install_schema);
  app.add_flag("--allow-unsafe-durability", options.allow_unsafe_durability);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ExtrasError&) {
    // Never echo the arguments themselves: one may be a connection string with a password.
    return fail("usage", "an argument was not understood (not shown: it may hold a password)", exit_usage);
  } catch (const CLI::ConversionError&) {
    // Only the flags convert (--dry-run=VALUE): the value is not quoted, it may be anything.
    return fail("usage",
                "a flag takes no value (--dry-run, --json, --verbose, --terminate, --install-schema, "
                "--allow-unsafe-durability, --version, --help)",
                exit_usage);
  } catch (const CLI::RequiresError&) {
    return fail("usage", "--precommit-timeout works only with --terminate (it is how long --terminate waits)",
                exit_usage);
  } catch (const CLI::ParseError& e) {
    // Missing values and unknown options: CLI11 names the option, never a value.
    return fail("usage", e.what(), exit_usage);
  }
  if (help) {
    std::cout << help_text;
    return exit_clean;
  }
  if (version) {
    std::cout << "xatm-recover " << XATM_VERSION_STRING << "\n";
    return exit_clean;
  }
  double precommit_seconds = 30;
  if (precommit_option->count() > 0) {
    // A decimal number, the whole text: "0x10", " 5" and "" are mistakes, not 16, 5 and 30.
    const char* begin = precommit_text.data();
    const char* end = begin + precommit_text.size();
    auto [stop, error] = std::from_chars(begin, end, precommit_seconds, std::chars_format::general);
    if (precommit_text.empty() || error != std::errc{} || stop != end) {
      return fail("usage", "--precommit-timeout needs a number of seconds", exit_usage);
    }
  }
  if (!std::isfinite(precommit_seconds) || precommit_seconds < 0 || precommit_seconds > max_precommit_timeout_seconds) {
    return fail("usage", "--precommit-timeout must be a number of seconds from 0 to 86400", exit_usage);
  }
  options.precommit_timeout = std::chrono::milliseconds(std::llround(precommit_seconds * 1000));
  auto split = [](const std::string& spec) -> std::optional<std::pair<std::string, std::string>> {
    auto equals = spec.find('=');
    if (equals == std::string::npos || equals == 0) return std::nullopt;
    return std::pair{spec.substr(0, equals), spec.substr(equals + 1)};
  };
  for (const auto& spec : rm_specs) {
    auto named = split(spec);
    if (!named) return fail("usage", "--rm needs NAME=DIALECT:CONNINFO", exit_usage);
    options.rms.push_back(std::move(*named));
  }
  for (const auto& spec : tcc_specs) {
    auto named = split(spec);
    if (!named) return fail("usage", "--tcc needs NAME=URL", exit_usage);
    options.tcc.push_back(std::move(*named));
  }
  if (options.rms.empty()) {
    return fail("usage", "at least one --rm NAME=DIALECT:CONNINFO is required", exit_usage);
  }
  xatm::tools::install_console_log(verbose ? "debug" : "warning");
  if (install_schema) {
    try {
      auto done = xatm::install_marker_schema(options.rms);
      if (json_output) {
        json document;
        document["schema_version"] = json_schema_version;
        document["tool"] = "xatm-recover";
        document["version"] = xatm::version_string();
        document["schema_installed"] = done;
        std::cout << document.dump(2) << "\n";
      } else {
        for (const auto& name : done) {
          std::cout << "xatm_identity, xatm_marker and xatm_tcc_barrier ready on " << name << "\n";
        }
      }
      return exit_clean;
    } catch (const xatm::configuration_error& e) {
      return fail("configuration", e.what(), exit_usage);
    } catch (const xatm::error& e) {
      return fail("rm", e.what(), exit_usage);
    }
  }
  if (options.log_path.empty() && !options.terminate) return fail("usage", "--log PATH is required", exit_usage);

  try {
    auto report = xatm::recover_offline(options);
    int code = report.heuristic()                    ? exit_heuristic
               : !report.identity_mismatches.empty() ? exit_wrong_database
               : report.unresolved()                 ? exit_unresolved
                                                     : exit_clean;
    if (json_output) {
      print_json(report_json(report, options, code));
    } else {
      print_table(report);
      std::cout
          << (code == exit_clean       ? "result: nothing of this TM is left in doubt\n"
              : code == exit_heuristic ? "result: HEURISTIC outcome detected: see recovery.md in xatm's documents\n"
              : code == exit_wrong_database
                  ? "result: WRONG DATABASE for an RM: nothing was done on it; check its --rm (recovery.md in xatm's documents)\n"
                  : "result: work left unresolved: run again later (recovery.md in xatm's documents)\n");
    }
    return code;
  } catch (const xatm::log_in_use_error& e) {
    const std::string message = "busy: " + e.cause().message;
    if (json_errors) return fail("busy", message, exit_busy);
    std::cerr << "xatm-recover: " << message
              << "\n(a running TM recovers by itself; run this tool only when it is stopped)\n";
    return exit_busy;
  } catch (const xatm::log_failure_error& e) {
    return fail("log", e.what(), exit_usage);
  } catch (const xatm::configuration_error& e) {
    return fail("configuration", e.what(), exit_usage);
  } catch (const xatm::error& e) {
    return fail("error", e.what(), exit_usage);
  }
}
