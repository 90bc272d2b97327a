// The process exit status for a status, the same for every command (train,
// eval, export, plan, bench ...):
//   0    ok
//   1    an internal failure (a bug, a diverged run)
//   2    bad input: config, arguments, data, checkpoint, a path, a disk that is
//        full, failing or returns wrong data, a budget too small
//   130  interrupted (Ctrl-C or SIGTERM)
#pragma once

#include "absl/status/status.h"

namespace dsinf::util {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitBadInput = 2;
inline constexpr int kExitInterrupted = 130;

int exit_code(const absl::Status& status);

}  // namespace dsinf::util
