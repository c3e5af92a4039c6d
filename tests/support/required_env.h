// support/required_env.h: an environment variable a test's child program cannot do without.
// Header-only, so that a child that must link nothing of the tests' support can use it.
#pragma once

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace xatm::test {

// The value of `name`; throws std::runtime_error naming it if it is unset or empty.
inline std::string required_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') throw std::runtime_error(std::string(name) + " is not set");
  return value;
}

}  // namespace xatm::test
