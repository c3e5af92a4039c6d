// Uses an installed xatm through its public headers only.
#include <iostream>

#include "xatm/xid.h"

int main() {
  const xatm::xid branch(xatm::xatm_format_id, "consumer.1.1", "1");
  std::cout << branch.to_string() << '\n';
  return 0;
}
