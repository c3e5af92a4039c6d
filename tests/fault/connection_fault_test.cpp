// Connection faults against the real servers (hardening rows 5 and 6, docs/faults.md): an RM
// connection dropped before, during or after prepare and commit, and an RM that black-holes its
// traffic. Every connection of the transaction manager under test goes through a fault proxy
// (lib/testing/fault_proxy.h) that cuts it, or goes silent, when a chosen statement goes by: before
// the RM sees it, or after the RM did it and before its answer reaches xatm. Each case runs once
// with the fault on PostgreSQL and once on MariaDB and checks what the application sees
// (commit()'s answer or exception), what both databases hold afterwards, that recovery leaves no
// branch of this TM prepared, and that the decision log ends empty. The black-hole cases also
// prove that nothing waits for ever, with generous upper bounds only. Needs the `servers` fixture.
#include <doctest/doctest.h>

#include <chrono>
#include <initializer_list>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "support/adapter_checks.h"
#include "support/bank_tables.h"
#include "testing/fault_proxy.h"
#include "support/log_file.h"
#include "support/observers.h"
#include "support/servers.h"
#include "support/tm_fixture.h"
#include "xatm/connection_settings.h"
#include "xatm/error.h"
#include "mysql/mysql.h"
#include "postgresql/postgresql.h"
#include "xatm/transaction_manager.h"

using namespace xatm;  // NOLINT(google-build-using-namespace): test file

namespace {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using test::observe_maria;
using test::observe_pg;
using testing::fault_proxy;
using fault = testing::fault_proxy::fault;

// "Does not hang": far above what any case needs, far below the CTest timeout.
constexpr auto no_hang_bound = 30s;

// Which RM the fault hits. The transaction always has a branch on each: PostgreSQL's is branch 1.
enum class faulty_rm { postgresql, mariadb };

const char* rm_name_of(faulty_rm rm) { return rm == faulty_rm::postgresql ? "pg" : "maria"; }

// What each adapter sends for the verbs (lib/postgresql/postgresql_rm.cpp, lib/mysql/mysql_rm.cpp).
struct verbs {
  const char* end;  // PostgreSQL has no XA END: its end is the read-only probe (when it must ask)
  const char* prepare;
  const char* commit;     // phase 2
  const char* one_phase;  // commit of the only writing branch
};
verbs verbs_of(faulty_rm rm) {
  if (rm == faulty_rm::postgresql) {
    return {"pg_current_xact_id_if_assigned", "PREPARE TRANSACTION", "COMMIT PREPARED", "COMMIT"};
  }
  return {"XA END", "XA PREPARE", "XA COMMIT", "XA COMMIT"};
}

std::string with_setting(const std::string& conninfo, const std::string& key, const std::string& value) {
  auto settings = connection_settings::parse(conninfo).value();
  settings.set(key, value);
  return settings.to_conninfo();
}

std::string pg_port() { return connection_settings::parse(test::servers().pg).value().get("port").value_or("5432"); }

// The gtrids of tm_id's branches prepared on either server, as "<server>: <gtrid>".
std::set<std::string> prepared_of(const std::string& tm_id) {
  std::set<std::string> found;
  for (const std::string& gtrid : test::prepared_gtrids(*observe_pg(), tm_id)) found.insert("pg: " + gtrid);
  for (const std::string& gtrid : test::prepared_gtrids(*observe_maria(), tm_id)) found.insert("maria: " + gtrid);
  return found;
}

// Rolls back every branch of tm_id still prepared on either server, trying for a few seconds (a
// MariaDB branch answers "retry" until the session that held it is gone). Never throws.
void roll_back_leftovers(const std::string& tm_id) noexcept {
  try {
    for (int attempt = 0; attempt < 30; ++attempt) {
      bool left = false;
      for (auto [connect, conninfo] :
           {std::pair{&postgresql::connect, test::servers().pg}, std::pair{&mysql::connect, test::servers().mysql}}) {
        auto rm = connect("cleanup", connection_settings::parse(conninfo).value());
        if (!rm) continue;
        auto listed = rm.value()->recover();
        if (!listed) continue;
        for (const xid& branch : listed.value().ours) {
          if (!is_ours(branch, tm_id)) continue;
          if (!rm.value()->rollback(branch).ok()) left = true;
        }
      }
      if (!left) return;
      std::this_thread::sleep_for(100ms);
    }
  } catch (...) {  // NOLINT(bugprone-empty-catch): cleanup after a failure; the failure is reported
  }
}

// The TM's timeouts (tm_options). A cut never waits on them, so the cut cases keep them generous:
// a slow fsync on a loaded machine must not look like a fault. A black hole waits each of them
// out, so those cases keep them short.
struct timeouts {
  std::chrono::milliseconds prepare;
  std::chrono::milliseconds rm_call;
  std::chrono::milliseconds commit_retry_window;
};
constexpr timeouts for_cuts{5s, 5s, 5s};
constexpr timeouts for_black_holes{2s, 2s, 2s};

tm_options options_with(timeouts limits) {
  tm_options options = test::without_background_recovery();
  options.prepare_timeout = limits.prepare;
  options.rm_call_timeout = limits.rm_call;
  options.commit_retry_window = limits.commit_retry_window;
  return options;
}

// A transaction manager (support/tm_fixture.h) whose two RMs, "pg" and "maria", are reached
// through fault proxies. Recovery runs only when a test asks (recover_now()).
struct proxied_tm : test::tm_fixture {
  fault_proxy pg_proxy{test::servers().dir + "/.s.PGSQL." + pg_port(), ".s.PGSQL." + pg_port()};
  fault_proxy maria_proxy{test::servers().mysql_socket, "mysql.sock"};

