// Runs one workload for one number of clients in every mode, interleaved: the modes take turns in
// short rounds (the order rotates every round) so that they all see the same machine, which on
// a shared 2-core box matters more than anything else. Each client is one thread with its own
// two connections, used by every mode in turn. Main thread: construct, run(), destroy.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <vector>

#include "bench/bench.h"
#include "bench/workload.h"
#include "xatm/transaction_manager.h"

namespace xatm::bench {

// The name the tcc mode's participant is registered under in its TM (xatm_bench.cpp).
inline constexpr const char* tcc_participant_name = "side_b";

// Set by SIGINT/SIGTERM: clients stop after their current transaction, the bench cleans up.
extern std::atomic<bool> stop_requested;

struct round_report {
  mode m;
  int round;  // 0-based measured round, -1 for warm-up
  int rounds;
  int modes;          // how many modes take turns: a round is complete after this many reports
  double throughput;  // committed tx/s in this round
};

class runner {
 public:
  // tms: the transaction manager of each TM mode (xa, and 3pc when available).
  runner(const settings& config, const workload& work, std::map<mode, transaction_manager*> tms,
         transaction_manager& connector, int clients);

  // Runs warm-up and the measured rounds; answers one measurement per mode. `progress` is called
  // on the main thread after every round. Throws when the clients cannot connect.
  std::vector<measurement> run(const std::function<void(const round_report&)>& progress);

  // What the clients acknowledged per mode (warm-up included), for the checks.
  std::map<mode, acknowledged> acknowledged_by_mode() const;
  // Local transfers whose first commit went through and whose second did not.
  std::uint64_t half_committed() const;

 private:
  struct client;
  struct round_plan;

  const settings& config_;
  const workload& work_;
  std::map<mode, transaction_manager*> tms_;
  transaction_manager& connector_;
  int clients_;
  std::map<mode, acknowledged> acks_;
};

}  // namespace xatm::bench
