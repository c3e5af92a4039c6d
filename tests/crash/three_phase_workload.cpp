// xatm-3pc-workload: the coordinator that the three-phase crash tests kill, freeze and race
// (three_phase_crash_test.cpp). It opens a transaction manager in three-phase mode, registers
// PostgreSQL ("pg", the arbiter: always enlisted first) and MariaDB ("maria"), and runs transfers
// of the crash bank (support/invariants.h) on several threads until it has done its share, dies
// or freezes at a crash point (XATM_CRASH_AT), or is killed by the test.
//
//   xatm-3pc-workload --tm-id ID --log PATH --ack PATH --tables SUFFIX
//                     [--first-account A] [--accounts N] [--threads T]
//                     [--transfers N (per thread; 0: until killed)] [--token-prefix P]
//                     [--doom-every K]
//   connection strings: $XATM_CRASH_PG and $XATM_CRASH_MARIA (kept off the command line)
//
// The ack file has the format read_acks() reads: `<token> begun <gtrid>` before the branches
// start, `<token> <outcome> <gtrid>` as soon as commit() returns or throws, `# ready <pid>` once
// the startup recovery is done and `# maria_connection <id>` for each MariaDB session. One more
// comment line, `# why <token> <what()>`, keeps the message of a commit() that threw, so that a
// test can check what a coordinator that lost the race to a terminator said. One write() per
// line (O_APPEND): what the process acknowledged survives its death.
// Accounts [A, A+N) only: concurrent workloads on disjoint ranges never wait for each other's
// locks, even when one of them is frozen with its branches prepared.
// --doom-every K: every K-th transfer writes a PostgreSQL ledger row for account 0, which the
// deferred foreign key refuses at PREPARE (CanCommit): an acknowledged rollback.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "console_log.h"
#include "support/invariants.h"
#include "xatm/error.h"
#include "xatm/transaction_manager.h"

namespace {

using xatm::test::ack_state;

struct options {
  std::string tm_id;
  std::string log_path;
  std::string ack_path;
  std::string tables;
  int first_account = 1;
  int accounts = 16;
  int threads = 1;
  long transfers = 0;
  std::string token_prefix = "t";
  int doom_every = 0;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "xatm-3pc-workload: " << why << " (see the comment at the top of three_phase_workload.cpp)\n";
  std::exit(2);
}

options parse(int argc, char** argv) {
  options parsed;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--tm-id") parsed.tm_id = next();
    else if (arg == "--log") parsed.log_path = next();
    else if (arg == "--ack") parsed.ack_path = next();
    else if (arg == "--tables") parsed.tables = next();
    else if (arg == "--first-account") parsed.first_account = std::stoi(next());
    else if (arg == "--accounts") parsed.accounts = std::stoi(next());
    else if (arg == "--threads") parsed.threads = std::stoi(next());
    else if (arg == "--transfers") parsed.transfers = std::stol(next());
    else if (arg == "--token-prefix") parsed.token_prefix = next();
    else if (arg == "--doom-every") parsed.doom_every = std::stoi(next());
    else usage("unknown argument " + arg);
  }
  if (parsed.tm_id.empty() || parsed.log_path.empty() || parsed.ack_path.empty() || parsed.tables.empty()) {
    usage("--tm-id, --log, --ack and --tables are required");
  }
  return parsed;
}

std::string required_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') usage(std::string("$") + name + " must hold a connection string");
  return value;
}

class ack_file {
 public:
  explicit ack_file(const std::string& path)
      : fd_(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) {
    if (fd_ < 0) usage("cannot open the ack file: " + std::string(std::strerror(errno)));
  }
  ~ack_file() { ::close(fd_); }
  ack_file(const ack_file&) = delete;
  ack_file& operator=(const ack_file&) = delete;

  void write_line(std::string line) const {
    for (char& c : line) {
      if (c == '\n') c = ' ';  // one record per line, whatever a message holds
    }
    line += '\n';
    if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      std::cerr << "xatm-3pc-workload: short write to the ack file: " << std::strerror(errno) << "\n";
      std::abort();  // an unrecorded acknowledgement would make the test's verdict meaningless
    }
  }
  void ack(const std::string& token, ack_state state, const std::string& gtrid) const {
    write_line(token + " " + xatm::test::ack_state_name(state) + " " + gtrid);
  }
  void ack(const std::string& token, ack_state state, const std::string& gtrid, const std::exception& why) const {
    write_line("# why " + token + " " + why.what());
    ack(token, state, gtrid);
  }

 private:
  int fd_;
};

