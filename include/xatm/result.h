// xatm/result.h: XA return codes and the result type every fallible xatm call returns.
//
// Inside the library nothing throws across a protocol step: each call answers a `result<T>`,
// which holds either a value or a `failure` (XA code, native code, SQLSTATE, RM name, message).
// The public API turns failures into exceptions with `throw_failure()` (see error.h).
// Values of these types are plain data: use them from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "xatm/export.h"

namespace xatm {

// The X/Open XA return codes (xa.h), with their standard numeric values.
enum class xa_code : std::int32_t {
  ok = 0,                       // XA_OK
  read_only = 3,                // XA_RDONLY: the branch wrote nothing and is already finished
  retry = 4,                    // XA_RETRY
  heuristic_mixed = 5,          // XA_HEURMIX
  heuristic_rollback = 6,       // XA_HEURRB
  heuristic_commit = 7,         // XA_HEURCOM
  heuristic_hazard = 8,         // XA_HEURHAZ
  rollback = 100,               // XA_RBROLLBACK: rolled back for an unspecified reason
  rollback_comm_failure = 101,  // XA_RBCOMMFAIL
  rollback_deadlock = 102,      // XA_RBDEADLOCK
  rollback_integrity = 103,     // XA_RBINTEGRITY
  rollback_other = 104,         // XA_RBOTHER
  rollback_protocol = 105,      // XA_RBPROTO
  rollback_timeout = 106,       // XA_RBTIMEOUT
  rollback_transient = 107,     // XA_RBTRANSIENT
  rm_error = -3,                // XAER_RMERR: an error in the RM; the branch may be gone
  not_found = -4,               // XAER_NOTA: the RM does not know this XID
  invalid = -5,                 // XAER_INVAL: invalid arguments
  protocol = -6,                // XAER_PROTO: the call is illegal in the branch's current state
  rm_failure = -7,              // XAER_RMFAIL: the RM is unavailable (connection lost, server down)
  duplicate_id = -8,            // XAER_DUPID: the XID already exists
  outside = -9,                 // XAER_OUTSIDE: the connection is doing work outside any branch
};

// The XA name of a code ("XAER_NOTA", "XA_RBDEADLOCK", ...), for messages.
XATM_EXPORT const char* xa_code_name(xa_code code) noexcept;

// True for the XA_RB* family: the RM has rolled the branch back.
constexpr bool is_rollback_code(xa_code code) noexcept {
  auto value = static_cast<std::int32_t>(code);
  return value >= 100 && value <= 107;
}

// Why a call failed. Carries everything an operator needs and never a password.
struct XATM_EXPORT failure {
  xa_code code = xa_code::rm_error;
  int native_code = 0;   // server or driver error number (MariaDB errno), 0 if none
  std::string sqlstate;  // five-character SQLSTATE when the RM gave one
  std::string rm_name;   // the registered RM that answered, empty for local checks
  std::string message;   // human-readable cause

  // One line: "[rm] XAER_NOTA (native 1397, SQLSTATE XAE04): message".
  std::string describe() const;
};

// Makes a failure for a check done by xatm itself, before anything was sent.
XATM_EXPORT failure make_failure(xa_code code, std::string message, std::string rm_name = {});

// Throws the xatm::error subclass that matches the failure's code (see error.h).
[[noreturn]] XATM_EXPORT void throw_failure(const failure& cause);

// A value or a failure. [[nodiscard]]: ignoring one must be explicit and commented.
template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : state_(std::in_place_index<0>, std::move(value)) {}        // NOLINT: implicit by design
  result(failure cause) : state_(std::in_place_index<1>, std::move(cause)) {}  // NOLINT

  bool ok() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  // The value; throws the matching xatm::error when this holds a failure.
  T& value() & {
    if (!ok()) throw_failure(std::get<1>(state_));
    return std::get<0>(state_);
  }
  const T& value() const& {
    if (!ok()) throw_failure(std::get<1>(state_));
    return std::get<0>(state_);
  }
  T&& value() && {
    if (!ok()) throw_failure(std::get<1>(state_));
    return std::get<0>(std::move(state_));
  }
  // The failure; only valid when !ok().
  const failure& error() const& { return std::get<1>(state_); }
  failure&& error() && { return std::get<1>(std::move(state_)); }

 private:
  std::variant<T, failure> state_;
};

template <>
class [[nodiscard]] result<void> {
 public:
  result() = default;
  result(failure cause) : failure_(std::move(cause)) {}  // NOLINT: implicit by design

  bool ok() const noexcept { return !failure_.has_value(); }
  explicit operator bool() const noexcept { return ok(); }
  // Throws the matching xatm::error when this holds a failure.
  void value() const {
    if (failure_) throw_failure(*failure_);
  }
  const failure& error() const& { return *failure_; }
  failure&& error() && { return std::move(*failure_); }

 private:
  std::optional<failure> failure_;
};

}  // namespace xatm
