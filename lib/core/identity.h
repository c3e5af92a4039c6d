// Internal: who is on the other end of an RM connection, and whether its TM is still alive.
//
// RM identity. The decision log stores RM names, and an RM name is resolved to a connection by
// whoever runs recovery: a mistyped connection string would make recovery scan the wrong
// database, find none of a decision's branches there and forget the decision. So each database
// xatm uses carries an identity row of its own (table xatm_identity, one row, a random id written
// the first time xatm meets the database), and the decision log pins, per RM name, the identity
// it first met under that name. The row replicates with the data and comes back with a restore
// from backup, so a failover to a replica or a restore keeps the identity; another database, on
// the same server or another, has another row or none.
//
// Incarnation leases. A running TM holds, on every RM, a session-level lock named after its
// incarnation (PostgreSQL advisory lock, MariaDB GET_LOCK). The server drops it when the TM's
// session ends, whatever happens to the process. Before recovery presumes abort of a branch of
// one of the log's own incarnations, it asks the branch's RM whether that lock is held: a TM
// still running (the log's lock file deleted, or recovery run on a copy of a live TM's log) may
// still be deciding it.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/decision_store.h"
#include "core/resource_manager.h"

namespace xatm::detail {

struct database_identity {
  std::string id;           // the identity row's random id
  std::string description;  // "postgresql database 'shop'" (for messages)
};

// Reads the database's identity; nullopt when it has none yet (no table, or no row).
result<std::optional<database_identity>> read_identity(resource_manager& rm);
// Reads it, creating the table and the row first when missing (insert-if-absent: two creators
// agree on one row).
result<database_identity> ensure_identity(resource_manager& rm);

// Three-phase bquals carry the first characters of the arbiter's identity (after "db-"):
// `<n>@<arbiter>@<tag>`.
inline constexpr std::size_t arbiter_tag_size = 12;

// How verify_identity() may treat an RM name the log has no pin for.
enum class unpinned_rule : std::uint8_t {
  pin,          // pin what the connection reaches (the TM; the tool for names no decision uses)
  refuse,       // a decision names it but nothing was pinned: the operator must re-pin
  report_only,  // dry run: change nothing, count it as verified
};

// What verify_identity() concluded. `problem` is for the operator: which RM, what differs, what
// to do.
struct identity_verdict {
  bool verified = false;
  std::string problem;
};

// Checks that `rm` reaches the database pinned for its name in `log`, pinning it first when the
// rule allows. A failure is the RM's (unreachable, no rights): the RM is then not verified either.
result<identity_verdict> verify_identity(resource_manager& rm, decision_store& log, unpinned_rule rule);

// Re-pins an RM name to the database `rm` reaches now (an operator's deliberate move), creating
// its identity row when missing. Answers the old and new identities for the report.
result<std::pair<std::optional<pinned_identity>, pinned_identity>> repin_identity(resource_manager& rm,
                                                                                  decision_store& log);

// Takes the lease of incarnation `gtrid_prefix` (`<tm_id>.<incarnation>`) on `rm`, held for as
// long as the connection's session lives.
result<void> take_lease(resource_manager& rm, std::string_view gtrid_prefix);
// Whether some session holds that lease on `rm` (not rm's own session).
result<bool> lease_held(resource_manager& rm, std::string_view gtrid_prefix);

}  // namespace xatm::detail