// One transfer: debit on PostgreSQL, credit on MariaDB, the same ledger token on both. The
// arbiter is branch 1's RM, so PostgreSQL is enlisted first.
void transfer(xatm::transaction_manager& tm, xatm::resource_manager& pg, xatm::resource_manager& maria,
              const options& opts, const ack_file& acks, const std::string& token, int from, int to, long amount,
              bool doomed) {
  const std::string accounts = "crash_" + opts.tables + "_accounts";
  const std::string ledger = "crash_" + opts.tables + "_ledger";
  auto tx = tm.begin(xatm::commit_protocol::three_phase);
  const std::string gtrid = tx.gtrid();
  acks.ack(token, ack_state::begun, gtrid);
  try {
    tx.enlist(pg);
    tx.enlist(maria);
    pg.exec("UPDATE " + accounts + " SET balance = balance - " + std::to_string(amount) +
            " WHERE id = " + std::to_string(from)).value();
    pg.exec("INSERT INTO " + ledger + " VALUES ('" + token + "', " + std::to_string(doomed ? 0 : from) + ", -" +
            std::to_string(amount) + ")").value();
    maria.exec("UPDATE " + accounts + " SET balance = balance + " + std::to_string(amount) +
               " WHERE id = " + std::to_string(to)).value();
    maria.exec("INSERT INTO " + ledger + " VALUES ('" + token + "', " + std::to_string(to) + ", " +
               std::to_string(amount) + ")").value();
  } catch (const std::exception& e) {
    acks.ack(token, ack_state::aborted, gtrid, e);  // tx's destructor rolls back: never prepared
    throw;
  }
  try {
    const auto outcome = tx.commit();
    acks.ack(token, outcome == xatm::commit_outcome::committed ? ack_state::committed : ack_state::pending, gtrid);
  } catch (const xatm::rolled_back_error& e) {
    acks.ack(token, ack_state::rolled_back, gtrid, e);
  } catch (const xatm::timeout_error& e) {
    acks.ack(token, ack_state::rolled_back, gtrid, e);
  } catch (const xatm::in_doubt_error& e) {
    acks.ack(token, ack_state::in_doubt, gtrid, e);
  } catch (const xatm::heuristic_error& e) {
    acks.ack(token, ack_state::heuristic, gtrid, e);
  } catch (const xatm::log_failure_error& e) {
    acks.ack(token, ack_state::log_failure, gtrid, e);
  } catch (const std::exception& e) {
    acks.ack(token, ack_state::unknown, gtrid, e);
  }
}

void run_worker(xatm::transaction_manager& tm, const options& opts, const ack_file& acks, int thread) {
  std::mt19937 random(static_cast<unsigned>(::getpid()) * 7919U + static_cast<unsigned>(thread));
  std::uniform_int_distribution<int> account(opts.first_account, opts.first_account + opts.accounts - 1);
  std::uniform_int_distribution<long> amount(1, 9);
  std::unique_ptr<xatm::resource_manager> pg;
  std::unique_ptr<xatm::resource_manager> maria;
  for (long i = 0; opts.transfers == 0 || i < opts.transfers; ++i) {
    const std::string token = opts.token_prefix + "-" + std::to_string(thread) + "-" + std::to_string(i);
    const bool doomed = opts.doom_every > 0 && i % opts.doom_every == opts.doom_every - 1;
    try {
      if (!pg) {
        pg = tm.connect("pg");
        pg->exec("SET lock_timeout = '5s'").value();  // never stall behind a prepared branch's lock
      }
      if (!maria) {
        maria = tm.connect("maria");
        maria->exec("SET SESSION innodb_lock_wait_timeout = 5").value();
        acks.write_line("# maria_connection " + maria->exec("SELECT CONNECTION_ID()").value().rows.at(0).at(0).value());
      }
      transfer(tm, *pg, *maria, opts, acks, token, account(random), account(random), amount(random), doomed);
      continue;
    } catch (const std::exception& e) {
      std::cerr << "xatm-3pc-workload: " << token << ": " << e.what() << "\n";
    }
    // After a failure before commit(): fresh connections (a server may have gone away).
    pg.reset();
    maria.reset();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const options opts = parse(argc, argv);
  const char* level = std::getenv("XATM_WORKLOAD_LOG");
  xatm::tools::install_console_log(level != nullptr ? level : "error");
  const ack_file acks(opts.ack_path);
  try {
    xatm::tm_options tm_options;
    tm_options.tm_id = opts.tm_id;
    tm_options.log_path = opts.log_path;
    tm_options.protocol = xatm::commit_protocol::three_phase;
    tm_options.prepare_timeout = std::chrono::seconds(5);
    tm_options.commit_retry_window = std::chrono::seconds(1);
    // Only the startup recovery runs, and it never terminates anybody: the tests' terminators do.
    tm_options.recovery_interval = std::chrono::milliseconds(0);
    tm_options.precommit_timeout = std::chrono::hours(1);
    xatm::transaction_manager tm(tm_options);
    tm.register_rm("pg", "postgresql", required_env("XATM_CRASH_PG"));
    tm.register_rm("maria", "mariadb", required_env("XATM_CRASH_MARIA"));
    tm.begin().rollback();  // the first begin() runs the startup recovery
    acks.write_line("# ready " + std::to_string(::getpid()));
    std::vector<std::thread> workers;
    for (int t = 0; t < opts.threads; ++t) {
      workers.emplace_back([&, t] { run_worker(tm, opts, acks, t); });
    }
    for (auto& worker : workers) worker.join();
  } catch (const std::exception& e) {
    std::cerr << "xatm-3pc-workload: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
