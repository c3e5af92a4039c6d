// support/observers.h: connections of a test's own to the real servers, outside any transaction
// manager: how everyone else (an operator, another application) sees and touches the data, and
// which branches of a TM the servers still hold prepared. Each helper fails the test when it
// cannot connect or ask. Use from the test's thread.
#pragma once

#include <memory>
#include <set>
#include <string>

#include "support/servers.h"
#include "core/resource_manager.h"

namespace xatm::test {

// A new connection named "observer" to PostgreSQL (by default the `servers` fixture's database
// xatm_test) or to MariaDB (by default as the user xatm).
std::unique_ptr<resource_manager> observe_pg(const std::string& conninfo = servers().pg);
std::unique_ptr<resource_manager> observe_maria(const std::string& conninfo = servers().mysql);

// The gtrids of tm_id's branches that `rm` holds prepared (pg_prepared_xacts / XA RECOVER).
std::set<std::string> prepared_gtrids(resource_manager& rm, const std::string& tm_id);

}  // namespace xatm::test
