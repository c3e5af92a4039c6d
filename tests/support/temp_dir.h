// support/temp_dir.h: a private temporary directory for one test (a decision log, ack files).
#pragma once

#include <stdlib.h>  // mkdtemp

#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace xatm::test {

// A fresh directory under the system's temp dir (TMPDIR), mode 0700 (mkdtemp, as the decision
// log demands), removed with everything in it when the object goes.
struct temp_dir {
  std::filesystem::path path;

  explicit temp_dir(const std::string& prefix = "xatm-test") {
    std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
    path = pattern;
  }
  ~temp_dir() {
    std::error_code ignored;  // best effort: a leftover temp dir is not worth failing a test over
    std::filesystem::permissions(path, std::filesystem::perms::owner_all, ignored);  // a test may chmod it
    std::filesystem::remove_all(path, ignored);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  // The path of `name` inside the directory.
  std::string file(const std::string& name) const { return (path / name).string(); }
};

}  // namespace xatm::test
