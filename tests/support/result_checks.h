// support/result_checks.h: doctest checks for xatm::result, shared by the test suites.
//
// REQUIRE_OK fails the test with the failure's own description; CHECK_FAILS_WITH checks the XA
// code of a failure and prints the failure for diagnosis. Use them from the test's thread.
#pragma once

#include <doctest/doctest.h>

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
