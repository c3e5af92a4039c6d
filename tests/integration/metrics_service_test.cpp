// The metrics example (examples/metrics_service.cpp) as an operator runs it: a child process on
// the real servers running transfers while GET /metrics is scraped over HTTP. The text parses
// (support/prometheus_text.h) and its counters add up to the transfers it made: committed in two
// phases, refused overdrafts and abandoned ones rolled back by the application, none in flight
// afterwards; GET /health answers 200. Needs the `servers` fixture.
#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <string>
#include <thread>

#include <httplib.h>

#include "support/child_process.h"
#include "support/prometheus_text.h"
#include "support/servers.h"
#include "support/temp_dir.h"

#ifndef XATM_METRICS_BIN
#error "XATM_METRICS_BIN must name the xatm-example-metrics binary (set by tests/CMakeLists.txt)"
#endif

using namespace std::chrono_literals;

TEST_CASE("the example service serves Prometheus text whose counters add up to its transfers") {
  xatm::test::temp_dir dir("metrics-service");
  constexpr int transfers = 30;
  xatm::test::child_process service(
      {XATM_METRICS_BIN, "--state-dir", dir.file("state"), "--transfers", std::to_string(transfers)},
      {"XATM_DEMO_PG=" + xatm::test::servers().pg, "XATM_DEMO_MYSQL=" + xatm::test::servers().mysql},
      dir.file("service.out"), dir.file("service.err"));
  const std::string prefix = "metrics listening on 127.0.0.1:";
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  std::string out;
  while ((out = service.out()).find("transfers done") == std::string::npos) {
    if (auto ended = service.poll()) FAIL("the service " << ended->describe() << ":\n" << service.err());
    if (std::chrono::steady_clock::now() > deadline) FAIL("the transfers did not finish:\n" << service.err());
    std::this_thread::sleep_for(50ms);
  }
  REQUIRE_MESSAGE(out.starts_with(prefix), out);
  const int port = std::stoi(out.substr(prefix.size()));

  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(10, 0);
  auto scraped = client.Get("/metrics");
  REQUIRE(scraped);
  CHECK(scraped->status == 200);
  CHECK(scraped->get_header_value("Content-Type").starts_with("text/plain; version=0.0.4"));
  INFO(scraped->body);
  const auto samples = xatm::test::parse_prometheus_text(scraped->body);
  const std::string tm = R"(tm_id="metrics-example")";
  auto transactions = [&](const char* outcome, const char* cause) {
    return samples.at("xatm_transactions_total{" + tm + ",outcome=\"" + outcome + "\",cause=\"" + cause + "\"}");
  };
  // Every 7th transfer overdraws (the CHECK fails in exec(): destroyed unfinished), every 11th
  // is abandoned with rollback(); the rest commit in two phases (or completion pending).
  int refused = 0;
  for (int n = 1; n <= transfers; ++n) refused += (n % 7 == 0 || n % 11 == 0) ? 1 : 0;
  const double committed = transactions("committed", "two_phase") + transactions("completion_pending", "two_phase");
  CHECK(committed == transfers - refused);
  CHECK(transactions("rolled_back", "application") == refused);
  CHECK(transactions("rolled_back", "no_vote") == 0);
  CHECK(samples.at("xatm_in_flight_transactions{" + tm + "}") == 0);
  CHECK(samples.at("xatm_log_usable{" + tm + "}") == 1);
  CHECK(samples.at("xatm_recovery_runs_total{" + tm + "}") >= 1);
  CHECK(samples.at("xatm_phase_duration_seconds_count{" + tm + R"(,phase="transaction"})") == transfers);
  CHECK(samples.at("xatm_phase_duration_seconds_count{" + tm + R"(,phase="decision"})") == committed);

  auto health = client.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);

  REQUIRE(::kill(service.pid(), SIGTERM) == 0);
  const auto status = service.wait(60s);
  CHECK_MESSAGE((status.exited && status.code == 0), status.describe() << "\n" << service.err());
}
