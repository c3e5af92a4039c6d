// support/tm_fixture.h: a transaction manager of a test's own: a fresh decision log in a private
// temp dir, a tm_id that no other test or test process uses, and (unless the test registers its
// own) the RMs "pg" and "maria" on the `servers` fixture. Destroy every global_transaction before
// close() or reopen(): they share the TM's state, and the log is closed (its completions written)
// only when the last one goes. Use from the test's thread.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "support/temp_dir.h"
#include "xatm/transaction_manager.h"

namespace xatm::test {

// "<prefix>-<pid>-<n>", n counting this process's calls: unique among tests and test processes.
std::string unique_tm_id(const std::string& prefix);

// `options` with background recovery off: recovery runs at the first begin() and when the test
// calls recover_now(), never on a timer of its own.
tm_options without_background_recovery(tm_options options = {});

// Which RMs a tm_fixture registers whenever it opens its TM.
enum class fixture_rms {
  pg_and_maria,  // "pg" (postgresql, servers().pg) and "maria" (mariadb, servers().mysql)
  none,          // the test registers its own
};

struct tm_fixture {
  temp_dir dir;
  std::filesystem::path log_path;
  tm_options options;  // what the TM is opened with: the test's, with tm_id and log_path set here
  std::string tm_id;
  std::unique_ptr<transaction_manager> tm;

  // tm_id_prefix names the test: it starts the tm_id (unique_tm_id) and the temp dir's name.
  explicit tm_fixture(const std::string& tm_id_prefix, tm_options settings = {},
                      fixture_rms rms = fixture_rms::pg_and_maria);

  // Registers "pg" and "maria" on the `servers` fixture (for fixture_rms::none, by hand).
  void register_pg_and_maria();
  void close() { tm.reset(); }
  // Closes the TM and opens the same log again (a new incarnation), registering the same RMs.
  void reopen();

 private:
  void open();

  fixture_rms rms_;
};

}  // namespace xatm::test
