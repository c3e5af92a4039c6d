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
  int signal = SIGKILL;
};

crash_target read_target() {
  crash_target target;
  const char* setting = std::getenv("XATM_CRASH_AT");
  if (setting == nullptr) return target;
  std::string text(setting);
  // A trailing ":stop" freezes the process (SIGSTOP) instead of killing it: a stalled
  // coordinator, for the three-phase tests. SIGCONT wakes it.
  if (text.size() > 5 && text.compare(text.size() - 5, 5, ":stop") == 0) {
    target.signal = SIGSTOP;
    text.resize(text.size() - 5);
  }
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
    std::raise(target.signal);
  }
}

}  // namespace xatm::detail