  explicit proxied_tm(timeouts limits) : tm_fixture("connfault", options_with(limits), test::fixture_rms::none) {
    tm->register_rm("pg", "postgresql", with_setting(test::servers().pg, "host", pg_proxy.directory()));
    tm->register_rm("maria", "mariadb", with_setting(test::servers().mysql, "unix_socket", maria_proxy.socket_path()));
  }

  // After a failed check: lift the faults and roll back whatever this TM left prepared, so that
  // its locks do not block the next case. Best effort; nothing is left when every check passed.
  ~proxied_tm() {
    close();
    pg_proxy.restore();
    maria_proxy.restore();
    roll_back_leftovers(tm_id);
  }
  proxied_tm(const proxied_tm&) = delete;
  proxied_tm& operator=(const proxied_tm&) = delete;

  fault_proxy& proxy_of(faulty_rm rm) { return rm == faulty_rm::postgresql ? pg_proxy : maria_proxy; }

  // Runs recovery until nothing of this TM is prepared on either server and the run left nothing
  // unresolved, or 20 s passed: a MariaDB branch whose session is still ending answers "retry".
  recovery_report recover_until_settled() {
    auto give_up = clock::now() + 20s;
    while (true) {
      auto report = tm->recover_now();
      if ((!report.unresolved() && prepared_of(tm_id).empty()) || clock::now() > give_up) return report;
      std::this_thread::sleep_for(100ms);
    }
  }

  // Closes the TM (its log's completions reach the file) and answers the decisions left in it.
  std::vector<std::string> close_and_read_log() {
    close();
    return test::decisions_in_log_file(log_path);
  }
};

// One account (id 1, balance 100) and a ledger on each server. A transfer moves 10 from
// PostgreSQL to MariaDB and writes its token into both ledgers.
struct bank {
  std::string accounts = "connfault_accounts";
  std::string ledger = "connfault_ledger";

  bank() { test::create_bank_tables(*observe_pg(), *observe_maria(), accounts, ledger, 1, 100); }

  std::string move(long amount) const {
    return "UPDATE " + accounts + " SET balance = balance + " + std::to_string(amount) + " WHERE id = 1";
  }
  std::string note(const std::string& token, long amount) const {
    return "INSERT INTO " + ledger + " VALUES ('" + token + "', 1, " + std::to_string(amount) + ")";
  }
  long pg_balance() const { return std::stol(test::single_value(*observe_pg(), balance_sql())); }
  long maria_balance() const { return std::stol(test::single_value(*observe_maria(), balance_sql())); }
  bool pg_has(const std::string& token) const { return has(*observe_pg(), token); }
  bool maria_has(const std::string& token) const { return has(*observe_maria(), token); }

  // Both databases as before the transfer / with the transfer in them.
  void check_untouched(const std::string& token) const {
    CHECK(pg_balance() == 100);
    CHECK(maria_balance() == 100);
    CHECK_FALSE(pg_has(token));
    CHECK_FALSE(maria_has(token));
  }
  void check_transferred(const std::string& token) const {
    CHECK(pg_balance() == 90);
    CHECK(maria_balance() == 110);
    CHECK(pg_has(token));
    CHECK(maria_has(token));
  }

