// xatm-example-wallet: the wallet service of the order example, a TCC participant (xatm/tcc.h)
// in a process of its own. An order service enlists it with make_http_participant(URL) and a
// payload `account=<name>;amount=<n>`; the wallet reserves the amount in try, takes it in
// confirm and releases it in cancel. tcc_barrier makes duplicates, a cancel without a try and a
// try after its cancel harmless; this file holds only the HTTP plumbing and the business rules.
//
//   xatm-example-wallet --db DIALECT:CONNINFO --state-dir DIR [--host 127.0.0.1] [--port N]
//
// DIALECT is postgresql or mariadb (or mysql). DIR holds the wallet's own transaction manager's
// decision log (tm_id "wallet"; the barrier never writes it, but every TM has one). Port 0 picks
// a free port. Once it serves, it prints one line `wallet listening on HOST:PORT` on stdout.
// Endpoints:
//   POST /try, /confirm, /cancel   headers Xatm-Gtrid, Xatm-Branch, Xatm-Participant; body
//                                  account=<name>;amount=<n>. 200 done (body: what the barrier
//                                  did), 409 refused (why), 400 bad request, 421 the branch
//                                  belongs to another database (Xatm-Expect-Identity), 404 a
//                                  confirm whose try never ran here, 500 an
//                                  error. Answers from the database carry Xatm-Identity.
//   POST /accounts                 body account=<name>;balance=<n>: creates or resets an account
//   GET  /accounts/<name>          balance=<b>;reserved=<r>, or 404
//   GET  /health                   ok
//   GET  /identity                 the identity of the wallet's database
// Each step's answer is logged on stderr, one line each; XATM_WALLET_LOG_LEVEL (default warning)
// sets the level of xatm's own log lines there. XATM_WALLET_DELAY_TRY_MS=<ms> delays every try
// (to show a try that arrives after its cancel). SIGTERM or SIGINT stops it cleanly (exit 0);
// exit 1: it could not start or serve; exit 2: a bad command line or configuration.
#include <httplib.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "console_log.h"
#include "xatm/error.h"
#include "xatm/tcc.h"
#include "xatm/transaction_manager.h"

namespace {

constexpr int exit_failure = 1;  // could not start or serve (database unreachable, port taken)
constexpr int exit_usage = 2;    // bad command line or configuration (a malformed connection string)

constexpr const char* usage_text =
    "usage: xatm-example-wallet --db DIALECT:CONNINFO --state-dir DIR [--host HOST] [--port N]\n"
    "  --db         postgresql:'host=... dbname=... user=...' or mariadb:'unix_socket=... user=...'\n"
    "  --state-dir  directory of the wallet's own decision log (created 0700 if missing)\n"
    "  --host       address to listen on (default 127.0.0.1)\n"
    "  --port       port to listen on (default 0: any free port)\n";

constexpr std::string_view rm_name = "wallet";

struct options {
  std::string dialect;
  std::string conninfo;  // may hold a password: never printed
  std::filesystem::path state_dir;
  std::string host = "127.0.0.1";
  int port = 0;
  std::chrono::milliseconds try_delay{0};
};

std::optional<std::uint64_t> parse_decimal(std::string_view text, std::size_t max_digits = 18) {
  if (text.empty() || text.size() > max_digits) return std::nullopt;
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Names reach SQL as literals (exec() takes no parameters), so they are held to characters that
// need no quoting: the same alphabet as gtrids.
bool is_name(std::string_view text, std::size_t max_size) {
  return !text.empty() && text.size() <= max_size && std::all_of(text.begin(), text.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '.' || c == '-';
  });
}

// The command line; nullopt after printing why (never the value of --db: it may hold a password).
std::optional<options> parse_command_line(int argc, char** argv) {
  options parsed;
  auto fail = [](const std::string& why) -> std::optional<options> {
    std::cerr << "xatm-example-wallet: " << why << "\n" << usage_text;
    return std::nullopt;
  };
  bool have_db = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) return fail("option #" + std::to_string(i) + " needs a value (or is unknown)");
    const std::string_view value = argv[++i];
    if (arg == "--db") {
      const std::size_t colon = value.find(':');
      if (colon == std::string_view::npos) return fail("--db needs DIALECT:CONNINFO");
      parsed.dialect = std::string(value.substr(0, colon));
      parsed.conninfo = std::string(value.substr(colon + 1));
      if (parsed.dialect != "postgresql" && parsed.dialect != "mariadb" && parsed.dialect != "mysql") {
        return fail("--db: the dialect must be postgresql, mariadb or mysql");
      }
      have_db = true;
    } else if (arg == "--state-dir") {
      if (value.empty()) return fail("--state-dir needs a directory");
      parsed.state_dir = std::string(value);
    } else if (arg == "--host") {
      if (value.empty()) return fail("--host needs an address");
      parsed.host = std::string(value);
    } else if (arg == "--port") {
      const auto port = parse_decimal(value, 5);
      if (!port || *port > 65535) return fail("--port needs a number from 0 to 65535");
      parsed.port = static_cast<int>(*port);
    } else {
      return fail("unknown option #" + std::to_string(i - 1));  // not echoed: it may be a secret
    }
  }
  if (!have_db) return fail("--db is required");
  if (parsed.state_dir.empty()) return fail("--state-dir is required");
  if (const char* delay = std::getenv("XATM_WALLET_DELAY_TRY_MS"); delay != nullptr && *delay != '\0') {
    const auto ms = parse_decimal(delay, 7);
    if (!ms) return fail("XATM_WALLET_DELAY_TRY_MS must be a number of milliseconds");
    parsed.try_delay = std::chrono::milliseconds(*ms);
  }
  return parsed;
}

