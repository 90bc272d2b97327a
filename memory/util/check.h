// Always-on invariant checks. A failed check is a programmer error: it prints
// where and why, then aborts. Operating errors (bad input, full disk) are
// reported through absl::Status instead and never reach these macros.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace dsinf {

[[noreturn]] inline void check_failed(const char* file, int line, const char* expr,
                                      const char* why) {
  std::fprintf(stderr, "dsinf: internal check failed at %s:%d: %s%s%s\n", file, line, expr,
               why[0] ? " -- " : "", why);
  std::fflush(stderr);
  std::abort();
}

}  // namespace dsinf

#define DSINF_CHECK(cond)                                   \
  do {                                                      \
    if (!(cond)) [[unlikely]]                               \
      ::dsinf::check_failed(__FILE__, __LINE__, #cond, ""); \
  } while (0)

#define DSINF_CHECK_MSG(cond, why)                             \
  do {                                                         \
    if (!(cond)) [[unlikely]]                                  \
      ::dsinf::check_failed(__FILE__, __LINE__, #cond, (why)); \
  } while (0)