 private:
  std::string balance_sql() const { return "SELECT balance FROM " + accounts + " WHERE id = 1"; }
  bool has(resource_manager& rm, const std::string& token) const {
    return test::single_value(rm, "SELECT COUNT(*) FROM " + ledger + " WHERE token = '" + token + "'") == "1";
  }
};

// What commit() did: returned an outcome, or threw (the exception's type and its cause).
struct commit_answer {
  std::optional<commit_outcome> outcome;
  std::string thrown;   // "rolled_back_error", "timeout_error", "in_doubt_error", ...
  std::string rm_name;  // the RM the exception's cause names
  std::string message;
  clock::duration took{};
};

// Which branches write. `only_the_faulty_one`: the other branch is read-only, so the transaction
// commits in one phase on the faulty RM. `only_the_other_one`: the faulty RM's branch is the
// read-only one, which its adapter finishes with a one-phase commit before the writer commits.
enum class writers { both, only_the_faulty_one, only_the_other_one };

// One transfer through the proxies, then commit(); answers what commit() did.
commit_answer transfer(proxied_tm& t, const bank& b, const std::string& token, faulty_rm rm,
                       writers who = writers::both) {
  auto pg = t.tm->connect("pg");
  auto maria = t.tm->connect("maria");
  auto tx = t.tm->begin();
  tx.enlist(*pg);
  tx.enlist(*maria);
  bool pg_writes = who == writers::both || (who == writers::only_the_faulty_one) == (rm == faulty_rm::postgresql);
  bool maria_writes = who == writers::both || (who == writers::only_the_faulty_one) == (rm == faulty_rm::mariadb);
  if (pg_writes) {
    // One statement list whose last statement reads: xatm does not see that the branch wrote, so
    // its end sends the read-only probe, where the end faults cut (a branch whose write xatm saw
    // through exec() ends without a round trip).
    pg->exec(b.move(-10) + "; " + b.note(token, -10) + "; SELECT 1").value();
  }
  if (maria_writes) {
    maria->exec(b.move(10)).value();
    maria->exec(b.note(token, 10)).value();
  } else {
    maria->exec("SELECT 1").value();  // a branch that reads only
  }
  commit_answer answer;
  auto started = clock::now();
  auto caught = [&](const char* type, const xatm::error& e) {
    answer.thrown = type;
    answer.rm_name = e.rm_name();
    answer.message = e.what();
  };
  try {
    answer.outcome = tx.commit();
  } catch (const in_doubt_error& e) {
    caught("in_doubt_error", e);
  } catch (const heuristic_error& e) {
    caught("heuristic_error", e);
  } catch (const timeout_error& e) {
    caught("timeout_error", e);
  } catch (const rolled_back_error& e) {
    caught("rolled_back_error", e);
  } catch (const xatm::error& e) {
    caught("another xatm::error", e);
  }
  answer.took = clock::now() - started;
  CHECK(answer.message.find(test::mysql_password) == std::string::npos);  // never in a message
  return answer;
}

// transfer() with `what` armed on the faulty RM's proxy for the bytes `verb`; checks it fired.
commit_answer transfer_with_fault(proxied_tm& t, const bank& b, faulty_rm rm, fault what, const char* verb,
                                  const std::string& token, writers who = writers::both) {
  t.proxy_of(rm).arm(what, verb);
  auto answer = transfer(t, b, token, rm, who);
  CHECK(t.proxy_of(rm).fired());
  return answer;
}

// One row of a table of faults: what the proxy does, and at which verb.
struct fault_at {
  const char* name;
  fault what;
  const char* verbs::*verb;
};

// For each fault in turn, on a fresh TM and bank: one transfer (token cut_token) with the fault
// armed on the faulty RM, then check(tm, bank, commit()'s answer, the fault).
constexpr const char* cut_token = "cut";
template <class Check>
void for_each_cut(faulty_rm rm, std::initializer_list<fault_at> faults, writers who, const Check& check) {
  for (const fault_at& each : faults) {
    CAPTURE(each.name);
    bank b;
    proxied_tm t(for_cuts);
    auto answer = transfer_with_fault(t, b, rm, each.what, verbs_of(rm).*each.verb, cut_token, who);
    check(t, b, answer, each.what);
  }
}

// The fault on each RM in turn: one SUBCASE per RM.
faulty_rm pick_faulty_rm() {
  faulty_rm rm = faulty_rm::postgresql;
  SUBCASE("PostgreSQL") { rm = faulty_rm::postgresql; }
  SUBCASE("MariaDB") { rm = faulty_rm::mariadb; }
  return rm;
}

// A fault before the decision: commit() threw `expected_error` naming the faulty RM; after
// recovery no branch is prepared anywhere, nothing moved, and the log holds no decision.
void check_rolled_back(proxied_tm& t, const bank& b, const std::string& token, faulty_rm rm,
                       const commit_answer& answer, const std::string& expected_error) {
  INFO(answer.message);
  CHECK(answer.thrown == expected_error);
  CHECK(answer.rm_name == rm_name_of(rm));
  auto report = t.recover_until_settled();
  CHECK_FALSE(report.unresolved());
  CHECK(prepared_of(t.tm_id).empty());
  b.check_untouched(token);
  CHECK(t.close_and_read_log().empty());
}

// A fault after the decision: commit() answered committed or completion_pending (never an
// exception); after recovery both databases hold the transfer and the log is empty.
void check_committed(proxied_tm& t, const bank& b, const std::string& token, const commit_answer& answer) {
  INFO(answer.thrown << ": " << answer.message);
  REQUIRE(answer.outcome.has_value());
  if (*answer.outcome == commit_outcome::completion_pending) {
    auto report = t.recover_until_settled();
    CHECK_FALSE(report.unresolved());
    CHECK_FALSE(report.heuristic());
  }
  CHECK(prepared_of(t.tm_id).empty());
  b.check_transferred(token);
  CHECK(t.close_and_read_log().empty());
}

}  // namespace

