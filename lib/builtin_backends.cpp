// The built-in backends, one line each (builtin_backends.h). A new RM adds its folder and a line
// here; the order is the order of the dialect list in messages ("postgresql, mysql or mariadb").
#include "builtin_backends.h"

#include <mutex>

#include "core/backend.h"
#include "mysql/mysql_backend.h"
#include "postgresql/postgresql_backend.h"

namespace xatm::detail {

void register_builtin_backends() {
  static std::once_flag registered;
  std::call_once(registered, [] {
    register_backend(postgresql_backend());
    register_backend(mysql_backend());
    register_backend(mariadb_backend());
  });
}

}  // namespace xatm::detail
