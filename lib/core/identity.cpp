// RM identity rows and incarnation leases (core/identity.h); the dialect's statements come from
// the connection's backend (core/backend.h). Every value spliced into SQL here is made by xatm
// itself (random ids of [a-z0-9-], validated tm_ids and incarnations) and is re-checked by
// literal() before it is sent.
#include "core/identity.h"

#include <algorithm>
#include <random>

#include "core/backend.h"
#include "core/logging.h"

namespace xatm::detail {
namespace {

result<std::string> literal(std::string_view text) {
  bool safe = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
  });
  if (!safe) return make_failure(xa_code::invalid, "not an identity or lease name xatm made");
  return "'" + std::string(text) + "'";
}

// "db-" and 20 base32 characters: 100 random bits.
std::string random_database_id() {
  constexpr std::string_view base32 = "abcdefghijklmnopqrstuvwxyz234567";
  std::random_device source;
  std::string id = "db-";
  while (id.size() < 23) {
    std::uint32_t bits = source();
    for (int i = 0; i < 6 && id.size() < 23; ++i, bits >>= 5) id += base32[bits & 31];
  }
  return id;
}

result<std::string> describe_database(resource_manager& rm, const backend& sql) {
  auto rows = rm.exec(sql.current_database_query());
  if (!rows) return std::move(rows).error();
  return std::string(rm.dialect()) + " database '" + first_value(rows.value()).value_or("(none)") + "'";
}

std::string lease_name(std::string_view gtrid_prefix) { return "xatm." + std::string(gtrid_prefix); }

}  // namespace

result<std::optional<database_identity>> read_identity(resource_manager& rm) {
  const backend* sql = backend_of(rm);
  if (sql == nullptr) return std::optional<database_identity>();  // scripted test RMs
  auto rows = rm.exec("SELECT database_id FROM xatm_identity");
  if (!rows) {
    if (sql->is_missing_table(rows.error())) return std::optional<database_identity>();
    return std::move(rows).error();
  }
  auto id = first_value(rows.value());
  if (!id) return std::optional<database_identity>();
  return std::optional<database_identity>(database_identity{*id, {}});
}

result<database_identity> ensure_identity(resource_manager& rm) {
  const backend* sql = backend_of(rm);
  if (sql == nullptr) return make_failure(xa_code::rm_error, "a test double keeps no xatm_identity row", rm.name());
  auto found = read_identity(rm);
  if (!found) return std::move(found).error();
  if (found.value()) {
    auto description = describe_database(rm, *sql);
    if (!description) return std::move(description).error();
    return database_identity{found.value()->id, description.value()};
  }
  // Look before creating, as for the marker table: a DBA may have created it and granted only
  // SELECT and INSERT.
  if (!rm.exec("SELECT database_id FROM xatm_identity WHERE 1 = 0").ok()) {
    if (auto created = rm.exec(sql->identity_table_ddl()); !created) return std::move(created).error();
    // Every role xatm runs as on this database must read it, whichever created it (the backend
    // says how, if its server can).
    if (auto grant = sql->identity_table_grant(); !grant.empty()) {
      if (auto granted = rm.exec(grant); !granted) return std::move(granted).error();
    }
  }
  auto id = literal(random_database_id());
  if (!id) return std::move(id).error();
  // Insert-if-absent: of two first meetings, one row wins and both read it back.
  if (auto inserted = rm.exec(sql->insert_identity_if_absent(id.value())); !inserted) {
    return std::move(inserted).error();
  }
  auto winner = read_identity(rm);
  if (!winner) return std::move(winner).error();
  if (!winner.value()) return make_failure(xa_code::rm_error, "xatm_identity row vanished right after its insert");
  auto description = describe_database(rm, *sql);
  if (!description) return std::move(description).error();
  winner.value()->description = description.value();
  XATM_LOG(recovery, info) << "RM " << rm.name() << ": " << winner.value()->description << " now has identity "
                           << winner.value()->id;
  return *winner.value();
}

