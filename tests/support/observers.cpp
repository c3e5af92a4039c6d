// support/observers.cpp: the tests' own connections to the servers (see observers.h).
#include "support/observers.h"

#include <doctest/doctest.h>

#include "support/adapter_checks.h"
#include "mysql/mysql.h"
#include "postgresql/postgresql.h"
#include "xatm/xid.h"

namespace xatm::test {

std::unique_ptr<resource_manager> observe_pg(const std::string& conninfo) {
  return open_rm_with(&postgresql::connect, conninfo, "observer", "connect to PostgreSQL");
}

std::unique_ptr<resource_manager> observe_maria(const std::string& conninfo) {
  return open_rm_with(&mysql::connect, conninfo, "observer", "connect to MariaDB");
}

std::set<std::string> prepared_gtrids(resource_manager& rm, const std::string& tm_id) {
  auto found = rm.recover();
  if (!found.ok()) FAIL("recover on " << rm.dialect() << ": " << found.error().describe());
  std::set<std::string> gtrids;
  for (const xid& branch : found.value().ours) {
    if (is_ours(branch, tm_id)) gtrids.insert(branch.gtrid());
  }
  return gtrids;
}

}  // namespace xatm::test
