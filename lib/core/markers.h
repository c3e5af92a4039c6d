// Internal: the three-phase mode's marker table (docs/design.md section 7), one per RM:
//
//   xatm_marker(gtrid PRIMARY KEY, state 'P' | 'A', branches, created)
//
// `P` (pre-committed) at the arbiter RM is the commit point of a three-phase transaction; `A`
// (aborted) is what a terminator writes when it finds no row. The primary key makes exactly one
// of them win. Every statement runs in autocommit on an idle control connection, never on a
// connection that carries a branch. Callers use one connection from one thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/resource_manager.h"

namespace xatm::detail {

enum class marker_state : char { precommitted = 'P', aborted = 'A' };

// Creates the table if it does not exist (a table that exists needs no right to create).
result<void> install_marker_table(resource_manager& control);
// The same for TCC participants' barrier table, xatm_tcc_barrier (docs/tcc.md).
result<void> install_barrier_table(resource_manager& control);

// Makes a new control connection safe for markers (backend::control_session_statement(): a
// marker must be committed and durable when its insert returns). Call once per new control
// connection.
result<void> prepare_control_connection(resource_manager& control);

// Inserts `state` for the gtrid unless a row exists, then reads the row back: answers the state
// that won (ours, or the one somebody else wrote first). A failure means the outcome of the
// insert is unknown: re-read on a fresh connection, never assume.
result<marker_state> insert_marker(resource_manager& control, std::string_view gtrid, marker_state state,
                                   std::string_view branches);

// The gtrid's row, if any.
result<std::optional<marker_state>> read_marker(resource_manager& control, std::string_view gtrid);

// One row of a marker table, as recovery lists them to find the rows of finished transactions.
struct marker_row {
  std::string gtrid;
  marker_state state = marker_state::precommitted;
  // The RMs the row's writer gave: `name` or `name=<identity>` (the coordinator's pinned one).
  std::vector<std::string> branch_rms;
  bool truncated = false;  // the list filled its column: some names may be missing
  std::int64_t age_seconds = 0;
};

// Every row of the RM's marker table; an empty list when the RM has no marker table.
result<std::vector<marker_row>> list_markers(resource_manager& control);

// Deletes the gtrid's row (only once every branch is confirmed committed or rolled back).
result<void> delete_marker(resource_manager& control, std::string_view gtrid);
// Deletes the rows of many finished gtrids in one statement.
result<void> delete_markers(resource_manager& control, const std::vector<std::string>& gtrids);

// The commit-marker protocol's tables at one RM, schema-qualified and quoted by the server.
struct decision_tables {
  std::string marker;
  std::string identity;
};
// Found on a control connection (the TM's own, identity-verified); the marker table must exist
// and be fit to decide (backend::decision_tables_query()), or this fails.
result<decision_tables> find_decision_tables(resource_manager& control);
// The decision insert for `gtrid` at the RM `decision` belongs to (backend::decision_insert()),
// guarded by the database identity pinned for it; `branches` as for insert_marker().
result<std::string> decision_insert_statement(const resource_manager& decision, const decision_tables& tables,
                                              std::string_view gtrid, std::string_view identity,
                                              std::string_view branches);

}  // namespace xatm::detail
