// Uses an installed xatm through its public headers only: an xid (a call into libxatm), an
// exception caught across the library boundary (its typeinfo is exported), and the version of the
// headers against the version of the library loaded.
#include <cstring>
#include <iostream>

#include "xatm/error.h"
#include "xatm/logging.h"
#include "xatm/version.h"
#include "xatm/xid.h"

int main() {
  xatm::log_to_boost_log(xatm::log_level::off);  // xatm/logging.h needs no Boost header
  const xatm::xid branch(xatm::xatm_format_id, "consumer.1.1", "1");
  std::cout << branch.to_string() << '\n';
  try {
    const xatm::xid empty(xatm::xatm_format_id, "", "1");  // a gtrid of 0 bytes: refused
    std::cout << "an empty gtrid was accepted\n";
    return 1;
  } catch (const xatm::invalid_argument_error& refused) {
    std::cout << "refused: " << xatm::xa_code_name(refused.code()) << '\n';
  }
  std::cout << "library " << xatm::version_string() << " headers " << XATM_VERSION_STRING << '\n';
  return std::strcmp(xatm::version_string(), XATM_VERSION_STRING) == 0 ? 0 : 1;
}