TEST_CASE("a connection lost before the commit decision rolls the transaction back on both RMs") {
  faulty_rm rm = pick_faulty_rm();
  auto faults = {
      fault_at{"cut before the RM sees end", fault::cut_before_forwarding, &verbs::end},
      fault_at{"cut before the RM sees prepare", fault::cut_before_forwarding, &verbs::prepare},
      // The RM prepared it and nobody heard: presumed abort rolls it back.
      fault_at{"cut after the RM prepared, before xatm heard", fault::cut_after_forwarding, &verbs::prepare},
  };
  for_each_cut(rm, faults, writers::both, [&](proxied_tm& t, const bank& b, const commit_answer& answer, fault) {
    check_rolled_back(t, b, cut_token, rm, answer, "rolled_back_error");
  });
}

TEST_CASE("a connection lost around the phase-2 commit: the transaction still commits, once") {
  faulty_rm rm = pick_faulty_rm();
  auto faults = {
      fault_at{"cut before the RM sees the commit", fault::cut_before_forwarding, &verbs::commit},
      fault_at{"cut after the RM committed, before xatm heard", fault::cut_after_forwarding, &verbs::commit},
  };
  for_each_cut(rm, faults, writers::both, [&](proxied_tm& t, const bank& b, const commit_answer& answer, fault) {
    check_committed(t, b, cut_token, answer);
  });
}

TEST_CASE("a one-phase commit whose connection is lost is reported in doubt; the data says what happened") {
  faulty_rm rm = pick_faulty_rm();
  auto faults = {
      fault_at{"cut before the RM sees the commit", fault::cut_before_forwarding, &verbs::one_phase},
      fault_at{"cut after the RM committed, before xatm heard", fault::cut_after_forwarding, &verbs::one_phase},
  };
  // Only the faulty RM writes: the other branch is read-only, so the commit is one-phase.
  for_each_cut(rm, faults, writers::only_the_faulty_one,
               [&](proxied_tm& t, const bank& b, const commit_answer& answer, fault what) {
                 INFO(answer.message);
                 CHECK(answer.thrown == "in_doubt_error");
                 CHECK(answer.rm_name == rm_name_of(rm));
                 // Never seen: the session's end rolled it back. Seen: it committed, only the
                 // answer was lost.
                 bool committed = what == fault::cut_after_forwarding;
                 bool pg_side = rm == faulty_rm::postgresql;
                 CHECK(b.pg_balance() == (committed && pg_side ? 90 : 100));
                 CHECK(b.maria_balance() == (committed && !pg_side ? 110 : 100));
                 CHECK(b.pg_has(cut_token) == (committed && pg_side));
                 CHECK(b.maria_has(cut_token) == (committed && !pg_side));
                 CHECK(prepared_of(t.tm_id).empty());
                 CHECK(t.close_and_read_log().empty());  // a one-phase commit never writes a decision
               });
}

