// The benchmarks `dsinf bench` dispatches to, and what they share: option
// parsing errors and the mapping from a status to the exit code.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace dsinf::bench {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;   // I/O error, data read back wrong, out of memory
inline constexpr int kExitBadInput = 2;  // bad option, config or --path, too little free space
inline constexpr int kExitInterrupted = 130;

// args follow the benchmark's name on the command line.
int nvme_main(const std::vector<std::string>& args);
int tiers_main(const std::vector<std::string>& args);

// Prints "dsinf: bench <name>: <message>" on stderr and returns the exit code for `status`.
int report_failure(const std::string& name, const absl::Status& status);
// A bad command line: prints the message and a pointer to --help, returns kExitBadInput.
int usage_error(const std::string& name, const std::string& message);

}  // namespace dsinf::bench