// ---- requests ---------------------------------------------------------------------------------

// A request the wallet refuses before any database work: answered 400 with `what()`.
struct bad_request : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The business's "no" (insufficient funds, no such account): the barrier rolls back, answer 409.
struct business_refusal : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// `account=<name>;<number_key>=<n>`, the fields in that order: the payload of a step
// (number_key "amount", n > 0) and the body of POST /accounts ("balance", n >= 0).
struct account_change {
  std::string account;
  std::int64_t number = 0;
};

account_change parse_account_change(std::string_view body, std::string_view number_key) {
  const std::string expected = "account=<name>;" + std::string(number_key) + "=<n>";
  const std::size_t separator = body.find(';');
  if (separator == std::string_view::npos) throw bad_request("the body must be " + expected);
  const std::string_view first = body.substr(0, separator);
  const std::string_view second = body.substr(separator + 1);
  const std::string account_prefix = "account=";
  const std::string number_prefix = std::string(number_key) + "=";
  if (!first.starts_with(account_prefix) || !second.starts_with(number_prefix)) {
    throw bad_request("the body must be " + expected);
  }
  account_change change;
  change.account = std::string(first.substr(account_prefix.size()));
  if (!is_name(change.account, 64)) throw bad_request("the account must be 1 to 64 of [A-Za-z0-9_.-]");
  const auto number = parse_decimal(second.substr(number_prefix.size()));
  if (!number) throw bad_request(std::string(number_key) + " must be a decimal number of at most 18 digits");
  change.number = static_cast<std::int64_t>(*number);
  return change;
}

// The branch a step is for, from the headers make_http_participant() sends.
xatm::tcc_request parse_tcc_request(const httplib::Request& http) {
  auto header = [&http](const char* name) {
    if (!http.has_header(name)) throw bad_request(std::string("missing header ") + name);
    return http.get_header_value(name);
  };
  xatm::tcc_request request;
  request.gtrid = header("Xatm-Gtrid");
  if (!is_name(request.gtrid, 64)) throw bad_request("Xatm-Gtrid must be 1 to 64 of [A-Za-z0-9_.-]");
  const auto branch = parse_decimal(header("Xatm-Branch"), 10);
  if (!branch || *branch == 0 || *branch > 2147483647) throw bad_request("Xatm-Branch must be a number 1..2147483647");
  request.branch = static_cast<std::uint32_t>(*branch);
  request.participant = header("Xatm-Participant");
  if (!is_name(request.participant, 48) || request.participant.find('.') != std::string::npos) {
    throw bad_request("Xatm-Participant must be 1 to 48 of [A-Za-z0-9_-]");
  }
  if (http.has_header("Xatm-Expect-Identity")) {
    request.identity = http.get_header_value("Xatm-Expect-Identity");
    if (!is_name(request.identity, 64)) throw bad_request("Xatm-Expect-Identity must be 1 to 64 of [A-Za-z0-9_.-]");
  }
  request.payload = http.body;
  return request;
}

