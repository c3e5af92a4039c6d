// The per-branch XA state machine every adapter inherits: legal sequences work, illegal calls
// answer XAER_PROTO and send nothing, and drive_calls() overlaps calls' waits.
#include <doctest/doctest.h>

#include <chrono>
#include <memory>

#include "testing/fake_rm.h"
#include "core/resource_manager.h"

using namespace xatm;
using xatm::testing::fake_rm;
using xatm::testing::fake_server;

namespace {
const xid branch_a(xatm_format_id, "tm.1.1", "1");
const xid branch_b(xatm_format_id, "tm.1.2", "1");

std::unique_ptr<fake_rm> make_rm() { return std::make_unique<fake_rm>("fake", std::make_shared<fake_server>()); }
}  // namespace

TEST_CASE("state machine: start, end, prepare, commit") {
  auto rm = make_rm();
  CHECK(rm->state() == branch_state::idle);
  REQUIRE(rm->start(branch_a).ok());
  CHECK(rm->state() == branch_state::active);
  CHECK(rm->current_branch() == branch_a);
  REQUIRE(rm->end(branch_a).ok());
  CHECK(rm->state() == branch_state::ended);
  REQUIRE(rm->prepare(branch_a).value() == vote::commit);
  CHECK(rm->state() == branch_state::prepared);
  CHECK(rm->server()->prepared.contains(branch_a));
  REQUIRE(rm->commit(branch_a, false).ok());
  CHECK(rm->state() == branch_state::idle);
  CHECK_FALSE(rm->current_branch().has_value());
  CHECK(rm->server()->committed.contains(branch_a));
}

TEST_CASE("state machine: illegal calls answer XAER_PROTO and send nothing") {
  auto rm = make_rm();
  auto protocol = [](const result<void>& answer) { return !answer.ok() && answer.error().code == xa_code::protocol; };
  CHECK(protocol(rm->end(branch_a)));
  CHECK(rm->prepare(branch_a).error().code == xa_code::protocol);
  CHECK(protocol(rm->commit(branch_a, true)));
  REQUIRE(rm->start(branch_a).ok());
  CHECK(protocol(rm->start(branch_a)));  // start twice
  CHECK(protocol(rm->start(branch_b)));
  CHECK(protocol(rm->commit(branch_a, false)));  // commit before prepare
  CHECK(protocol(rm->commit(branch_a, true)));   // one-phase before end
  CHECK(rm->prepare(branch_a).error().code == xa_code::protocol);
  CHECK(protocol(rm->commit(branch_b, false)));  // resolving another XID while carrying one
  CHECK(rm->recover().error().code == xa_code::protocol);
  REQUIRE(rm->end(branch_a).ok());
  CHECK(protocol(rm->end(branch_a)));
  CHECK(protocol(rm->commit(branch_a, false)));
  CHECK(rm->exec("SELECT 1").error().code == xa_code::protocol);
  REQUIRE(rm->prepare(branch_a).ok());
  CHECK(protocol(rm->commit(branch_a, true)));  // one-phase after prepare
  CHECK(protocol(rm->forget(branch_a)));
  CHECK(rm->journal().size() == 3);  // start, end, prepare: nothing else was sent
  REQUIRE(rm->rollback(branch_a).ok());
  CHECK(rm->server()->rolled_back.contains(branch_a));
  CHECK(rm->forget(branch_a).ok());
}

TEST_CASE("state machine: answers move the state as XA says") {
  auto rm = make_rm();
  SUBCASE("read-only prepare finishes the branch") {
    rm->script(xa_verb::prepare, vote::read_only);
    REQUIRE(rm->start(branch_a).ok());
    REQUIRE(rm->end(branch_a).ok());
    CHECK(rm->prepare(branch_a).value() == vote::read_only);
    CHECK(rm->state() == branch_state::idle);
    CHECK(rm->start(branch_b).ok());
  }
  SUBCASE("XA_RB* at prepare: the RM rolled the branch back") {
    rm->script(xa_verb::prepare, make_failure(xa_code::rollback_deadlock, "deadlock"));
    REQUIRE(rm->start(branch_a).ok());
    REQUIRE(rm->end(branch_a).ok());
    CHECK(rm->prepare(branch_a).error().code == xa_code::rollback_deadlock);
    CHECK(rm->state() == branch_state::idle);
  }
  SUBCASE("end with failure: rollback-only, prepare illegal, rollback fine") {
    REQUIRE(rm->start(branch_a).ok());
    REQUIRE(rm->end(branch_a, false).ok());
    CHECK(rm->state() == branch_state::rollback_only);
    CHECK(rm->prepare(branch_a).error().code == xa_code::protocol);
    CHECK(rm->rollback(branch_a).ok());
    CHECK(rm->state() == branch_state::idle);
  }
  SUBCASE("a lost connection ends the branch and needs reconnect()") {
    rm->script(xa_verb::end, make_failure(xa_code::rm_failure, "connection lost"));
    REQUIRE(rm->start(branch_a).ok());
    CHECK(rm->end(branch_a).error().code == xa_code::rm_failure);
    CHECK(rm->state() == branch_state::idle);
    CHECK_FALSE(rm->connected());
    CHECK(rm->start(branch_b).error().code == xa_code::rm_failure);
    REQUIRE(rm->reconnect().ok());
    CHECK(rm->start(branch_b).ok());
  }
  SUBCASE("resolving a prepared XID from another connection") {
    auto server = std::make_shared<fake_server>();
    fake_rm first("fake", server);
    REQUIRE(first.start(branch_a).ok());
    REQUIRE(first.end(branch_a).ok());
    REQUIRE(first.prepare(branch_a).ok());
    fake_rm second("fake", server);
    CHECK(second.commit(branch_a, false).ok());
    CHECK(second.commit(branch_a, false).error().code == xa_code::not_found);
    CHECK(second.state() == branch_state::idle);
  }
}

TEST_CASE("drive_calls: waits overlap, so two slow RMs cost the slower one, not the sum") {
  auto server = std::make_shared<fake_server>();
  fake_rm first("one", server);
  fake_rm second("two", server);
  first.set_latency(std::chrono::milliseconds(500));
  second.set_latency(std::chrono::milliseconds(500));
  REQUIRE(first.begin_call(xa_verb::start, branch_a).ok());
  REQUIRE(second.begin_call(xa_verb::start, branch_b).ok());
  resource_manager* both[] = {&first, &second};
  auto started = std::chrono::steady_clock::now();
  CHECK(drive_calls(both, std::nullopt).empty());
  auto took = std::chrono::steady_clock::now() - started;
  CHECK(first.finish_call().ok());
  CHECK(second.finish_call().ok());
  // Not a speed test: a serial implementation needs >= 1000 ms by construction; overlapping
  // waits need 500 ms, leaving 450 ms for a noisy machine.
  CHECK(took >= std::chrono::milliseconds(500));
  CHECK(took < std::chrono::milliseconds(950));

  SUBCASE("a deadline leaves unfinished calls in flight") {
    first.set_latency(std::chrono::milliseconds(2000));
    REQUIRE(first.begin_call(xa_verb::end, branch_a).ok());
    auto left = drive_calls(both, std::chrono::steady_clock::now() + std::chrono::milliseconds(20));
    REQUIRE(left.size() == 1);
    CHECK(left.front() == &first);
    first.abandon_call();
    CHECK_FALSE(first.connected());
    CHECK(first.state() == branch_state::idle);
  }
}
