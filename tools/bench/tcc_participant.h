// xatm-bench's TCC participant (mode "tcc"): side b of a workload as a TCC branch instead of an
// XA branch. It stands for a service of its own (a wallet) called in process, without the
// network: try writes the barrier row alone (a credit reserves nothing), confirm runs side b's
// statements inside the barrier, cancel releases nothing. Each call is a local transaction of the
// participant's own transaction manager on side b's database, as tcc_barrier runs it. The mode
// measures what the coordinator and the barrier cost, not HTTP. Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bench/workload.h"
#include "xatm/tcc.h"
#include "xatm/transaction_manager.h"

namespace xatm::bench {

class tcc_participant_in_process final : public tcc_participant {
 public:
  // `tm` is the participant's own transaction manager with the workloads' RMs registered.
  explicit tcc_participant_in_process(transaction_manager& tm) : tm_(tm) {}

  // The workload whose side b the calls run (set on the main thread between runs).
  void use(const workload& work) { work_ = &work; }

  // The payload that carries a transaction's input to the participant.
  static std::string payload_of(const transaction_input& in);

  tcc_reply call(tcc_step step, const tcc_request& request, std::chrono::milliseconds timeout) override;

 private:
  // One connection to `rm` per concurrent call, kept for the next one.
  std::unique_ptr<connection> take(const std::string& rm);
  void give_back(const std::string& rm, std::unique_ptr<connection> c);

  transaction_manager& tm_;
  const workload* work_ = nullptr;
  std::mutex mutex_;
  std::map<std::string, std::vector<std::unique_ptr<connection>>> idle_;
};

}  // namespace xatm::bench