// A read-only MariaDB branch is finished by XA COMMIT ... ONE PHASE where a writing branch would
// be prepared: when that fails, the message names the one-phase commit and its statement, not a
// prepare that was never sent.
TEST_CASE("a failed one-phase commit of a read-only branch is reported as a one-phase commit") {
  for_each_cut(faulty_rm::mariadb, {fault_at{"cut before the RM sees it", fault::cut_before_forwarding, &verbs::one_phase}},
               writers::only_the_other_one, [&](proxied_tm& t, const bank& b, const commit_answer& answer, fault) {
                 INFO(answer.message);
                 auto has = [&](const char* text) { return answer.message.find(text) != std::string::npos; };
                 CHECK(has("rolled back: one-phase commit failed on maria: one-phase commit of "));
                 CHECK(has(" ONE PHASE)"));
                 CHECK_FALSE(has("prepare failed"));
                 CHECK_FALSE(has("prepare of"));
                 check_rolled_back(t, b, cut_token, faulty_rm::mariadb, answer, "rolled_back_error");
               });
}

TEST_CASE("an RM that goes silent at prepare: commit() times out and rolls back, nothing stays prepared") {
  faulty_rm rm = pick_faulty_rm();
  bank b;
  proxied_tm t(for_black_holes);
  auto answer = transfer_with_fault(t, b, rm, fault::black_hole, verbs_of(rm).prepare, "prepare-silent");
  CHECK(answer.took < no_hang_bound);
  // The other branch was rolled back at once; the silent RM's open transaction ends when the
  // network comes back and its session closes.
  t.proxy_of(rm).restore();
  check_rolled_back(t, b, "prepare-silent", rm, answer, "timeout_error");
}

TEST_CASE(
    "an RM that goes silent at the phase-2 commit: completion pending, recovery reports it "
    "unresolved while silent and commits it once the RM answers") {
  faulty_rm rm = pick_faulty_rm();
  bank b;
  proxied_tm t(for_black_holes);
  auto answer = transfer_with_fault(t, b, rm, fault::black_hole, verbs_of(rm).commit, "commit-silent");
  INFO(answer.thrown << ": " << answer.message);
  REQUIRE(answer.outcome.has_value());
  CHECK(*answer.outcome == commit_outcome::completion_pending);
  CHECK(answer.took < no_hang_bound);

  // While the RM is silent, recovery gives up on it within bounds and says so.
  auto started = clock::now();
  auto silent = t.tm->recover_now();
  CHECK(clock::now() - started < no_hang_bound);
  CHECK(silent.unresolved());
  REQUIRE(silent.unreachable_rms.size() == 1);
  CHECK(silent.unreachable_rms.front().rfind(std::string(rm_name_of(rm)) + ": ", 0) == 0);
  CHECK(silent.unreachable_rms.front().find(test::mysql_password) == std::string::npos);
  // The silent RM's branch is still prepared: its writes are not visible yet.
  bool silent_side_visible = rm == faulty_rm::postgresql ? b.pg_has("commit-silent") : b.maria_has("commit-silent");
  CHECK_FALSE(silent_side_visible);

  // The network comes back: the next run commits the branch and forgets the decision.
  t.proxy_of(rm).restore();
  check_committed(t, b, "commit-silent", answer);
}

TEST_CASE("an RM silent from the start does not stall begin()'s first recovery, nor connect()") {
  faulty_rm rm = pick_faulty_rm();
  proxied_tm t(for_black_holes);
  t.proxy_of(rm).black_hole();
  auto started = clock::now();
  {
    auto tx = t.tm->begin();  // runs recovery first: the silent RM is reported, not waited for
    std::string refusal;
    try {
      (void)t.tm->connect(rm_name_of(rm));
    } catch (const rm_error& e) {
      refusal = e.what();
    }
    INFO(refusal);
    CHECK_FALSE(refusal.empty());
    // libpq's words for a server silent past connect_timeout, which xatm applies itself.
    if (rm == faulty_rm::postgresql) CHECK(refusal.find(" failed: timeout expired") != std::string::npos);
  }
  CHECK(clock::now() - started < no_hang_bound);
  t.proxy_of(rm).restore();
  CHECK(t.tm->recover_now().unreachable_rms.empty());
  CHECK(t.close_and_read_log().empty());
}
