// A scripted resource manager for tests: it answers each XA verb from a script instead of a
// server, keeps a simulated set of prepared branches (so recover(), commit and rollback of
// prepared XIDs behave like an RM's), records every call in a journal, and can take a fixed
// latency per call (a timerfd, so drive_calls() really waits on a socket-like fd).
// It sits behind the same interface and state machine as the real adapters. One thread at a time.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/resource_manager.h"

namespace xatm::testing {

// A simulated server: the branches it holds prepared outlive any one fake_rm "connection".
struct fake_server {
  std::set<xid> prepared;
  std::set<xid> committed;               // every branch that committed here (one-phase or two-phase)
  std::set<xid> rolled_back;             // every branch rolled back here
  std::vector<prepared_branch> foreign;  // foreign branches to list in recover()
};

class fake_rm : public resource_manager {
 public:
  // journal: every call as "<rm> <verb> <gtrid>", shared between fakes to see the global order.
  fake_rm(std::string name, std::shared_ptr<fake_server> server,
          std::shared_ptr<std::vector<std::string>> journal = nullptr);
  ~fake_rm() override;

  std::string_view dialect() const noexcept override { return "fake"; }

  // The answer of the next call of `verb` (queued, first in first out). Without a script a verb
  // succeeds (prepare votes commit).
  void script(xa_verb verb, result<vote> answer);
  // Called as a verb is sent, before its answer: lets a test look at the world at that instant.
  void on_send(std::function<void(xa_verb, const xid&)> hook) { on_send_ = std::move(hook); }
  // Every call takes this long (0: answers at once).
  void set_latency(std::chrono::milliseconds latency) { latency_ = latency; }
  // Makes the RM report after end() that the branch wrote nothing (as PG's
  // pg_current_xact_id_if_assigned() or MariaDB's transaction-state tracker do).
  void set_read_only(bool read_only) { read_only_ = read_only; }
  // Simulates the connection dropping: is_connected() false until reconnect().
  void drop_connection() { connected_ = false; }

  const std::shared_ptr<fake_server>& server() const { return server_; }
  const std::vector<std::string>& journal() const { return *journal_; }

 protected:
  result<void> send(xa_verb verb, const xid& branch) override;
  io_wait waiting_for() const noexcept override;
  bool advance() override;
  result<vote> outcome() override;
  void cancel() noexcept override;
  result<recovered_branches> do_recover() override;
  result<query_result> do_exec(std::string_view sql) override;
  void* do_native_handle() noexcept override { return nullptr; }
  bool is_connected() const noexcept override { return connected_; }
  result<void> do_connect() override;
  bool branch_wrote_nothing() const noexcept override { return read_only_; }

 private:
  result<vote> simulate(xa_verb verb, const xid& branch);

  std::shared_ptr<fake_server> server_;
  std::shared_ptr<std::vector<std::string>> journal_;
  std::map<xa_verb, std::deque<result<vote>>> scripts_;
  std::function<void(xa_verb, const xid&)> on_send_;
  std::chrono::milliseconds latency_{0};
  int timer_fd_ = -1;
  bool connected_ = true;
  bool read_only_ = false;
  std::optional<result<vote>> answer_;
};

}  // namespace xatm::testing