// ---- the business: one table of accounts ------------------------------------------------------

std::string accounts_schema(std::string_view dialect) {
  std::string sql =
      "CREATE TABLE IF NOT EXISTS wallet_accounts (account varchar(64) PRIMARY KEY, balance bigint NOT NULL, "
      "reserved bigint NOT NULL)";
  if (dialect != "postgresql") sql += " ENGINE=InnoDB";
  return sql;
}

std::uint64_t exec_count(xatm::connection& db, const std::string& sql) { return db.exec(sql).value().affected_rows; }

bool account_exists(xatm::connection& db, const std::string& account) {
  return !db.exec("SELECT 1 FROM wallet_accounts WHERE account = '" + account + "'").value().rows.empty();
}

// The business code of each step, run by tcc_barrier inside its transaction. Every UPDATE
// checks its own precondition in its WHERE clause, so two steps of different branches on the
// same account cannot both pass a check made before either wrote.
void reserve(xatm::connection& db, const account_change& change) {
  const std::string n = std::to_string(change.number);
  if (exec_count(db, "UPDATE wallet_accounts SET reserved = reserved + " + n + " WHERE account = '" + change.account +
                         "' AND balance - reserved >= " + n) == 1) {
    return;
  }
  throw business_refusal(account_exists(db, change.account) ? "insufficient funds" : "no such account");
}

void take(xatm::connection& db, const account_change& change) {
  const std::string n = std::to_string(change.number);
  if (exec_count(db, "UPDATE wallet_accounts SET balance = balance - " + n + ", reserved = reserved - " + n +
                         " WHERE account = '" + change.account + "' AND reserved >= " + n) != 1) {
    // The barrier ran this try, so the reservation must be there: data changed behind our back.
    throw std::runtime_error("no reservation of " + n + " on account " + change.account + " to confirm");
  }
}

void release(xatm::connection& db, const account_change& change) {
  const std::string n = std::to_string(change.number);
  if (exec_count(db, "UPDATE wallet_accounts SET reserved = reserved - " + n + " WHERE account = '" + change.account +
                         "' AND reserved >= " + n) != 1) {
    throw std::runtime_error("no reservation of " + n + " on account " + change.account + " to cancel");
  }
}

// ---- connections ------------------------------------------------------------------------------

// Idle connections to the wallet's database. A connection is used by one thread at a time, so
// each request leases one (or opens one) and gives it back when it is done with it; one that
// saw an exception or lost its server is dropped rather than trusted again.
class connection_pool {
 public:
  connection_pool(xatm::transaction_manager& tm, std::string_view rm) : tm_(tm), rm_(rm) {}

  template <class Work>
  auto with_connection(Work&& work) {
    std::unique_ptr<xatm::connection> db = take();
    auto result = work(*db);  // on an exception `db` is dropped
    give_back(std::move(db));
    return result;
  }

 private:
  std::unique_ptr<xatm::connection> take() {
    {
      std::lock_guard lock(mutex_);
      if (!idle_.empty()) {
        auto db = std::move(idle_.back());
        idle_.pop_back();
        return db;
      }
    }
    return tm_.connect(rm_);  // outside the lock: connecting takes a round trip or more
  }
  void give_back(std::unique_ptr<xatm::connection> db) {
    if (!db->connected()) return;
    std::lock_guard lock(mutex_);
    idle_.push_back(std::move(db));
  }

  xatm::transaction_manager& tm_;
  std::string rm_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<xatm::connection>> idle_;
};

// ---- the service ------------------------------------------------------------------------------

class wallet_service {
 public:
  wallet_service(xatm::transaction_manager& tm, const options& opts)
      : pool_(tm, rm_name), barrier_(tm, std::string(rm_name)), dialect_(opts.dialect), try_delay_(opts.try_delay) {}

