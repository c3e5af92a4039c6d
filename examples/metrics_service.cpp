// A service that exposes its transaction manager's metrics to Prometheus while it works: GET
// /metrics answers render_prometheus() (xatm/metrics.h, docs/metrics.md), GET /health answers 200
// while the decision log takes decisions and 503 with the reason once it failed. Meanwhile a
// worker thread moves money from PostgreSQL to MariaDB, refusing an overdraft now and then (a
// rolled-back transaction) and abandoning one on purpose (an application rollback).
//
//   XATM_DEMO_PG='host=... dbname=...' XATM_DEMO_MYSQL='unix_socket=... user=...'
//     xatm-example-metrics --state-dir DIR [--host 127.0.0.1] [--port 0] [--transfers N]
//
// Once it serves it prints `metrics listening on HOST:PORT`; after N transfers (0: until stopped)
// it prints `transfers done N` and keeps serving until SIGTERM or SIGINT.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include <httplib.h>

#include "console_log.h"
#include "xatm/error.h"
#include "xatm/metrics.h"
#include "xatm/transaction_manager.h"

namespace {

constexpr int exit_failure = 1;
constexpr int exit_usage = 2;

struct options {
  std::filesystem::path state_dir;
  std::string host = "127.0.0.1";
  int port = 0;
  long transfers = 0;
};

std::optional<options> parse_command_line(int argc, char** argv) {
  options parsed;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view arg = argv[i];
    const std::string value = argv[i + 1];
    try {
      if (arg == "--state-dir") {
        parsed.state_dir = value;
      } else if (arg == "--host") {
        parsed.host = value;
      } else if (arg == "--port") {
        parsed.port = std::stoi(value);
      } else if (arg == "--transfers") {
        parsed.transfers = std::stol(value);
      } else {
        std::cerr << "xatm-example-metrics: unknown option " << arg << "\n";
        return std::nullopt;
      }
    } catch (const std::exception&) {
      std::cerr << "xatm-example-metrics: " << arg << " needs a number\n";
      return std::nullopt;
    }
  }
  if (argc % 2 == 0 || parsed.state_dir.empty() || parsed.port < 0 || parsed.port > 65535 || parsed.transfers < 0) {
    std::cerr << "usage: xatm-example-metrics --state-dir DIR [--host H] [--port P] [--transfers N]\n";
    return std::nullopt;
  }
  return parsed;
}

std::string required_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    std::cerr << "xatm-example-metrics: set " << name << " to a connection string\n";
    std::exit(exit_usage);
  }
  return value;
}

void create_accounts(xatm::transaction_manager& tm) {
  auto pg = tm.connect("payments_pg");
  pg->exec(
        "DROP TABLE IF EXISTS metrics_accounts;"
        "CREATE TABLE metrics_accounts (id text PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0));"
        "INSERT INTO metrics_accounts VALUES ('alice', 1000000)")
      .value();
  auto maria = tm.connect("ledger_mariadb");
  for (const char* sql : {"DROP TABLE IF EXISTS metrics_accounts",
                          "CREATE TABLE metrics_accounts (id varchar(32) PRIMARY KEY, balance bigint NOT NULL) "
                          "ENGINE=InnoDB",
                          "INSERT INTO metrics_accounts VALUES ('bob', 0)"}) {
    maria->exec(sql).value();
  }
}

// Transfer number n: every 7th asks for more than alice has (the CHECK refuses it: rolled back),
// every 11th is abandoned before commit (rollback()); the others commit in two phases.
void transfer(xatm::transaction_manager& tm, xatm::connection& pg, xatm::connection& maria, long n) {
  const long amount = n % 7 == 0 ? 100000000 : 1;
  try {
    auto tx = tm.begin();
    tx.enlist(maria);
    tx.enlist(pg);
    maria.exec("UPDATE metrics_accounts SET balance = balance + " + std::to_string(amount) + " WHERE id = 'bob'")
        .value();
    pg.exec("UPDATE metrics_accounts SET balance = balance - " + std::to_string(amount) + " WHERE id = 'alice'")
        .value();
    if (n % 11 == 0) {
      tx.rollback();
      return;
    }
    (void)tx.commit();  // committed or completion_pending: both committed
  } catch (const xatm::error& e) {
    std::clog << "transfer " << n << ": " << e.what() << "\n";  // the metrics count it
  }
}

}  // namespace

int main(int argc, char** argv) {
  // SIGTERM and SIGINT go to a watcher thread (sigwait), which may call httplib's stop(); blocked
  // before any thread starts, so that every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const std::optional<options> opts = parse_command_line(argc, argv);
  if (!opts) return exit_usage;
  xatm::tools::install_console_log("warning");
  try {
    std::filesystem::create_directories(opts->state_dir);
    xatm::transaction_manager tm(
        xatm::tm_options{.tm_id = "metrics-example", .log_path = (opts->state_dir / "xatm.db").string()});
    tm.register_rm("payments_pg", "postgresql", required_env("XATM_DEMO_PG"));
    tm.register_rm("ledger_mariadb", "mariadb", required_env("XATM_DEMO_MYSQL"));
    create_accounts(tm);

    httplib::Server server;
    server.Get("/metrics", [&tm](const httplib::Request&, httplib::Response& res) {
      // One snapshot per scrape: cheap (atomic loads), safe beside the worker's commits.
      res.set_content(xatm::render_prometheus(tm.statistics(), tm.health(), {{"tm_id", tm.tm_id()}}),
                      xatm::prometheus_content_type);
    });
    server.Get("/health", [&tm](const httplib::Request&, httplib::Response& res) {
      const xatm::tm_health health = tm.health();
      if (health.ok()) {
        res.set_content(health.recovery_outstanding ? "ok; recovery has work outstanding\n" : "ok\n", "text/plain");
      } else {
        res.status = 503;
        res.set_content("decision log failed, commits refused until restart: " + health.log_failure + "\n",
                        "text/plain");
      }
    });
    const int port = opts->port == 0 ? server.bind_to_any_port(opts->host)
                                     : (server.bind_to_port(opts->host, opts->port) ? opts->port : -1);
    if (port < 0) {
      std::cerr << "xatm-example-metrics: cannot listen on " << opts->host << ":" << opts->port << "\n";
      return exit_failure;
    }

    std::atomic<bool> stopping{false};
    std::thread worker([&] {
      auto pg = tm.connect("payments_pg");
      auto maria = tm.connect("ledger_mariadb");
      for (long n = 1; !stopping.load() && (opts->transfers == 0 || n <= opts->transfers); ++n) {
        transfer(tm, *pg, *maria, n);
        if (opts->transfers == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (opts->transfers > 0) std::cout << "transfers done " << opts->transfers << std::endl;
    });
    std::atomic<bool> listener_done{false};
    std::thread watcher([&] {
      int signal_number = 0;
      sigwait(&stop_signals, &signal_number);
      stopping = true;
      while (!listener_done.load()) {  // a stop() before listen_after_bind() began would be lost
        server.stop();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
    std::cout << "metrics listening on " << opts->host << ":" << port << std::endl;
    const bool served = server.listen_after_bind();
    listener_done = true;
    stopping = true;
    ::kill(::getpid(), SIGTERM);  // wakes the watcher if the listener ended on its own
    watcher.join();
    worker.join();
    if (!served) {
      std::cerr << "xatm-example-metrics: the listener failed\n";
      return exit_failure;
    }
  } catch (const std::exception& e) {  // xatm's messages never hold a password
    std::cerr << "xatm-example-metrics: " << e.what() << "\n";
    return exit_failure;
  }
  return 0;
}
