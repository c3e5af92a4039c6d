#include "xatm/version.h"

namespace xatm {

const char* version_string() noexcept { return XATM_VERSION_STRING; }

}  // namespace xatm
