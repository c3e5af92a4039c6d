// xatm-recover: resolves the prepared branches a crashed TM left behind, from its decision log.
// A thin main over xatm::recover_offline() (lib/core/recovery.cpp holds the algorithm).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "console_log.h"
#include "xatm/connection_settings.h"
#include "xatm/error.h"
#include "xatm/recovery.h"

namespace {

// Exit codes (also in --help and docs/recovery.md).
constexpr int exit_clean = 0;           // nothing of ours left in doubt
constexpr int exit_unresolved = 1;      // something could not be resolved now
constexpr int exit_usage = 2;           // bad command line, configuration, or a log that cannot be used
constexpr int exit_heuristic = 3;       // an RM did the opposite of the decision
constexpr int exit_busy = 4;            // the log is in use: its TM is running and recovers by itself
constexpr int exit_wrong_database = 5;  // an RM reaches another database than its name was pinned to

constexpr const char* help_text = R"(usage: xatm-recover --log PATH --rm NAME=DIALECT:CONNINFO [--rm ...]
                    [--tcc NAME=URL ...] [--tm-id ID] [--dry-run] [--json] [--verbose]
                    [--terminate [--precommit-timeout SECONDS]] [--repin NAME ...]
                    [--allow-unsafe-durability]
       xatm-recover --install-schema --rm NAME=DIALECT:CONNINFO [--rm ...]

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
  --json            print the report as JSON instead of a table.
  --verbose         log each step to stderr.
  --terminate       also resolve OTHER coordinators' three-phase branches (gtrids ending in .p3)
                    that stay prepared for --precommit-timeout (default 30 s): the marker at the
                    arbiter RM decides (docs/three-phase.md). Works without their logs; with
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

The log pins, for each RM name, the identity of the database the TM reached under it (a row in
that database's xatm_identity table, which replicas and backups carry along). An --rm that reaches
another database is left alone, and no decision with a branch there is forgotten (exit 5).

The tool takes the log's lock: while the TM that owns the log is running it exits with 4 (that
TM recovers by itself); two runs at once cannot both act.

Exit codes:
  0  nothing of this TM is left in doubt (foreign branches may remain: they are not ours)
  1  something is unresolved (an RM unreachable, a branch still attached to a live session, or
     --dry-run found work): run again later, see docs/recovery.md
  2  usage or configuration error, or a damaged log (nothing was done)
  3  heuristic outcome: a branch did the opposite of the logged decision; a human must look
  4  busy: the log is in use by a running TM or another xatm-recover
  5  wrong database: an --rm reaches another database than the one the log pinned for its name
     (a typo in the connection string?); nothing was done on it
)";

std::string json_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buffer[8];
          std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
          out += buffer;
        } else {
          out += c;
        }
    }
  }
  return out;
}

