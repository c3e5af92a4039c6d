// crash/workload_common.cpp: see workload_common.h.
#include "crash/workload_common.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <thread>
#include <vector>

namespace xatm::workload {

namespace {

std::string& program_storage() {
  static std::string name = "xatm-workload";
  return name;
}

std::string& source_storage() {
  static std::string source = "workload_common.h";
  return source;
}

}  // namespace

void set_program(std::string name, std::string source) {
  program_storage() = std::move(name);
  source_storage() = std::move(source);
}

const std::string& program_name() { return program_storage(); }

void usage(const std::string& why) {
  std::cerr << program_name() << ": " << why << " (see the comment at the top of " << source_storage() << ")\n";
  std::exit(2);
}

void parse_arguments(int argc, char** argv, common_options& parsed, const extra_argument& extra) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const std::function<std::string()> next = [&]() -> std::string {
      if (i + 1 >= argc) usage(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--tm-id")
      parsed.tm_id = next();
    else if (arg == "--log")
      parsed.log_path = next();
    else if (arg == "--ack")
      parsed.ack_path = next();
    else if (arg == "--tables")
      parsed.tables = next();
    else if (arg == "--threads")
      parsed.threads = std::stoi(next());
    else if (arg == "--transfers")
      parsed.transfers = std::stol(next());
    else if (arg == "--token-prefix")
      parsed.token_prefix = next();
    else if (arg == "--doom-every")
      parsed.doom_every = std::stoi(next());
    else if (!extra || !extra(arg, next))
      usage("unknown argument " + arg);
  }
  if (parsed.tm_id.empty() || parsed.log_path.empty() || parsed.ack_path.empty() || parsed.tables.empty()) {
    usage("--tm-id, --log, --ack and --tables are required");
  }
}

std::string required_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') usage(std::string("$") + name + " must hold a connection string");
  return value;
}

ack_file::ack_file(const std::string& path)
    : fd_(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) {
  if (fd_ < 0) usage("cannot open the ack file: " + std::string(std::strerror(errno)));
}

ack_file::~ack_file() { ::close(fd_); }

void ack_file::write_line(std::string line) const {
  for (char& c : line) {
    if (c == '\n') c = ' ';
  }
  line += '\n';
  if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    std::cerr << program_name() << ": short write to the ack file: " << std::strerror(errno) << "\n";
    std::abort();
  }
}

void ack_file::ack(const std::string& token, test::ack_state state, const std::string& gtrid) const {
  write_line(token + " " + test::ack_state_name(state) + " " + gtrid);
}

void ack_file::ack(const std::string& token, test::ack_state state, const std::string& gtrid,
                   const std::exception& why) const {
  write_line("# why " + token + " " + why.what());
  ack(token, state, gtrid);
}

int run_workers(const common_options& opts, const std::function<std::unique_ptr<transaction_manager>()>& start,
                const std::function<void(transaction_manager&, const ack_file&, int)>& work) {
  const ack_file acks(opts.ack_path);
  try {
    const std::unique_ptr<transaction_manager> tm = start();
    acks.write_line("# ready " + std::to_string(::getpid()));
    std::vector<std::thread> workers;
    for (int t = 0; t < opts.threads; ++t) {
      workers.emplace_back([&, t] { work(*tm, acks, t); });
    }
    for (auto& worker : workers) worker.join();
  } catch (const std::exception& e) {
    std::cerr << program_name() << ": " << e.what() << "\n";
    return 1;
  }
  return 0;
}

transfer_sql::transfer_sql(const std::string& tables) {
  test::transfer_bank bank;
  bank.suffix = tables;
  accounts = bank.accounts_table();
  ledger = bank.ledger_table();
}

std::string transfer_sql::debit(int account, long amount) const {
  return "UPDATE " + accounts + " SET balance = balance - " + std::to_string(amount) +
         " WHERE id = " + std::to_string(account);
}

std::string transfer_sql::credit(int account, long amount) const {
  return "UPDATE " + accounts + " SET balance = balance + " + std::to_string(amount) +
         " WHERE id = " + std::to_string(account);
}

std::string transfer_sql::ledger_row(const std::string& token, int account, long amount) const {
  return "INSERT INTO " + ledger + " VALUES ('" + token + "', " + std::to_string(account) + ", " +
         std::to_string(amount) + ")";
}

std::mt19937 worker_random(int thread) {
  return std::mt19937(static_cast<unsigned>(::getpid()) * 7919U + static_cast<unsigned>(thread));
}

std::string transfer_token(const std::string& prefix, int thread, long i) {
  return prefix + "-" + std::to_string(thread) + "-" + std::to_string(i);
}

bool doomed_transfer(int doom_every, long i) { return doom_every > 0 && i % doom_every == doom_every - 1; }

std::unique_ptr<connection> open_pg_session(transaction_manager& tm) {
  auto pg = tm.connect("pg");
  pg->exec("SET lock_timeout = '5s'").value();
  return pg;
}

std::unique_ptr<connection> open_maria_session(transaction_manager& tm, const ack_file& acks) {
  auto maria = tm.connect("maria");
  maria->exec("SET SESSION innodb_lock_wait_timeout = 5").value();
  acks.write_line("# maria_connection " + maria->exec("SELECT CONNECTION_ID()").value().rows.at(0).at(0).value());
  return maria;
}

void run_transfer_loop(transaction_manager& tm, const common_options& opts, const ack_file& acks, int thread,
                       int first_account, int last_account, const transfer_fn& one) {
  auto random = worker_random(thread);
  std::uniform_int_distribution<int> account(first_account, last_account);
  std::uniform_int_distribution<long> amount(1, 9);
  std::unique_ptr<connection> pg;
  std::unique_ptr<connection> maria;
  for (long i = 0; opts.transfers == 0 || i < opts.transfers; ++i) {
    const std::string token = transfer_token(opts.token_prefix, thread, i);
    const bool doomed = doomed_transfer(opts.doom_every, i);
    try {
      if (!pg) pg = open_pg_session(tm);
      if (!maria) maria = open_maria_session(tm, acks);
      const int from = account(random);
      const int to = account(random);
      one(*pg, *maria, token, from, to, amount(random), doomed);
      continue;
    } catch (const std::exception& e) {
      std::cerr << program_name() << ": " << token << ": " << e.what() << "\n";
    }
    pg.reset();
    maria.reset();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace xatm::workload
