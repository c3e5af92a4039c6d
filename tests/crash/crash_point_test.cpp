// Every crash point of the two-phase protocol (docs/design.md section 4), against the real servers.
// A forked child opens a transaction manager on a fresh log, sets XATM_CRASH_AT, and runs one
// transfer from PostgreSQL to MariaDB; it SIGKILLs itself at the named point. The parent checks
// how the child died, what the decision log file holds (the decision iff the crash came after it
// was durable), and what each server holds for the transfer (nothing, prepared or committed),
// then resolves the leftovers by hand as recovery will (commit if the log has the decision, roll
// back otherwise) and checks that both databases agree. Needs a build with
// -DXATM_CRASH_POINTS=ON and the `servers` fixture.
//
// The parent opens no xatm object that starts a thread (no transaction manager, no decision
// log) and holds no connection when it forks: the child starts from a clean single-threaded
// copy, and the crash point reads XATM_CRASH_AT the first time the child passes one.
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/log_file.h"
#include "support/adapter_checks.h"
#include "support/bank_tables.h"
#include "support/result_checks.h"
#include "support/servers.h"
#include "support/temp_dir.h"
#include "xatm/connection_settings.h"
#include "xatm/error.h"
#include "mysql/mysql.h"
#include "postgresql/postgresql.h"
#include "xatm/transaction_manager.h"

using namespace xatm;  // NOLINT(google-build-using-namespace): test file

namespace {

using std::chrono::milliseconds;
using clock = std::chrono::steady_clock;

constexpr const char* accounts = "crash_accounts";
constexpr const char* ledger = "crash_ledger";
constexpr int account_count = 16;  // one per run: a run never waits for an earlier run's locks
constexpr long initial_balance = 100;
constexpr long amount = 10;

using xatm::test::temp_dir;

std::unique_ptr<resource_manager> open_pg(const std::string& name = "pg") {
  return test::open_rm_with(&postgresql::connect, test::servers().pg, name, "connect to PostgreSQL");
}

std::unique_ptr<resource_manager> open_maria(const std::string& name = "maria") {
  return test::open_rm_with(&mysql::connect, test::servers().mysql, name, "connect to MariaDB");
}

using test::run;
using test::single_value;

// accounts(id, balance CHECK >= 0) and ledger(token PRIMARY KEY, account, amount) on both sides.
void create_bank() {
  test::create_bank_tables(*open_pg(), *open_maria(), accounts, ledger, account_count, initial_balance);
}

// What one child does: who it is, where its log lives, which account it moves money on.
struct child_plan {
  std::string crash_at;  // XATM_CRASH_AT; empty: unset
  std::string tm_id;
  std::string log_path;
  std::string pg_conninfo;
  std::string maria_conninfo;
  int account = 0;
  std::string token;
};

// Writes one line to the parent. The pipe is the child's only voice: it dies without flushing.
void report(int fd, const std::string& line) {
  std::string text = line + "\n";
  for (std::size_t done = 0; done < text.size();) {
    ssize_t written = ::write(fd, text.data() + done, text.size() - done);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return;  // the parent went away: nobody is left to tell
    done += static_cast<std::size_t>(written);
  }
}

// The child: one transfer of `amount` from PostgreSQL account `account` to the MariaDB account
// with the same id, reporting each step it finished. Never returns into doctest.
[[noreturn]] void run_child(const child_plan& plan, int report_fd) {
  int exit_code = 0;
  try {
    if (plan.crash_at.empty()) {
      ::unsetenv("XATM_CRASH_AT");
    } else {
      ::setenv("XATM_CRASH_AT", plan.crash_at.c_str(), 1);
    }
    {
      transaction_manager tm({.tm_id = plan.tm_id, .log_path = plan.log_path});
      tm.register_rm("pg", "postgresql", plan.pg_conninfo);
      tm.register_rm("maria", "mariadb", plan.maria_conninfo);
      auto pg = tm.connect("pg");
      auto maria = tm.connect("maria");
      auto tx = tm.begin();
      report(report_fd, "begun " + tx.gtrid());
      tx.enlist(*pg);
      report(report_fd, "enlisted pg");
      tx.enlist(*maria);
      report(report_fd, "enlisted maria");
      const std::string id = std::to_string(plan.account);
      const std::string n = std::to_string(amount);
      pg->exec(std::string("UPDATE ") + accounts + " SET balance = balance - " + n + " WHERE id = " + id).value();
      pg->exec(std::string("INSERT INTO ") + ledger + " VALUES ('" + plan.token + "', " + id + ", -" + n + ")").value();
      maria->exec(std::string("UPDATE ") + accounts + " SET balance = balance + " + n + " WHERE id = " + id).value();
      maria->exec(std::string("INSERT INTO ") + ledger + " VALUES ('" + plan.token + "', " + id + ", " + n + ")")
          .value();
      report(report_fd, "sql done");
      auto outcome = tx.commit();
      report(report_fd, outcome == commit_outcome::committed ? "committed" : "completion pending");
    }  // the transaction, its connections and the TM close: the completion reaches the log
    report(report_fd, "closed");
  } catch (const std::exception& e) {
    report(report_fd, std::string("error ") + e.what());
    exit_code = 3;
  } catch (...) {
    report(report_fd, "error (not a std::exception)");
    exit_code = 4;
  }
  ::_exit(exit_code);
}

struct child_result {
  int status = 0;
  std::vector<std::string> lines;  // what the child reported, in order
  std::string gtrid;

