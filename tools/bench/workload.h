// The SQL of xatm-bench's workloads: schema, the statements of one transaction on each of its two
// RMs, and the invariant checks that run after every clients value. A workload object is
// immutable after construction and shared by all client threads; the RM connections it is given
// belong to the calling thread.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>

#include "bench/bench.h"
#include "xatm/connection.h"

namespace xatm::bench {

// What the clients acknowledged for one mode, over the whole workload (warm-up included): the
// checks compare it with what the databases hold.
struct acknowledged {
  std::uint64_t count = 0;      // commits reported committed
  std::int64_t amount = 0;      // sum of their amounts (transfer) or quantities (read-write)
  std::uint64_t uncertain = 0;  // in-doubt outcomes: may or may not be there
  std::int64_t uncertain_amount = 0;
  // local only: side a committed, side b did not (local commits are not atomic).
  std::uint64_t half_committed = 0;
  std::int64_t half_amount = 0;

  acknowledged& operator+=(const acknowledged& other);
};

// One transaction's parameters, drawn by the client before it starts.
struct transaction_input {
  std::string token;  // unique in the workload: "<mode>-<clients>-<client>-<seq>"
  const char* mode_label = "";
  int account_a = 0;
  int account_b = 0;
  std::int64_t amount = 0;
  std::int64_t seen = 0;  // read-write: the stock side a read, written by side b
};

class workload {
 public:
  workload(workload_kind kind, int accounts);

  workload_kind kind() const noexcept { return kind_; }
  // The registered RM names of side a (enlisted and run first) and side b.
  const char* rm_a() const noexcept;
  const char* rm_b() const noexcept;
  // One line for the table's title.
  std::string description() const;

  // Drops and recreates the workload's tables (names start with xatm_bench_) and fills them.
  void create_schema(connection& a, connection& b) const;

  transaction_input draw(std::mt19937_64& random, std::string token, const char* mode_label) const;
  // The statements of each side, on a connection inside a branch or a local transaction. Throw
  // xatm::error on failure (exec(...).value()).
  void run_a(connection& rm, transaction_input& input) const;
  void run_b(connection& rm, transaction_input& input) const;

  // Checks the invariants: money conserved, both ledgers identical per mode, and exactly the
  // acknowledged commits present (read-write: orders per mode, stock untouched).
  verification verify(connection& a, connection& b, const std::map<mode, acknowledged>& acks, int clients) const;

 private:
  workload_kind kind_;
  int accounts_;
};

// "BEGIN" or "START TRANSACTION": a native local transaction on that RM.
const char* local_begin_statement(const connection& rm) noexcept;

}  // namespace xatm::bench
