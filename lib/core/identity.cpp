// RM identity rows and incarnation leases (core/identity.h). Every value spliced into SQL here
// is made by xatm itself (random ids of [a-z0-9-], validated tm_ids and incarnations) and is
// re-checked by literal() before it is sent.
#include "core/identity.h"

#include <algorithm>
#include <random>

#include "core/logging.h"

namespace xatm::detail {
namespace {

bool is_postgresql(const resource_manager& rm) { return rm.dialect() == "postgresql"; }
bool is_mysql(const resource_manager& rm) { return rm.dialect() == "mysql" || rm.dialect() == "mariadb"; }

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

bool is_missing_table(const failure& cause) {
  return cause.sqlstate == "42P01" /* PostgreSQL undefined_table */ ||
         cause.sqlstate == "42S02" /* MariaDB ER_NO_SUCH_TABLE */ || cause.native_code == 1146;
}

std::optional<std::string> first_value(const query_result& rows) {
  if (rows.rows.empty() || rows.rows.front().empty()) return std::nullopt;
  return rows.rows.front().front();
}

result<std::string> describe_database(resource_manager& rm) {
  auto rows = rm.exec(is_postgresql(rm) ? "SELECT current_database()" : "SELECT DATABASE()");
  if (!rows) return std::move(rows).error();
  return std::string(rm.dialect()) + " database '" + first_value(rows.value()).value_or("(none)") + "'";
}

// A PostgreSQL advisory lock key for a lease name: FNV-1a, 64 bits, as a signed decimal.
std::string advisory_key(std::string_view name) {
  std::uint64_t hash = 14695981039346656037ULL;
  for (char c : name) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  return std::to_string(static_cast<std::int64_t>(hash));
}

std::string lease_name(std::string_view gtrid_prefix) { return "xatm." + std::string(gtrid_prefix); }

}  // namespace

std::string identity_table_ddl(std::string_view dialect) {
  if (dialect == "postgresql") {
    return "CREATE TABLE IF NOT EXISTS xatm_identity ("
           "singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), "
           "database_id varchar(64) NOT NULL, "
           "created timestamptz NOT NULL DEFAULT now())";
  }
  return "CREATE TABLE IF NOT EXISTS xatm_identity ("
         "singleton tinyint PRIMARY KEY DEFAULT 1 CHECK (singleton = 1), "
         "database_id varchar(64) CHARACTER SET ascii NOT NULL, "
         "created timestamp(6) NOT NULL DEFAULT current_timestamp(6)) ENGINE=InnoDB";
}

result<std::optional<database_identity>> read_identity(resource_manager& rm) {
  if (!is_postgresql(rm) && !is_mysql(rm)) return std::optional<database_identity>();  // scripted test RMs
  auto rows = rm.exec("SELECT database_id FROM xatm_identity");
  if (!rows) {
    if (is_missing_table(rows.error())) return std::optional<database_identity>();
    return std::move(rows).error();
  }
  auto id = first_value(rows.value());
  if (!id) return std::optional<database_identity>();
  return std::optional<database_identity>(database_identity{*id, {}});
}

result<database_identity> ensure_identity(resource_manager& rm) {
  auto found = read_identity(rm);
  if (!found) return std::move(found).error();
  if (found.value()) {
    auto description = describe_database(rm);
    if (!description) return std::move(description).error();
    return database_identity{found.value()->id, description.value()};
  }
  // Look before creating, as for the marker table: a DBA may have created it and granted only
  // SELECT and INSERT.
  if (!rm.exec("SELECT database_id FROM xatm_identity WHERE 1 = 0").ok()) {
    if (auto created = rm.exec(identity_table_ddl(rm.dialect())); !created) return std::move(created).error();
    // Every role xatm runs as on this database must read it, whichever created it; it holds
    // nothing secret. (MariaDB has no PUBLIC: there the DBA's grants decide.)
    if (is_postgresql(rm)) {
      if (auto granted = rm.exec("GRANT SELECT ON xatm_identity TO PUBLIC"); !granted) return std::move(granted).error();
    }
  }
  auto id = literal(random_database_id());
  if (!id) return std::move(id).error();
  // Insert-if-absent: of two first meetings, one row wins and both read it back.
  std::string insert = is_postgresql(rm)
                           ? "INSERT INTO xatm_identity (singleton, database_id) VALUES (true, " + id.value() +
                                 ") ON CONFLICT (singleton) DO NOTHING"
                           : "INSERT IGNORE INTO xatm_identity (singleton, database_id) VALUES (1, " + id.value() + ")";
  if (auto inserted = rm.exec(insert); !inserted) return std::move(inserted).error();
  auto winner = read_identity(rm);
  if (!winner) return std::move(winner).error();
  if (!winner.value()) return make_failure(xa_code::rm_error, "xatm_identity row vanished right after its insert");
  auto description = describe_database(rm);
  if (!description) return std::move(description).error();
  winner.value()->description = description.value();
  XATM_LOG(recovery, info) << "RM " << rm.name() << ": " << winner.value()->description << " now has identity "
                           << winner.value()->id;
  return *winner.value();
}

result<identity_verdict> verify_identity(resource_manager& rm, decision_log& log, unpinned_rule rule) {
  // Scripted test RMs have no database to ask.
  if (!is_postgresql(rm) && !is_mysql(rm)) return identity_verdict{true, {}};
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
    auto description = describe_database(rm);
    std::string reached =
        (description ? description.value() : std::string("a database")) +
        (now ? " with identity " + now->id : std::string(" with no xatm identity (no xatm_identity row)"));
    return identity_verdict{
        false, "RM '" + rm.name() + "' reaches " + reached + ", but the decision log pinned identity " +
                   pin->identity + " (" + pin->description + ") for that name: wrong database or server? Nothing "
                   "was done on it. Check the connection string; if the database really moved (a copy that is "
                   "not a replica or a backup of it), re-pin it with xatm-recover --repin " + rm.name()};
  }
  switch (rule) {
    case unpinned_rule::pin: {
      // ensure_identity() above made sure there is one, and described it.
      pinned_identity identity{rm.name(), now->id, now->description, 0};
      if (auto pinned = log.pin(identity); !pinned) return std::move(pinned).error();
      XATM_LOG(recovery, info) << "RM " << rm.name() << " pinned to identity " << now->id << " ("
                               << now->description << ")";
      return identity_verdict{true, {}};
    }
    case unpinned_rule::report_only: return identity_verdict{true, {}};
    case unpinned_rule::refuse: break;
  }
  return identity_verdict{false, "RM '" + rm.name() + "': the decision log holds decisions with branches on it but "
                                 "pinned no database identity for it (a log written before identities were "
                                 "kept), so nothing proves this connection reaches the database the TM used. "
                                 "Nothing was done on it. If it is the right database, pin it with "
                                 "xatm-recover --repin " + rm.name()};
}

