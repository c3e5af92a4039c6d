// support/tm_fixture.cpp: a test's own transaction manager (see tm_fixture.h).
#include "support/tm_fixture.h"

#include <unistd.h>

#include <chrono>
#include <utility>

#include "support/servers.h"

namespace xatm::test {

std::string unique_tm_id(const std::string& prefix) {
  static int counter = 0;
  return prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

tm_options without_background_recovery(tm_options options) {
  options.recovery_interval = std::chrono::milliseconds(0);
  return options;
}

tm_fixture::tm_fixture(const std::string& tm_id_prefix, tm_options settings, fixture_rms rms)
    : dir("xatm-" + tm_id_prefix),
      log_path(dir.path / "decisions.db"),
      options(std::move(settings)),
      tm_id(unique_tm_id(tm_id_prefix)),
      rms_(rms) {
  options.tm_id = tm_id;
  options.log_path = log_path.string();
  open();
}

void tm_fixture::register_pg_and_maria() {
  tm->register_rm("pg", "postgresql", servers().pg);
  tm->register_rm("maria", "mariadb", servers().mysql);
}

void tm_fixture::reopen() {
  close();
  open();
}

void tm_fixture::open() {
  tm = std::make_unique<transaction_manager>(options);
  if (rms_ == fixture_rms::pg_and_maria) register_pg_and_maria();
}

}  // namespace xatm::test