void print_json(const xatm::recovery_report& report, int exit_code) {
  std::cout << "{\n  \"exit_code\": " << exit_code
            << ",\n  \"decisions_pending_before\": " << report.decisions_pending_before
            << ",\n  \"decisions_completed\": " << report.completed.size()
            << ",\n  \"markers_deleted\": " << report.markers_deleted;
  auto list = [](const char* name, const std::vector<std::string>& values) {
    std::cout << ",\n  \"" << name << "\": [";
    for (std::size_t i = 0; i < values.size(); ++i)
      std::cout << (i ? ", " : "") << '"' << json_escape(values[i]) << '"';
    std::cout << "]";
  };
  list("unreachable_rms", report.unreachable_rms);
  list("identity_mismatches", report.identity_mismatches);
  list("repinned", report.repinned);
  std::cout << ",\n  \"branches\": [";
  for (std::size_t i = 0; i < report.items.size(); ++i) {
    const auto& item = report.items[i];
    std::cout << (i ? "," : "") << "\n    {\"rm\": \"" << json_escape(item.rm_name) << "\", \"xid\": \""
              << json_escape(item.xid) << "\", \"gtrid\": \"" << json_escape(item.gtrid) << "\", \"state\": \""
              << json_escape(item.state_found) << "\", \"decision\": \"" << json_escape(item.decision)
              << "\", \"action\": \"" << item.action << "\", \"result\": \"" << xatm::recovery_result_name(item.result)
              << "\", \"detail\": \"" << json_escape(item.detail) << '"';
    if (item.age_seconds) std::cout << ", \"age_seconds\": " << *item.age_seconds;
    std::cout << "}";
  }
  std::cout << "\n  ]\n}\n";
}

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
  xatm::offline_recovery_options options;
  bool json = false;
  bool verbose = false;
  bool install_schema = false;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  auto usage_error = [](const std::string& message) {
    std::cerr << "xatm-recover: " << message << "\n(see xatm-recover --help)\n";
    return exit_usage;
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    auto value = [&](std::string_view option) -> std::optional<std::string> {
      if (i + 1 >= args.size()) return std::nullopt;
      (void)option;
      return std::string(args[++i]);
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << help_text;
      return exit_clean;
    } else if (arg == "--log") {
      auto path = value(arg);
      if (!path) return usage_error("--log needs a path");
      options.log_path = *path;
    } else if (arg == "--rm") {
      auto spec = value(arg);
      auto equals = spec ? spec->find('=') : std::string::npos;
      if (!spec || equals == std::string::npos || equals == 0) return usage_error("--rm needs NAME=DIALECT:CONNINFO");
      options.rms.emplace_back(spec->substr(0, equals), spec->substr(equals + 1));
    } else if (arg == "--tcc") {
      auto spec = value(arg);
      auto equals = spec ? spec->find('=') : std::string::npos;
      if (!spec || equals == std::string::npos || equals == 0) return usage_error("--tcc needs NAME=URL");
      options.tcc.emplace_back(spec->substr(0, equals), spec->substr(equals + 1));
    } else if (arg == "--tm-id") {
      auto id = value(arg);
      if (!id) return usage_error("--tm-id needs a value");
      options.tm_id = *id;
    } else if (arg == "--dry-run") {
      options.dry_run = true;
    } else if (arg == "--json") {
      json = true;
    } else if (arg == "--verbose") {
      verbose = true;
    } else if (arg == "--terminate") {
      options.terminate = true;
    } else if (arg == "--precommit-timeout") {
      auto seconds = value(arg);
      char* end = nullptr;
      double parsed = seconds ? std::strtod(seconds->c_str(), &end) : -1;
      if (!seconds || end == seconds->c_str() || *end != '\0' || parsed < 0) {
        return usage_error("--precommit-timeout needs a number of seconds");
      }
      options.precommit_timeout = std::chrono::milliseconds(static_cast<long long>(parsed * 1000));
    } else if (arg == "--repin") {
      auto name = value(arg);
      if (!name) return usage_error("--repin needs an RM name");
      options.repin.push_back(*name);
    } else if (arg == "--install-schema") {
      install_schema = true;
    } else if (arg == "--allow-unsafe-durability") {
      options.allow_unsafe_durability = true;
    } else {
      // Never echo the argument itself: it may be a connection string with a password.
      return usage_error("unknown argument #" + std::to_string(i + 1));
    }
  }
  if (options.rms.empty()) {
    return usage_error("at least one --rm NAME=DIALECT:CONNINFO is required");
  }
  xatm::tools::install_console_log(verbose ? "debug" : "warning");
  if (install_schema) {
    try {
      for (const auto& name : xatm::install_marker_schema(options.rms)) {
        std::cout << "xatm_identity, xatm_marker and xatm_tcc_barrier ready on " << name << "\n";
      }
      return exit_clean;
    } catch (const xatm::error& e) {
      std::cerr << "xatm-recover: " << e.what() << "\n";
      return exit_usage;
    }
  }
  if (options.log_path.empty() && !options.terminate) return usage_error("--log PATH is required");

  try {
    auto report = xatm::recover_offline(options);
    int code = report.heuristic()                    ? exit_heuristic
               : !report.identity_mismatches.empty() ? exit_wrong_database
               : report.unresolved()                 ? exit_unresolved
                                                     : exit_clean;
    if (json) {
      print_json(report, code);
    } else {
      print_table(report);
      std::cout
          << (code == exit_clean       ? "result: nothing of this TM is left in doubt\n"
              : code == exit_heuristic ? "result: HEURISTIC outcome detected: see docs/recovery.md\n"
              : code == exit_wrong_database
                  ? "result: WRONG DATABASE for an RM: nothing was done on it; check its --rm (docs/recovery.md)\n"
                  : "result: work left unresolved: run again later (docs/recovery.md)\n");
    }
    return code;
  } catch (const xatm::log_in_use_error& e) {
    std::cerr << "xatm-recover: busy: " << e.cause().message
              << "\n(a running TM recovers by itself; run this tool only when it is stopped)\n";
    return exit_busy;
  } catch (const xatm::error& e) {
    std::cerr << "xatm-recover: " << e.what() << "\n";
    return exit_usage;
  }
}
