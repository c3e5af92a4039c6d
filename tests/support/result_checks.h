// support/result_checks.h: doctest checks for xatm::result, shared by the test suites.
//
// REQUIRE_OK fails the test with the failure's own description; CHECK_FAILS_WITH checks the XA
// code of a failure and prints the failure for diagnosis; thrown_by() catches the exception a
// public API call must throw. Use them from the test's thread.
#pragma once

#include <doctest/doctest.h>

#include <exception>
#include <stdexcept>
#include <string>

#include "xatm/result.h"

// Fails the test with the failure's own description when a result is not ok.
#define REQUIRE_OK(expr)                                                    \
  do {                                                                      \
    const auto& checked_ = (expr);                                          \
    if (!checked_.ok()) FAIL(#expr << ": " << checked_.error().describe()); \
  } while (false)

// Checks that a result failed with `expected_code`, printing the failure for diagnosis.
#define CHECK_FAILS_WITH(expr, expected_code)                                \
  do {                                                                       \
    const auto& checked_ = (expr);                                           \
    REQUIRE_MESSAGE(!checked_.ok(), #expr " succeeded, expected a failure"); \
    INFO(checked_.error().describe());                                       \
    CHECK(checked_.error().code == (expected_code));                         \
  } while (false)

namespace xatm::test {

// Runs `call`, which must throw E (say xatm::timeout_error), and answers the exception for
// further checks; fails the test if it throws something else or nothing.
template <class E, class F>
E thrown_by(F&& call) {
  try {
    call();
  } catch (const E& e) {
    return e;
  } catch (const std::exception& other) {
    FAIL("threw something else: " << std::string(other.what()));
  }
  FAIL("did not throw");
  throw std::logic_error("unreachable");  // FAIL throws; the compiler does not know
}

}  // namespace xatm::test