  bool killed() const { return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL; }
  bool exited_ok() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
  std::string last_line() const { return lines.empty() ? std::string() : lines.back(); }
  std::string how() const {
    std::ostringstream text;
    if (WIFEXITED(status)) text << "exit code " << WEXITSTATUS(status);
    if (WIFSIGNALED(status)) text << "signal " << WTERMSIG(status);
    text << "; reported:";
    for (const auto& line : lines) text << " [" << line << "]";
    return text.str();
  }
};

struct fd_closer {
  int fd;
  ~fd_closer() {
    if (fd >= 0) ::close(fd);
  }
};

child_result run_in_child(const child_plan& plan) {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  fd_closer read_end{pipe_fds[0]};
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(pipe_fds[0]);
    run_child(plan, pipe_fds[1]);
  }
  ::close(pipe_fds[1]);

  child_result result;
  const auto deadline = clock::now() + std::chrono::seconds(60);
  for (;;) {
    const pid_t done = ::waitpid(pid, &result.status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) FAIL("waitpid failed: " << std::strerror(errno));
    if (clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      (void)::waitpid(pid, &result.status, 0);  // reaped; the test fails below anyway
      FAIL("the child (XATM_CRASH_AT=" << plan.crash_at << ") hung for 60 s");
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t got = ::read(pipe_fds[0], buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    text.append(buffer, static_cast<std::size_t>(got));
  }
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("begun ", 0) == 0) result.gtrid = line.substr(6);
    result.lines.push_back(line);
  }
  return result;
}

std::vector<std::string> decisions_in_log(const std::string& log) { return test::decisions_in_log_file(log); }

// Where one branch of the transfer stands on its server.
struct branch_view {
  bool prepared = false;   // listed by pg_prepared_xacts / XA RECOVER
  bool committed = false;  // the ledger row is visible
};

branch_view look_at(resource_manager& rm, const std::string& gtrid, const std::string& token) {
  branch_view view;
  auto found = rm.recover();
  if (!found.ok()) FAIL("recover on " << rm.dialect() << ": " << found.error().describe());
  for (const xid& branch : found.value().ours) view.prepared = view.prepared || branch.gtrid() == gtrid;
  view.committed =
      single_value(rm, std::string("SELECT count(*) FROM ") + ledger + " WHERE token = '" + token + "'") == "1";
  return view;
}

