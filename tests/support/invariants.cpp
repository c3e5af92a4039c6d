// support/invariants.cpp: the crash tests' bank and invariant checker (see invariants.h).
#include "support/invariants.h"

#include <sqlite3.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>

#include "support/log_file.h"
#include "support/servers.h"
#include "xatm/connection_settings.h"
#include "mysql/mysql.h"
#include "postgresql/postgresql.h"
#include "xatm/xid.h"

namespace xatm::test {
namespace {

// Connections of the checker's own, outside any transaction manager: how everyone sees the data.
std::unique_ptr<resource_manager> observe(bool postgres) {
  const std::string& conninfo = postgres ? servers().pg : servers().mysql;
  auto settings = connection_settings::parse(conninfo);
  if (!settings) throw std::runtime_error("bad test connection string: " + settings.error().describe());
  auto rm = postgres ? postgresql::connect("observer", settings.value()) : mysql::connect("observer", settings.value());
  if (!rm) {
    throw std::runtime_error(std::string("cannot connect to ") + (postgres ? "PostgreSQL" : "MariaDB") + ": " +
                             rm.error().describe());
  }
  return std::move(rm).value();
}

query_result run(resource_manager& rm, const std::string& sql) {
  auto rows = rm.exec(sql);
  if (!rows) throw std::runtime_error(sql + ": " + rows.error().describe());
  return std::move(rows).value();
}

long single_number(resource_manager& rm, const std::string& sql) {
  auto rows = run(rm, sql);
  if (rows.rows.size() != 1 || rows.rows[0].empty() || !rows.rows[0][0]) {
    throw std::runtime_error(sql + ": expected one value");
  }
  return std::stol(*rows.rows[0][0]);
}

std::map<std::string, long> ledger_of(resource_manager& rm, const transfer_bank& bank) {
  std::map<std::string, long> ledger;
  for (const auto& row : run(rm, "SELECT token, amount FROM " + bank.ledger_table()).rows) {
    ledger.emplace(row.at(0).value(), std::stol(row.at(1).value()));
  }
  return ledger;
}

std::vector<xid> prepared_on(resource_manager& rm, const std::string& tm_id) {
  auto found = rm.recover();
  if (!found) throw std::runtime_error("recover on " + std::string(rm.dialect()) + ": " + found.error().describe());
  std::vector<xid> ours;
  for (const xid& branch : found.value().ours) {
    if (is_ours(branch, tm_id)) ours.push_back(branch);
  }
  return ours;
}

// A few examples out of a long list, for messages.
std::string some_of(const std::vector<std::string>& items) {
  std::string text;
  for (std::size_t i = 0; i < items.size() && i < 5; ++i) text += (i ? ", " : "") + items[i];
  if (items.size() > 5) text += ", ... (" + std::to_string(items.size()) + " in all)";
  return text;
}

}  // namespace

void transfer_bank::create() const {
  std::string values;
  for (int id = 1; id <= accounts; ++id) {
    values += (id == 1 ? "(" : ", (") + std::to_string(id) + ", " + std::to_string(initial_balance) + ")";
  }
  auto pg = observe(true);
  run(*pg, "SET lock_timeout = '10s'; DROP TABLE IF EXISTS " + ledger_table() + "; DROP TABLE IF EXISTS " +
               accounts_table() + "; CREATE TABLE " + accounts_table() +
               " (id int PRIMARY KEY, balance bigint NOT NULL); CREATE TABLE " + ledger_table() +
               " (token text PRIMARY KEY, account int NOT NULL REFERENCES " + accounts_table() +
               " DEFERRABLE INITIALLY DEFERRED, amount bigint NOT NULL); INSERT INTO " + accounts_table() + " VALUES " +
               values);
  auto maria = observe(false);
  run(*maria, "SET SESSION lock_wait_timeout = 10");
  run(*maria, "DROP TABLE IF EXISTS " + ledger_table() + ", " + accounts_table());
  run(*maria, "CREATE TABLE " + accounts_table() + " (id int PRIMARY KEY, balance bigint NOT NULL) ENGINE=InnoDB");
  run(*maria, "CREATE TABLE " + ledger_table() +
                  " (token varchar(64) PRIMARY KEY, account int NOT NULL, amount bigint NOT NULL) ENGINE=InnoDB");
  run(*maria, "INSERT INTO " + accounts_table() + " VALUES " + values);
}

void transfer_bank::drop() const noexcept {
  try {
    auto pg = observe(true);
    (void)pg->exec("SET lock_timeout = '5s'; DROP TABLE IF EXISTS " + ledger_table() + "; DROP TABLE IF EXISTS " +
                   accounts_table());  // best effort: a leftover table harms nobody
    auto maria = observe(false);
    (void)maria->exec("SET SESSION lock_wait_timeout = 5");                                 // best effort, as above
    (void)maria->exec("DROP TABLE IF EXISTS " + ledger_table() + ", " + accounts_table());  // best effort
  } catch (const std::exception&) {
    // A server that is down at cleanup leaves the tables behind: the next create() drops them.
  }
}

std::vector<std::string> ack_log::in_flight() const {
  std::vector<std::string> tokens_in_flight;
  for (const auto& [token, state] : tokens) {
    if (state == ack_state::begun) tokens_in_flight.push_back(token);
  }
  return tokens_in_flight;
}

std::size_t ack_log::count(ack_state state) const {
  return static_cast<std::size_t>(
      std::count_if(tokens.begin(), tokens.end(), [state](const auto& entry) { return entry.second == state; }));
}

ack_log read_acks(const std::filesystem::path& path) {
  ack_log acks;
  std::ifstream in(path, std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::size_t start = 0;
  while (start < content.size()) {
    const std::size_t end = content.find('\n', start);
    if (end == std::string::npos) break;  // torn last line: the writer died inside write()
    std::istringstream line(content.substr(start, end - start));
    start = end + 1;
    std::string first;
    std::string second;
    std::string third;
    line >> first >> second >> third;
    if (first == "#") {
      if (second == "ready") acks.ready = true;
      if (second == "maria_connection") acks.maria_connections.push_back(std::stol(third));
      if (second == "pg_connection") acks.pg_connections.push_back(std::stol(third));
      continue;
    }
    const auto* name = std::find_if(std::begin(ack_state_names), std::end(ack_state_names),
                                    [&](const char* known) { return second == known; });
    if (first.empty() || name == std::end(ack_state_names)) {
      throw std::runtime_error("malformed line in " + path.string() + ": " + line.str());
    }
    acks.tokens[first] = static_cast<ack_state>(name - std::begin(ack_state_names));
    if (!third.empty()) acks.gtrids[first] = third;
  }
  return acks;
}

std::string invariant_check::describe() const {
  std::string text;
  for (const auto& violation : violations) text += "  VIOLATION: " + violation + "\n";
  return text;
}

invariant_check check_invariants(const transfer_bank& bank, const std::string& tm_id,
                                 const std::filesystem::path& log_path, const ack_log& acks) {
  invariant_check check;
  auto violation = [&check](std::string text) { check.violations.push_back(std::move(text)); };
  auto pg = observe(true);
  auto maria = observe(false);

  // A token is in PostgreSQL iff it is in MariaDB, with opposite amounts.
  const auto pg_ledger = ledger_of(*pg, bank);
  const auto maria_ledger = ledger_of(*maria, bank);
  check.tokens_present = pg_ledger.size();
  std::vector<std::string> only_pg;
  std::vector<std::string> only_maria;
  std::vector<std::string> mismatched;
  for (const auto& [token, amount] : pg_ledger) {
    auto other = maria_ledger.find(token);
    if (other == maria_ledger.end()) {
      only_pg.push_back(token);
    } else if (other->second != -amount) {
      mismatched.push_back(token);
    }
  }
  for (const auto& [token, amount] : maria_ledger) {
    if (!pg_ledger.contains(token)) only_maria.push_back(token);
  }
  if (!only_pg.empty()) violation("tokens only in PostgreSQL: " + some_of(only_pg));
  if (!only_maria.empty()) violation("tokens only in MariaDB: " + some_of(only_maria));
  if (!mismatched.empty()) violation("tokens whose amounts do not match: " + some_of(mismatched));

  // Acknowledged outcomes.
  std::vector<std::string> lost_commits;
  std::vector<std::string> resurrected;
  std::vector<std::string> heuristics;
  for (const auto& [token, state] : acks.tokens) {
    const bool present = pg_ledger.contains(token) || maria_ledger.contains(token);
    switch (state) {
      case ack_state::committed:
      case ack_state::pending:
        ++check.acknowledged;
        if (!present) lost_commits.push_back(token + " (" + ack_state_name(state) + ")");
        break;
      case ack_state::rolled_back:
      case ack_state::aborted:
        ++check.acknowledged;
        if (present) resurrected.push_back(token + " (" + ack_state_name(state) + ")");
        break;
      case ack_state::heuristic: heuristics.push_back(token); break;
      case ack_state::begun: break;  // in flight at the crash: either outcome, as long as it is the same on both sides
      case ack_state::in_doubt:
      case ack_state::log_failure:
      case ack_state::unknown:
        ++check.acknowledged;  // the outcome is not known to the application: only the iff holds
        break;
    }
  }
  if (!lost_commits.empty()) violation("acknowledged commits missing: " + some_of(lost_commits));
  if (!resurrected.empty()) violation("acknowledged rollbacks present: " + some_of(resurrected));
  if (!heuristics.empty()) violation("heuristic outcomes reported to the application: " + some_of(heuristics));

  // Money is conserved overall and on each side agrees with that side's ledger.
  const long pg_total = single_number(*pg, "SELECT COALESCE(SUM(balance), 0) FROM " + bank.accounts_table());
  const long maria_total = single_number(*maria, "SELECT COALESCE(SUM(balance), 0) FROM " + bank.accounts_table());
  if (pg_total + maria_total != bank.initial_total()) {
    violation("total balance " + std::to_string(pg_total + maria_total) +
              " != " + std::to_string(bank.initial_total()));
  }
  long pg_moved = 0;
  for (const auto& entry : pg_ledger) pg_moved += entry.second;
  long maria_moved = 0;
  for (const auto& entry : maria_ledger) maria_moved += entry.second;
  const long side_initial = static_cast<long>(bank.accounts) * bank.initial_balance;
  if (pg_total != side_initial + pg_moved) violation("PostgreSQL's balances disagree with its ledger");
  if (maria_total != side_initial + maria_moved) violation("MariaDB's balances disagree with its ledger");

  // Nothing of ours left prepared, nothing left pending in the log.
  std::vector<std::string> prepared;
  for (const xid& branch : prepared_on(*pg, tm_id)) prepared.push_back("pg " + branch.to_string());
  for (const xid& branch : prepared_on(*maria, tm_id)) prepared.push_back("maria " + branch.to_string());
  if (!prepared.empty()) violation("prepared branches left: " + some_of(prepared));
  const auto pending = decisions_in_log_file(log_path);
  if (!pending.empty()) violation("decisions left pending in the log: " + some_of(pending));
  return check;
}

std::vector<std::string> prepared_branches_of(const std::string& tm_id) {
  std::vector<std::string> gtrids;
  for (bool postgres : {true, false}) {
    auto rm = observe(postgres);
    for (const xid& branch : prepared_on(*rm, tm_id)) gtrids.push_back(branch.gtrid());
  }
  return gtrids;
}

void roll_back_prepared_of(const std::string& tm_id) noexcept {
  for (bool postgres : {true, false}) {
    try {
      auto rm = observe(postgres);
      for (const xid& branch : prepared_on(*rm, tm_id)) {
        (void)rm->rollback(branch);  // best effort: cleanup after a failure already reported
      }
    } catch (const std::exception&) {
      // The server is down: its prepared branches wait for the next recovery of this tm_id.
    }
  }
}

}  // namespace xatm::test