  void add_routes(httplib::Server& server) {
    const std::pair<const char*, xatm::tcc_step> steps[] = {
        {"/try", xatm::tcc_step::try_}, {"/confirm", xatm::tcc_step::confirm}, {"/cancel", xatm::tcc_step::cancel}};
    for (const auto& [path, step] : steps) {
      server.Post(path, [this, step = step](const httplib::Request& req, httplib::Response& res) {
        respond(res, [&] { return run_step(step, req); });
      });
    }
    server.Post("/accounts", [this](const httplib::Request& req, httplib::Response& res) {
      respond(res, [&] { return put_account(req.body); });
    });
    server.Get(R"(/accounts/([A-Za-z0-9_.\-]{1,64}))", [this](const httplib::Request& req, httplib::Response& res) {
      respond(res, [&] { return get_account(req.matches[1].str()); });
    });
    server.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok", "text/plain"); });
    // The identity of the wallet's database (xatm-recover --repin asks it).
    server.Get("/identity", [this](const httplib::Request&, httplib::Response& res) {
      respond(res, [&] {
        return reply{200, pool_.with_connection([&](xatm::connection& db) { return barrier_.identity(db); })};
      });
    });
  }

 private:
  struct reply {
    reply() = default;
    reply(int status_code, std::string text) : status(status_code), body(std::move(text)) {}
    int status = 200;
    std::string body;
    std::string identity;  // the Xatm-Identity header: this wallet's database
  };

  // Every handler answers through here: its exceptions become statuses.
  template <class Handler>
  static void respond(httplib::Response& res, Handler&& handler) {
    reply answer;
    try {
      answer = handler();
    } catch (const bad_request& e) {
      answer = {400, e.what()};
    } catch (const business_refusal& e) {
      answer = {409, e.what()};
    } catch (const std::exception& e) {  // xatm::error included: its message holds no password
      answer = {500, e.what()};
    }
    res.status = answer.status;
    if (!answer.identity.empty()) res.set_header("Xatm-Identity", answer.identity);
    res.set_content(answer.body, "text/plain");
  }

  reply run_step(xatm::tcc_step step, const httplib::Request& http) {
    // Everything is checked before the database is touched.
    const xatm::tcc_request request = parse_tcc_request(http);
    const account_change change = parse_account_change(request.payload, "amount");
    if (change.number <= 0) throw bad_request("amount must be at least 1");
    if (step == xatm::tcc_step::try_ && try_delay_.count() > 0) std::this_thread::sleep_for(try_delay_);

    reply answer;
    try {
      const xatm::barrier_outcome outcome = pool_.with_connection([&](xatm::connection& db) {
        answer.identity = barrier_.identity(db);
        return barrier_.run(db, step, request, [&](xatm::connection& business_db) {
          switch (step) {
            case xatm::tcc_step::try_: reserve(business_db, change); break;
            case xatm::tcc_step::confirm: take(business_db, change); break;
            case xatm::tcc_step::cancel: release(business_db, change); break;
          }
        });
      });
      switch (xatm::answer_for(outcome)) {
        case xatm::tcc_answer::done: answer.status = 200; break;
        case xatm::tcc_answer::refused: answer.status = 409; break;
        case xatm::tcc_answer::failed:  // not this wallet's branch: never 409, which would read as final
          answer.status = outcome == xatm::barrier_outcome::wrong_database ? 421 : 404;
          break;
      }
      answer.body = xatm::barrier_outcome_name(outcome);
      if (outcome == xatm::barrier_outcome::wrong_database) {
        answer.body += ": this wallet's database is " + answer.identity + ", the coordinator expects " + request.identity;
      }
    } catch (const business_refusal& e) {
      // A try the business refuses is a no vote. A confirm or cancel must not be refused by the
      // business (refused means "the other step ran" to the coordinator): failed, retried.
      answer.status = step == xatm::tcc_step::try_ ? 409 : 500;
      answer.body = e.what();
    } catch (const std::exception& e) {
      answer.status = 500;
      answer.body = e.what();
    }
    log_step(step, request, answer);
    return answer;
  }

  reply put_account(const std::string& body) {
    const account_change account = parse_account_change(body, "balance");
    const std::string balance = std::to_string(account.number);
    const std::string sql =
        "INSERT INTO wallet_accounts (account, balance, reserved) VALUES ('" + account.account + "', " + balance +
        ", 0) " +
        (dialect_ == "postgresql" ? "ON CONFLICT (account) DO UPDATE SET balance = EXCLUDED.balance, reserved = 0"
                                  : "ON DUPLICATE KEY UPDATE balance = VALUES(balance), reserved = 0");
    pool_.with_connection([&](xatm::connection& db) { return exec_count(db, sql); });
    return {200, "balance=" + balance + ";reserved=0"};
  }

