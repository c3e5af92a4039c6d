// Uses an installed xatm through its public headers only.
#include <iostream>

#include "xatm/logging.h"
#include "xatm/xid.h"

int main() {
  xatm::log_to_boost_log(xatm::log_level::off);  // xatm/logging.h needs no Boost header
  const xatm::xid branch(xatm::xatm_format_id, "consumer.1.1", "1");
  std::cout << branch.to_string() << '\n';
  return 0;
}
