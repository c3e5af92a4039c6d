// Internal: RAII for the handles of C libraries (PGconn, PGresult, MYSQL, MYSQL_RES, ...): a
// std::unique_ptr whose deleter calls the library's own free function. Plain types: each
// pointer is used as the library allows (one thread at a time for a connection).
#pragma once

#include <memory>

namespace xatm::detail {

// The deleter: c_handle_deleter<&PQfinish>, c_handle_deleter<&mysql_free_result>, ...
template <auto free_function>
struct c_handle_deleter {
  template <class handle>
  void operator()(handle* owned) const noexcept {
    free_function(owned);
  }
};

// c_handle<PGresult, &PQclear>: owns one handle, freed when it goes.
template <class handle, auto free_function>
using c_handle = std::unique_ptr<handle, c_handle_deleter<free_function>>;

}  // namespace xatm::detail
