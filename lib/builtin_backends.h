// Internal: the wiring layer, the one place that names every backend built into libxatm
// (docs/design.md section 2). lib/core finds a backend by dialect name only through the registry
// (core/backend.h); this call fills it. Thread-safe: any thread may call it, any number of times.
#pragma once

namespace xatm::detail {

// Registers the built-in backends, once per process (std::call_once). Called by the registry
// itself before its first lookup (core/backend.cpp), so every dialect name is known whichever
// part of xatm asks first. (Each backend's own folder could not register itself with a static
// object: a linker drops such an object from a static library when nothing else in its file is
// used.)
void register_builtin_backends();

}  // namespace xatm::detail
