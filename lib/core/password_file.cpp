// password_file=PATH (password_file.h).
#include "core/password_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

namespace xatm::detail {

result<connection_settings> with_password_from_file(const connection_settings& settings) {
  auto path = settings.get(password_file_keyword);
  if (!path) return settings;
  auto refuse = [&](const std::string& why) {
    return make_failure(xa_code::invalid, "password_file '" + *path + "': " + why);
  };
  if (settings.get("password")) return refuse("give password or password_file, not both");
  if (path->empty()) return make_failure(xa_code::invalid, "password_file is empty: give the path of a file");
  struct stat status {};
  if (::stat(path->c_str(), &status) != 0) {
    // Not quoted when there is no such file: it may be a password typed here by mistake (which
    // describe() hides too). A file that exists is named, so that the operator knows which to fix.
    return make_failure(xa_code::invalid, "password_file: the path given: " + std::string(std::strerror(errno)));
  }
  if (!S_ISREG(status.st_mode)) return refuse("not a regular file");
  if ((status.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    return refuse("group or others may access it; allow its owner alone (chmod 600)");
  }
  std::ifstream file(*path, std::ios::binary);
  if (!file) return refuse(std::strerror(errno));
  std::string password;
  std::getline(file, password);
  if (file.bad()) return refuse("cannot be read");
  if (!password.empty() && password.back() == '\r') password.pop_back();  // a file written on Windows
  if (password.empty()) return refuse("its first line is empty (it must hold the password)");
  connection_settings resolved;
  for (const auto& [key, value] : settings.values()) {
    if (key != password_file_keyword) resolved.set(key, value);
  }
  resolved.set("password", std::move(password));
  return resolved;
}

}  // namespace xatm::detail