  reply get_account(const std::string& account) {
    auto rows = pool_.with_connection([&](xatm::connection& db) {
      return db.exec("SELECT balance, reserved FROM wallet_accounts WHERE account = '" + account + "'").value().rows;
    });
    if (rows.empty()) return {404, "no such account"};
    return {200, "balance=" + rows.at(0).at(0).value_or("") + ";reserved=" + rows.at(0).at(1).value_or("")};
  }

  static void log_step(xatm::tcc_step step, const xatm::tcc_request& request, const reply& answer) {
    // One write per line, so that lines of concurrent requests do not interleave.
    std::cerr << (std::string(xatm::tcc_step_name(step)) + " " + request.gtrid + " branch " +
                  std::to_string(request.branch) + ": " + std::to_string(answer.status) + " " + answer.body + "\n")
              << std::flush;
  }

  connection_pool pool_;
  xatm::tcc_barrier barrier_;
  std::string dialect_;
  std::chrono::milliseconds try_delay_;
};

// The directory of the decision log: created private if missing (the TM refuses a log whose
// directory others may write); an existing one is the operator's and left as it is.
void prepare_state_dir(const std::filesystem::path& dir) {
  if (std::filesystem::exists(dir)) return;
  std::filesystem::create_directories(dir);
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && (std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h")) {
    std::cout << usage_text;
    return 0;
  }
  // SIGTERM and SIGINT are taken by a watcher thread with sigwait(), where calling
  // httplib::Server::stop() is safe (it is not async-signal-safe, so no signal handler may call
  // it). They are blocked before any thread starts (the TM's, httplib's), which inherit the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that hangs up is a failed write, not the end of the service

  const std::optional<options> opts = parse_command_line(argc, argv);
  if (!opts) return exit_usage;
  const char* level = std::getenv("XATM_WALLET_LOG_LEVEL");
  xatm::tools::install_console_log(level != nullptr ? level : "warning");

  try {
    prepare_state_dir(opts->state_dir);
    xatm::tm_options tm_options{.tm_id = "wallet", .log_path = (opts->state_dir / "wallet.db").string()};
    xatm::transaction_manager tm(tm_options);
    tm.register_rm(std::string(rm_name), opts->dialect, opts->conninfo);
    {
      // Plain connections run SQL in autocommit outside any global transaction: the DDL needs
      // none. Then the startup recovery that the first begin() runs, before the first request.
      auto db = tm.connect(rm_name);
      db->exec(xatm::barrier_schema(opts->dialect)).value();
      db->exec(accounts_schema(opts->dialect)).value();
      tm.begin().rollback();
    }

    wallet_service wallet(tm, *opts);
    httplib::Server server;
    wallet.add_routes(server);
    server.set_payload_max_length(64 * 1024);  // a TCC payload's limit (xatm/tcc.h)
    const int port = opts->port == 0 ? server.bind_to_any_port(opts->host)
                                     : (server.bind_to_port(opts->host, opts->port) ? opts->port : -1);
    if (port < 0) {
      std::cerr << "xatm-example-wallet: cannot listen on " << opts->host << ":" << opts->port << "\n";
      return exit_failure;
    }

    std::atomic<bool> listener_done{false};
    std::thread watcher([&] {
      int signal_number = 0;
      sigwait(&stop_signals, &signal_number);
      // A signal that came before listen_after_bind() set the server running would make stop()
      // a no-op: ask until the listener has returned.
      while (!listener_done.load()) {
        server.stop();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
    std::cout << "wallet listening on " << opts->host << ":" << port << std::endl;
    const bool served = server.listen_after_bind();
    listener_done = true;
    ::kill(::getpid(), SIGTERM);  // wakes the watcher if the listener ended on its own; else stays pending
    watcher.join();
    if (!served) {
      std::cerr << "xatm-example-wallet: the listener failed\n";
      return exit_failure;
    }
  } catch (const xatm::configuration_error& e) {  // xatm's messages never hold the password
    std::cerr << "xatm-example-wallet: " << e.what() << "\n";
    return exit_usage;
  } catch (const std::exception& e) {
    std::cerr << "xatm-example-wallet: " << e.what() << "\n";
    return exit_failure;
  }
  return 0;
}
