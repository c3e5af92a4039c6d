// The marker table's SQL; what differs between dialects comes from the connection's backend
// (core/backend.h). gtrids and RM names are validated ([A-Za-z0-9_.-]) before they get here, so
// quoting them as SQL string literals is safe; quoted() re-checks it anyway.
#include "core/markers.h"

#include <algorithm>
#include <charconv>

#include "core/backend.h"

namespace xatm::detail {
namespace {

result<std::string> quoted(std::string_view text) {
  bool safe = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.' || c == ',' || c == '@' || c == '=';
  });
  if (!safe) return make_failure(xa_code::invalid, "marker value is not a validated gtrid or RM name list");
  std::string literal;
  literal.reserve(text.size() + 2);
  literal.append(1, '\'').append(text).append(1, '\'');
  return literal;
}

result<std::optional<marker_state>> state_of(const query_result& rows) {
  if (rows.rows.empty()) return std::optional<marker_state>();
  const auto& value = rows.rows.front().front();
  if (value == "P") return std::optional<marker_state>(marker_state::precommitted);
  if (value == "A") return std::optional<marker_state>(marker_state::aborted);
  return make_failure(xa_code::rm_error, "xatm_marker holds an unknown state");
}

}  // namespace

result<void> prepare_control_connection(resource_manager& control) {
  const backend* sql = backend_of(control);
  if (sql == nullptr) return {};  // scripted test RMs keep no tables
  auto done = control.exec(sql->control_session_statement());
  if (!done) return std::move(done).error();
  return {};
}

// Creates a table of xatm's unless it is there. Look before creating: a DBA who created it may
// have granted xatm only the DML it needs, and CREATE TABLE IF NOT EXISTS needs the right to
// create even when the table exists (PostgreSQL: "permission denied for schema"). A failed probe
// is harmless on an autocommit control connection.
namespace {
result<void> install_table(resource_manager& control, std::string_view probe, const std::string& ddl) {
  if (control.exec(probe).ok()) return {};
  auto done = control.exec(ddl);
  if (!done) return std::move(done).error();
  return {};
}
}  // namespace

result<void> install_marker_table(resource_manager& control) {
  const backend* sql = backend_of(control);
  if (sql == nullptr) return {};
  return install_table(control, "SELECT state FROM xatm_marker WHERE 1 = 0", sql->marker_table_ddl());
}

result<void> install_barrier_table(resource_manager& control) {
  const backend* sql = backend_of(control);
  if (sql == nullptr) return {};
  return install_table(control, "SELECT origin FROM xatm_tcc_barrier WHERE 1 = 0", sql->barrier_table_ddl());
}

result<marker_state> insert_marker(resource_manager& control, std::string_view gtrid, marker_state state,
                                   std::string_view branches) {
  const backend* sql = backend_of(control);
  if (sql == nullptr) return make_failure(xa_code::rm_error, "a test double keeps no marker table", control.name());
  auto key = quoted(gtrid);
  auto list = quoted(branches);
  if (!key) return std::move(key).error();
  if (!list) return std::move(list).error();
  std::string row = "(" + key.value() + ", '" + static_cast<char>(state) + "', " + list.value() + ")";
  // Insert-if-absent: whichever of P and A reaches the primary key first wins, the other
  // insert does nothing, and both read the winner back.
  std::string insert = sql->insert_marker_if_absent(row);
  if (auto inserted = control.exec(insert); !inserted) return std::move(inserted).error();
  auto winner = read_marker(control, gtrid);
  if (!winner) return std::move(winner).error();
  if (!winner.value()) return make_failure(xa_code::rm_error, "xatm_marker row vanished right after its insert");
  return *winner.value();
}

result<std::optional<marker_state>> read_marker(resource_manager& control, std::string_view gtrid) {
  auto key = quoted(gtrid);
  if (!key) return std::move(key).error();
  auto rows = control.exec("SELECT state FROM xatm_marker WHERE gtrid = " + key.value());
  if (!rows) return std::move(rows).error();
  return state_of(rows.value());
}

