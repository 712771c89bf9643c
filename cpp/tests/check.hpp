// The C++ tests' one check: CHECK(condition) prints the file, line and condition when it fails and
// counts the failure in check_failures(); a test's main returns non-zero when any check failed.
#pragma once

#include <cstdio>

inline int& check_failures() {
  static int failures = 0;
  return failures;
}

#define CHECK(condition)                                                                  \
  do {                                                                                    \
    if (!(condition)) {                                                                   \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #condition); \
      ++check_failures();                                                                 \
    }                                                                                     \
  } while (0)
