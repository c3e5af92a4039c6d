#include "xatm/result.h"

#include <string>

#include "xatm/error.h"

namespace xatm {

const char* xa_code_name(xa_code code) noexcept {
  switch (code) {
    case xa_code::ok: return "XA_OK";
    case xa_code::read_only: return "XA_RDONLY";
    case xa_code::retry: return "XA_RETRY";
    case xa_code::heuristic_mixed: return "XA_HEURMIX";
    case xa_code::heuristic_rollback: return "XA_HEURRB";
    case xa_code::heuristic_commit: return "XA_HEURCOM";
    case xa_code::heuristic_hazard: return "XA_HEURHAZ";
    case xa_code::rollback: return "XA_RBROLLBACK";
    case xa_code::rollback_comm_failure: return "XA_RBCOMMFAIL";
    case xa_code::rollback_deadlock: return "XA_RBDEADLOCK";
    case xa_code::rollback_integrity: return "XA_RBINTEGRITY";
    case xa_code::rollback_other: return "XA_RBOTHER";
    case xa_code::rollback_protocol: return "XA_RBPROTO";
    case xa_code::rollback_timeout: return "XA_RBTIMEOUT";
    case xa_code::rollback_transient: return "XA_RBTRANSIENT";
    case xa_code::rm_error: return "XAER_RMERR";
    case xa_code::not_found: return "XAER_NOTA";
    case xa_code::invalid: return "XAER_INVAL";
    case xa_code::protocol: return "XAER_PROTO";
    case xa_code::rm_failure: return "XAER_RMFAIL";
    case xa_code::duplicate_id: return "XAER_DUPID";
    case xa_code::outside: return "XAER_OUTSIDE";
  }
  return "XA_UNKNOWN";
}

std::string failure::describe() const {
  std::string text;
  if (!rm_name.empty()) text += "[" + rm_name + "] ";
  text += xa_code_name(code);
  if (native_code != 0 || !sqlstate.empty()) {
    text += " (";
    if (native_code != 0) text += "native " + std::to_string(native_code);
    if (native_code != 0 && !sqlstate.empty()) text += ", ";
    if (!sqlstate.empty()) text += "SQLSTATE " + sqlstate;
    text += ")";
  }
  if (!message.empty()) text += ": " + message;
  return text;
}

failure make_failure(xa_code code, std::string message, std::string rm_name) {
  failure cause;
  cause.code = code;
  cause.message = std::move(message);
  cause.rm_name = std::move(rm_name);
  return cause;
}

void throw_failure(const failure& cause) {
  if (is_rollback_code(cause.code)) throw rolled_back_error(cause);
  switch (cause.code) {
    case xa_code::invalid: throw invalid_argument_error(cause);
    case xa_code::protocol: throw protocol_error(cause);
    case xa_code::heuristic_mixed:
    case xa_code::heuristic_rollback:
    case xa_code::heuristic_commit:
    case xa_code::heuristic_hazard: throw heuristic_error(cause);
    default: throw rm_error(cause);
  }
}

error::error(failure cause) : std::runtime_error(cause.describe()), cause_(std::move(cause)) {}

}  // namespace xatm
