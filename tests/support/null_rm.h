// support/null_rm.h: a resource_manager of no known dialect that answers every verb at once
// and sends nothing anywhere: for checking that adapter-specific calls refuse a foreign RM.
#pragma once

#include <string_view>

#include "core/resource_manager.h"

namespace xatm::test {

class null_rm final : public resource_manager {
 public:
  null_rm() : resource_manager("other") {}
  std::string_view dialect() const noexcept override { return "other"; }

 protected:
  result<void> send(xa_verb, const xid&) override { return {}; }
  io_wait waiting_for() const noexcept override { return {}; }
  bool advance() override { return true; }
  result<vote> outcome() override { return vote::commit; }
  void cancel() noexcept override {}
  result<recovered_branches> do_recover() override { return recovered_branches{}; }
  result<query_result> do_exec(std::string_view) override { return query_result{}; }
  void* do_native_handle() noexcept override { return nullptr; }
  bool is_connected() const noexcept override { return true; }
  result<void> do_connect() override { return {}; }
};

}  // namespace xatm::test
