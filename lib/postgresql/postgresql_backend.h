// Internal: the PostgreSQL backend (core/backend.h): libpq's connection keywords, the adapter's
// connect(), and the statements of xatm's identity table, incarnation leases, marker table and
// durability preflight in PostgreSQL's dialect. One immutable object: use it from any thread.
#pragma once

#include "core/backend.h"

namespace xatm::detail {

// The backend of dialect "postgresql"; registered by the wiring layer (builtin_backends.cpp).
[[nodiscard]] const backend& postgresql_backend() noexcept;

}  // namespace xatm::detail
