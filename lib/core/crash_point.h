// Internal: named crash points for crash tests (docs/design.md section 4). In a build with
// XATM_CRASH_POINTS, `XATM_CRASH_AT=<name>[:<nth>]` makes the process SIGKILL itself the nth
// time (default: first) it passes the point with that name; `XATM_CRASH_AT=<name>[:<nth>]:stop`
// freezes it with SIGSTOP instead (a stalled process, woken by SIGCONT). Without the option they compile to
// nothing, so release builds carry no trace of them.
#pragma once

namespace xatm::detail {
void crash_point(const char* name) noexcept;
}

#ifdef XATM_CRASH_POINTS
#define XATM_CRASH_POINT(name) ::xatm::detail::crash_point(name)
#else
#define XATM_CRASH_POINT(name) static_cast<void>(0)
#endif
