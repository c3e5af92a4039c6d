// The backend registry (backend.h). The first lookup has the wiring layer register the built-in
// backends (builtin_backends.h, once per process); the lock makes a later registration safe.
#include "core/backend.h"

#include <algorithm>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "builtin_backends.h"
#include "core/sql_adapter.h"

namespace xatm::detail {
namespace {

struct registry {
  std::shared_mutex mutex;
  std::vector<const backend*> backends;  // in registration order: dialect_list() keeps it
};

// Never destroyed: a TM with static storage duration may still run recovery (and look up
// backends) while other statics are destroyed at exit.
registry& backends() {
  static registry* const all = new registry;  // NOLINT: immortal on purpose
  return *all;
}

}  // namespace

void register_backend(const backend& chosen) {
  auto& all = backends();
  std::unique_lock lock(all.mutex);
  auto same_name = std::find_if(all.backends.begin(), all.backends.end(),
                                [&](const backend* known) { return known->dialect() == chosen.dialect(); });
  if (same_name != all.backends.end()) {
    *same_name = &chosen;
  } else {
    all.backends.push_back(&chosen);
  }
}

const backend* find_backend(std::string_view dialect) noexcept {
  register_builtin_backends();
  auto& all = backends();
  std::shared_lock lock(all.mutex);
  for (const backend* known : all.backends) {
    if (known->dialect() == dialect) return known;
  }
  return nullptr;
}

std::string dialect_list(std::string_view suffix) {
  register_builtin_backends();
  auto& all = backends();
  std::shared_lock lock(all.mutex);
  std::string list;
  for (std::size_t i = 0; i < all.backends.size(); ++i) {
    if (i > 0) list += i + 1 == all.backends.size() ? " or " : ", ";
    list.append(all.backends[i]->dialect()).append(suffix);
  }
  return list;
}

const backend* backend_of(const resource_manager& rm) noexcept {
  if (const auto* adapter = dynamic_cast<const sql_adapter*>(&rm)) return &adapter->sql_backend();
  // Another kind of RM (one wrapping an adapter, a test double): the backend of the dialect it
  // reports, if one is registered by that name.
  return find_backend(rm.dialect());
}

std::optional<std::string> first_value(const query_result& rows) {
  if (rows.rows.empty() || rows.rows.front().empty()) return std::nullopt;
  return rows.rows.front().front();
}

}  // namespace xatm::detail
