#include "core/crash_point.h"

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <string>

namespace xatm::detail {
namespace {

struct crash_target {
  std::string name;
  long nth = 1;
};

crash_target read_target() {
  crash_target target;
  const char* setting = std::getenv("XATM_CRASH_AT");
  if (setting == nullptr) return target;
  std::string text(setting);
  if (auto colon = text.find(':'); colon != std::string::npos) {
    target.nth = std::strtol(text.c_str() + colon + 1, nullptr, 10);
    text.resize(colon);
  }
  target.name = text;
  return target;
}

}  // namespace

void crash_point(const char* name) noexcept {
  static const crash_target target = read_target();
  static std::atomic<long> hits{0};
  if (target.name.empty() || target.name != name) return;
  if (hits.fetch_add(1) + 1 == target.nth) {
    // SIGKILL, not abort(): no handler, no flush, no destructor may run, exactly as a power cut.
    std::raise(SIGKILL);
  }
}

}  // namespace xatm::detail
