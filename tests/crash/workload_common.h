// crash/workload_common.h: what the two workload processes (crash_workload.cpp,
// marker_workload.cpp) share: the command line's common options, the connection strings
// from the environment, the ack file, the transfer SQL of the crash bank, and the sessions a
// worker opens. Each program keeps its own options, protocol and error handling.
#pragma once

#include <functional>
#include <memory>
#include <random>
#include <string>

#include "support/invariants.h"
#include "xatm/transaction_manager.h"

namespace xatm::workload {

// Names the program in messages: `name` (e.g. "xatm-crash-workload") and the source file whose
// top comment documents its command line. Call first thing in main().
void set_program(std::string name, std::string source);
const std::string& program_name();

// Prints `<program>: <why>` and a pointer to the documentation, and exits with status 2.
[[noreturn]] void usage(const std::string& why);

// The options every workload takes: --tm-id ID --log PATH --ack PATH --tables SUFFIX (required),
// [--threads T] [--transfers N] [--token-prefix P] [--doom-every K].
struct common_options {
  std::string tm_id;
  std::string log_path;
  std::string ack_path;
  std::string tables;
  int threads = 1;
  long transfers = 0;  // per thread; 0: until killed
  std::string token_prefix = "t";
  int doom_every = 0;
};

// Takes one program-specific argument: returns false when `arg` is not one of its own;
// `next()` returns the argument's value (usage() when there is none).
using extra_argument = std::function<bool(const std::string& arg, const std::function<std::string()>& next)>;

// Parses argv into `parsed`, giving what is not a common option to `extra`; usage() on an unknown
// argument, a missing value or a missing required option.
void parse_arguments(int argc, char** argv, common_options& parsed, const extra_argument& extra);

// The value of an environment variable that must hold a connection string (usage() otherwise).
std::string required_env(const char* name);

// The ack file (the format read_acks() reads): one write() per line, O_APPEND, so lines from
// several threads never interleave and everything written survives a SIGKILL. A newline inside a
// line is written as a space: one record per line, whatever a message holds.
class ack_file {
 public:
  explicit ack_file(const std::string& path);
  ~ack_file();
  ack_file(const ack_file&) = delete;
  ack_file& operator=(const ack_file&) = delete;

  // Aborts the process on a short write: an unrecorded acknowledgement would make the test's
  // verdict meaningless.
  void write_line(std::string line) const;
  // `<token> <state> <gtrid>`.
  void ack(const std::string& token, test::ack_state state, const std::string& gtrid) const;
  // `# why <token> <what()>`, then `<token> <state> <gtrid>`.
  void ack(const std::string& token, test::ack_state state, const std::string& gtrid, const std::exception& why) const;

 private:
  int fd_;
};

// The rest of both programs' main(): opens the ack file, has `start` make the TM ready (RMs
// registered, the startup recovery run), writes "# ready <pid>", runs opts.threads workers
// `work(tm, acks, thread)`, and answers the exit status: 1, with the message, when anything threw.
int run_workers(const common_options& opts, const std::function<std::unique_ptr<transaction_manager>()>& start,
                const std::function<void(transaction_manager&, const ack_file&, int)>& work);

// The SQL of one transfer on the crash bank's tables (test::transfer_bank) `crash_<tables>_*`.
struct transfer_sql {
  std::string accounts;
  std::string ledger;

  explicit transfer_sql(const std::string& tables);
  std::string debit(int account, long amount) const;
  std::string credit(int account, long amount) const;
  std::string ledger_row(const std::string& token, int account, long amount) const;
};

// A worker's random source: apart per process and per thread.
std::mt19937 worker_random(int thread);
// The ledger token of a worker's i-th transfer: `<prefix>-<thread>-<i>`.
std::string transfer_token(const std::string& prefix, int thread, long i);
// --doom-every K: every K-th transfer is refused at PREPARE (a ledger row for account 0).
bool doomed_transfer(int doom_every, long i);

// A session with the RM "pg" that gives up on a row lock after 5 s, so that a lock held by a
// branch left prepared (until recovery) never stalls the worker.
std::unique_ptr<connection> open_pg_session(transaction_manager& tm);
// A session with the RM "maria" likewise; writes `# maria_connection <id>` to the ack file.
std::unique_ptr<connection> open_maria_session(transaction_manager& tm, const ack_file& acks);

// One transfer of a worker on its sessions: `amount` from account `from` to account `to`.
using transfer_fn = std::function<void(connection& pg, connection& maria, const std::string& token, int from, int to,
                                       long amount, bool doomed)>;
// A worker's loop: opts.transfers transfers (0: until killed) between random accounts of
// first..last, each by `one`; after a failure (logged on stderr) fresh sessions, since a server
// may have gone away.
void run_transfer_loop(transaction_manager& tm, const common_options& opts, const ack_file& acks, int thread,
                       int first_account, int last_account, const transfer_fn& one);

}  // namespace xatm::workload