result<identity_verdict> verify_identity(resource_manager& rm, decision_store& log, unpinned_rule rule) {
  // Scripted test RMs have no database to ask.
  const backend* sql = backend_of(rm);
  if (sql == nullptr) return identity_verdict{true, {}};
  auto pin = log.pinned(rm.name());
  // Only a first meeting that may pin creates the identity row; otherwise it is only read (the
  // wrong database must not be given one).
  result<std::optional<database_identity>> found = std::optional<database_identity>();
  if (pin || rule != unpinned_rule::pin) {
    found = read_identity(rm);
  } else if (auto made = ensure_identity(rm); made) {
    found = std::optional<database_identity>(std::move(made).value());
  } else {
    found = std::move(made).error();
  }
  if (!found) return std::move(found).error();
  const std::optional<database_identity>& now = found.value();
  if (pin) {
    if (now && now->id == pin->identity) return identity_verdict{true, {}};
    auto description = describe_database(rm, *sql);
    std::string reached =
        (description ? description.value() : std::string("a database")) +
        (now ? " with identity " + now->id : std::string(" with no xatm identity (no xatm_identity row)"));
    return identity_verdict{
        false, "RM '" + rm.name() + "' reaches " + reached + ", but the decision log pinned identity " + pin->identity +
                   " (" + pin->description +
                   ") for that name: wrong database or server? Nothing "
                   "was done on it. Check the connection string; if the database really moved (a copy that is "
                   "not a replica or a backup of it), re-pin it with xatm-recover --repin " +
                   rm.name()};
  }
  switch (rule) {
    case unpinned_rule::pin: {
      // ensure_identity() above made sure there is one, and described it.
      pinned_identity identity{rm.name(), now->id, now->description, 0};
      if (auto pinned = log.pin(identity); !pinned) return std::move(pinned).error();
      XATM_LOG(recovery, info) << "RM " << rm.name() << " pinned to identity " << now->id << " (" << now->description
                               << ")";
      return identity_verdict{true, {}};
    }
    case unpinned_rule::report_only: return identity_verdict{true, {}};
    case unpinned_rule::refuse: break;
  }
  return identity_verdict{false, "RM '" + rm.name() +
                                     "': the decision log holds decisions with branches on it but "
                                     "pinned no database identity for it (a log written before identities were "
                                     "kept), so nothing proves this connection reaches the database the TM used. "
                                     "Nothing was done on it. If it is the right database, pin it with "
                                     "xatm-recover --repin " +
                                     rm.name()};
}

result<std::pair<std::optional<pinned_identity>, pinned_identity>> repin_identity(resource_manager& rm,
                                                                                  decision_store& log) {
  auto old = log.pinned(rm.name());
  auto now = ensure_identity(rm);
  if (!now) return std::move(now).error();
  pinned_identity identity{rm.name(), now.value().id, now.value().description, 0};
  if (auto pinned = log.pin(identity); !pinned) return std::move(pinned).error();
  XATM_LOG(recovery, warning) << "RM " << rm.name() << " re-pinned from "
                              << (old ? old->identity + " (" + old->description + ")" : std::string("nothing"))
                              << " to " << identity.identity << " (" << identity.description << ")";
  return std::pair{old, *log.pinned(rm.name())};
}

result<void> take_lease(resource_manager& rm, std::string_view gtrid_prefix) {
  const backend* sql = backend_of(rm);
  if (sql == nullptr) return {};
  const std::string name = lease_name(gtrid_prefix);
  if (auto checked = literal(name); !checked) return std::move(checked).error();
  auto taken = sql->try_take_lease(rm, name);
  if (!taken) return std::move(taken).error();
  if (!taken.value()) {
    return make_failure(
        xa_code::rm_error,
        "the lease of incarnation " + std::string(gtrid_prefix) + " is held by another session (two TMs with one log?)",
        rm.name());
  }
  return {};
}

result<bool> lease_held(resource_manager& rm, std::string_view gtrid_prefix) {
  const backend* sql = backend_of(rm);
  if (sql == nullptr) return false;
  const std::string name = lease_name(gtrid_prefix);
  if (auto checked = literal(name); !checked) return std::move(checked).error();
  return sql->lease_held(rm, name);
}

}  // namespace xatm::detail