result<std::pair<std::optional<pinned_identity>, pinned_identity>> repin_identity(resource_manager& rm,
                                                                                    decision_log& log) {
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
  if (!is_postgresql(rm) && !is_mysql(rm)) return {};
  auto name = literal(lease_name(gtrid_prefix));
  if (!name) return std::move(name).error();
  auto rows = rm.exec(is_postgresql(rm) ? "SELECT pg_try_advisory_lock(" + advisory_key(lease_name(gtrid_prefix)) + ")"
                                        : "SELECT GET_LOCK(" + name.value() + ", 0)");
  if (!rows) return std::move(rows).error();
  auto got = first_value(rows.value());
  if (got != std::optional<std::string>("t") && got != std::optional<std::string>("1")) {
    return make_failure(xa_code::rm_error, "the lease of incarnation " + std::string(gtrid_prefix) +
                                               " is held by another session (two TMs with one log?)",
                        rm.name());
  }
  return {};
}

result<bool> lease_held(resource_manager& rm, std::string_view gtrid_prefix) {
  if (!is_postgresql(rm) && !is_mysql(rm)) return false;
  auto name = literal(lease_name(gtrid_prefix));
  if (!name) return std::move(name).error();
  if (is_mysql(rm)) {
    auto rows = rm.exec("SELECT IS_USED_LOCK(" + name.value() + ")");
    if (!rows) return std::move(rows).error();
    return first_value(rows.value()).has_value();
  }
  // PostgreSQL shows a bigint advisory key in pg_locks as classid (high 32 bits), objid (low 32
  // bits), objsubid 1. Read, never taken: trying the lock could make a TM's own attempt fail.
  const auto key = static_cast<std::uint64_t>(std::stoll(advisory_key(lease_name(gtrid_prefix))));
  auto rows = rm.exec("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
                      " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                      " AND classid::bigint = " + std::to_string(key >> 32) +
                      " AND objid::bigint = " + std::to_string(key & 0xffffffffULL));
  if (!rows) return std::move(rows).error();
  return first_value(rows.value()).value_or("0") != "0";
}

}  // namespace xatm::detail
