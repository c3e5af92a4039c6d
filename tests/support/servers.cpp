// support/servers.cpp: the fixture's servers for this test (testing/throwaway_servers.h does the work).
#include "support/servers.h"

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace xatm::test {
namespace {

constexpr std::string_view how_to_start =
    "run the test through ctest (its 'servers' fixture starts the servers), or start them by hand "
    "with `XATM_SERVERS_STATE=<file> lib/testing/servers.sh start` and export the same variable";

std::string state_file_path() {
  const char* state = std::getenv("XATM_SERVERS_STATE");
  if (state == nullptr || *state == '\0') {
    throw std::runtime_error("xatm test servers: XATM_SERVERS_STATE is not set; " + std::string(how_to_start));
  }
  return state;
}

server_env load() {
  const std::string state = state_file_path();
  try {
    return testing::read_server_env(state);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string(e.what()) + "; " + std::string(how_to_start));
  }
}

}  // namespace

const server_env& servers() {
  // A failed load throws out of the initialiser, so the next call tries again.
  static const server_env env = load();
  return env;
}

void server_control(std::string_view subcommand) {
  // Fail here with the fixture's advice rather than inside the script.
  testing::run_servers_script(subcommand, state_file_path(), testing::script_output::inherit);
}

}  // namespace xatm::test
