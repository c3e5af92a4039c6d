// support/bank_tables.h: the transfer bank's tables of the tests that move money between the two
// servers directly (crash/crash_point_test.cpp, integration/transaction_manager_test.cpp). The
// crash harness's bank (support/invariants.h) differs: its PostgreSQL ledger has a foreign key.
#pragma once

#include <string>

#include "support/adapter_checks.h"
#include "core/resource_manager.h"

namespace xatm::test {

// Drops and creates accounts(id, balance CHECK >= 0) and ledger(token PRIMARY KEY, account,
// amount) on PostgreSQL (`pg`) and MariaDB (`maria`), and fills accounts 1..count with `initial`.
// deferred_pg_ledger: PostgreSQL checks the ledger's key at commit (PREPARE), not per statement.
inline void create_bank_tables(connection& pg, connection& maria, const std::string& accounts,
                               const std::string& ledger, int count, long initial, bool deferred_pg_ledger = false) {
  std::string values;
  for (int id = 1; id <= count; ++id) {
    values += (id == 1 ? "(" : ", (") + std::to_string(id) + ", " + std::to_string(initial) + ")";
  }
  run(pg, "DROP TABLE IF EXISTS " + ledger + "; DROP TABLE IF EXISTS " + accounts +
              ";"
              "CREATE TABLE " +
              accounts +
              " (id int PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0));"
              "CREATE TABLE " +
              ledger + " (token text PRIMARY KEY" + (deferred_pg_ledger ? " DEFERRABLE INITIALLY DEFERRED" : "") +
              ", account int NOT NULL, amount bigint NOT NULL);"
              "INSERT INTO " +
              accounts + " VALUES " + values);
  run(maria, "DROP TABLE IF EXISTS " + ledger);
  run(maria, "DROP TABLE IF EXISTS " + accounts);
  run(maria,
      "CREATE TABLE " + accounts + " (id int PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0)) ENGINE=InnoDB");
  run(maria, "CREATE TABLE " + ledger +
                 " (token varchar(64) PRIMARY KEY, account int NOT NULL, amount bigint NOT NULL) ENGINE=InnoDB");
  run(maria, "INSERT INTO " + accounts + " VALUES " + values);
}

}  // namespace xatm::test