// Finishes what the dead child left prepared on one server, as recovery will: commit when the
// log holds the decision, roll back otherwise (presumed abort). MariaDB answers retry while the
// dead child's session is still attached to its branch; that passes within seconds.
void resolve_leftovers(resource_manager& rm, const std::string& tm_id, bool decided) {
  // Let MariaDB finish with the dead child's session first: an XA COMMIT that races its detach
  // of the branch can answer OK and lose the branch (docs/design.md section 6). It acts on the
  // closed socket at once; 300 ms is ample.
  if (rm.dialect() != "postgresql") std::this_thread::sleep_for(milliseconds(300));
  auto found = rm.recover();
  if (!found.ok()) FAIL("recover on " << rm.dialect() << ": " << found.error().describe());
  for (const xid& branch : found.value().ours) {
    if (!is_ours(branch, tm_id)) continue;
    CAPTURE(branch.to_string());
    const auto give_up = clock::now() + std::chrono::seconds(20);
    for (;;) {
      auto done = decided ? rm.commit(branch, false) : rm.rollback(branch);
      if (done.ok() || done.error().code == xa_code::not_found) break;
      if (done.error().code != xa_code::retry || clock::now() > give_up) {
        FAIL((decided ? "commit" : "rollback") << " of a leftover branch: " << done.error().describe());
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
  }
}

// What a crash at a point leaves, as far as it is known without recovery.
enum class leftover {
  nothing,         // no branch prepared, nothing committed
  some_prepared,   // nothing committed; at least one branch prepared
  all_prepared,    // both branches prepared, nothing committed
  some_committed,  // at least one committed, the other committed or still prepared
  all_committed,   // both committed, nothing prepared
};

struct crash_case {
  const char* crash_at;   // XATM_CRASH_AT ("" for none)
  bool dies;              // SIGKILL expected (else exit 0)
  const char* last_line;  // the child's last report before it died (or "closed")
  bool decision_logged;   // the log file holds the decision afterwards
  leftover left;
};

constexpr crash_case crash_cases[] = {
    {"", false, "closed", false, leftover::all_committed},  // the control run
    {"after_start", true, "begun", false, leftover::nothing},
    {"after_start:2", true, "enlisted pg", false, leftover::nothing},    // dies in the second enlist
    {"after_start:3", false, "closed", false, leftover::all_committed},  // never passes a third time
    {"before_prepare", true, "sql done", false, leftover::nothing},
    {"after_first_prepare", true, "sql done", false, leftover::some_prepared},
    {"after_all_prepared", true, "sql done", false, leftover::all_prepared},
    {"before_decision_write", true, "sql done", false, leftover::all_prepared},
    {"after_decision_durable", true, "sql done", true, leftover::all_prepared},
    {"after_first_commit", true, "sql done", true, leftover::some_committed},
    {"after_all_committed", true, "sql done", true, leftover::all_committed},
    // The decision outlives its branches until the completion is written.
    {"before_complete_mark", true, "sql done", true, leftover::all_committed},
};

void check_leftover(leftover expected, const branch_view& pg, const branch_view& maria) {
  CHECK_FALSE((pg.prepared && pg.committed));
  CHECK_FALSE((maria.prepared && maria.committed));
  switch (expected) {
    case leftover::nothing:
      CHECK_FALSE(pg.prepared);
      CHECK_FALSE(maria.prepared);
      CHECK_FALSE(pg.committed);
      CHECK_FALSE(maria.committed);
      break;
    case leftover::some_prepared:
      CHECK((pg.prepared || maria.prepared));
      CHECK_FALSE(pg.committed);
      CHECK_FALSE(maria.committed);
      break;
    case leftover::all_prepared:
      CHECK(pg.prepared);
      CHECK(maria.prepared);
      CHECK_FALSE(pg.committed);
      CHECK_FALSE(maria.committed);
      break;
    case leftover::some_committed:
      CHECK((pg.committed || maria.committed));
      CHECK((pg.committed || pg.prepared));
      CHECK((maria.committed || maria.prepared));
      break;
    case leftover::all_committed:
      CHECK(pg.committed);
      CHECK(maria.committed);
      CHECK_FALSE(pg.prepared);
      CHECK_FALSE(maria.prepared);
      break;
  }
}

}  // namespace

TEST_CASE("a crash at every point of the two-phase protocol leaves a state the decision log explains") {
  create_bank();
  const test::server_env& servers = test::servers();  // read before forking; the child inherits it
  int run_number = 0;
  for (const crash_case& c : crash_cases) {
    ++run_number;
    const std::string point = c.crash_at;
    CAPTURE(point);
    temp_dir dir;
    child_plan plan;
    plan.crash_at = c.crash_at;
    plan.tm_id = "crash-" + std::to_string(::getpid()) + "-" + std::to_string(run_number);
    plan.log_path = (dir.path / "decisions.db").string();
    plan.pg_conninfo = servers.pg;
    plan.maria_conninfo = servers.mysql;
    plan.account = run_number;
    plan.token = plan.tm_id;
    REQUIRE(run_number <= account_count);

    const child_result child = run_in_child(plan);
    INFO("child: " << child.how());
    if (c.dies) {
      CHECK_MESSAGE(child.killed(),
                    "the child was not killed at " << point << ": is libxatm built with -DXATM_CRASH_POINTS=ON?");
    } else {
      CHECK(child.exited_ok());
    }
    REQUIRE_FALSE(child.gtrid.empty());
    CHECK(child.last_line().rfind(c.last_line, 0) == 0);

    // The log file: the decision iff the crash came after it was durable.
    const auto decisions = decisions_in_log(plan.log_path);
    if (c.decision_logged) {
      CHECK(decisions == std::vector<std::string>{child.gtrid});
    } else {
      CHECK(decisions.empty());
    }

    // The servers, before anyone touches them.
    auto pg = open_pg();
    auto maria = open_maria();
    check_leftover(c.left, look_at(*pg, child.gtrid, plan.token), look_at(*maria, child.gtrid, plan.token));

    // Clean up as recovery will, then both databases must agree with the log.
    resolve_leftovers(*pg, plan.tm_id, c.decision_logged);
    resolve_leftovers(*maria, plan.tm_id, c.decision_logged);
    const bool committed = c.decision_logged || !c.dies;
    const branch_view pg_after = look_at(*pg, child.gtrid, plan.token);
    const branch_view maria_after = look_at(*maria, child.gtrid, plan.token);
    CHECK_FALSE(pg_after.prepared);
    CHECK_FALSE(maria_after.prepared);
    CHECK(pg_after.committed == committed);
    CHECK(maria_after.committed == committed);
    const std::string balance =
        std::string("SELECT balance FROM ") + accounts + " WHERE id = " + std::to_string(plan.account);
    CHECK(std::stol(single_value(*pg, balance)) == initial_balance - (committed ? amount : 0));
    CHECK(std::stol(single_value(*maria, balance)) == initial_balance + (committed ? amount : 0));
  }
}