result<std::vector<marker_row>> list_markers(resource_manager& control) {
  // Scripted test RMs keep no tables.
  const backend* sql = backend_of(control);
  if (sql == nullptr) return std::vector<marker_row>();
  auto rows = control.exec(sql->list_markers_query());
  if (!rows) {
    if (sql->is_missing_table(rows.error())) {
      return std::vector<marker_row>();  // no marker table: never in three-phase use here
    }
    return std::move(rows).error();
  }
  std::vector<marker_row> markers;
  for (const auto& row : rows.value().rows) {
    if (row.size() < 4 || !row[0] || !row[1] || !row[2]) continue;
    marker_row marker;
    marker.gtrid = *row[0];
    if (*row[1] == "P") {
      marker.state = marker_state::precommitted;
    } else if (*row[1] == "A") {
      marker.state = marker_state::aborted;
    } else {
      continue;  // the CHECK constraint allows nothing else; never act on what is not understood
    }
    std::string_view branches = *row[2];
    // MariaDB's INSERT IGNORE cuts an over-long list at the column's size: never trust such a row.
    marker.truncated = branches.size() >= 1000;
    for (std::size_t start = 0; start < branches.size();) {
      std::size_t end = std::min(branches.find(',', start), branches.size());
      if (end > start) marker.branch_rms.emplace_back(branches.substr(start, end - start));
      start = end + 1;
    }
    std::int64_t age = 0;
    if (row[3]) std::from_chars(row[3]->data(), row[3]->data() + row[3]->size(), age);
    marker.age_seconds = age;
    markers.push_back(std::move(marker));
  }
  return markers;
}

result<void> delete_markers(resource_manager& control, const std::vector<std::string>& gtrids) {
  const backend* sql = backend_of(control);
  if (sql == nullptr || gtrids.empty()) return {};
  std::string list;
  for (const auto& gtrid : gtrids) {
    auto key = quoted(gtrid);
    if (!key) return std::move(key).error();
    list += (list.empty() ? "" : ", ") + key.value();
  }
  auto done = control.exec(sql->delete_markers(list));
  if (!done) return std::move(done).error();
  return {};
}

result<decision_tables> find_decision_tables(resource_manager& control) {
  const backend* sql = backend_of(control);
  if (sql == nullptr) return make_failure(xa_code::rm_error, "a test double keeps no marker table", control.name());
  auto rows = control.exec(sql->decision_tables_query());
  if (!rows) return std::move(rows).error();
  const auto& found = rows.value().rows;
  if (found.size() != 1 || found.front().size() != 3 || !found.front()[0] || !found.front()[1]) {
    return make_failure(xa_code::rm_error,
                        "xatm_marker or xatm_identity cannot be found (xatm-recover --install-schema)", control.name());
  }
  if (found.front()[2] != "true") {
    return make_failure(xa_code::rm_error,
                        "xatm_marker is not fit to decide: it must be the table next to xatm_identity that the "
                        "session finds first, with gtrid alone as its immediate primary key, in a transactional "
                        "engine (docs/three-phase.md, \"The marker table\")",
                        control.name());
  }
  return decision_tables{*found.front()[0], *found.front()[1]};
}

result<std::string> decision_insert_statement(const resource_manager& decision, const decision_tables& tables,
                                              std::string_view gtrid, std::string_view identity,
                                              std::string_view branches) {
  const backend* sql = backend_of(decision);
  if (sql == nullptr) return make_failure(xa_code::rm_error, "a test double keeps no marker table", decision.name());
  auto key = quoted(gtrid);
  auto id = quoted(identity);
  auto list = quoted(branches);
  if (!key) return std::move(key).error();
  if (!id) return std::move(id).error();
  if (!list) return std::move(list).error();
  return sql->decision_insert(tables.marker, tables.identity, key.value(), id.value(), list.value());
}

result<void> delete_marker(resource_manager& control, std::string_view gtrid) {
  auto key = quoted(gtrid);
  if (!key) return std::move(key).error();
  auto done = control.exec("DELETE FROM xatm_marker WHERE gtrid = " + key.value());
  if (!done) return std::move(done).error();
  return {};
}

}  // namespace xatm::detail
