// `dsinf bench ...`: the memory-tier benchmark harness.
#pragma once

#include <string>
#include <vector>

namespace dsinf::bench {

// args are what follows "bench" on the command line. Returns the exit code
// (0 ok, 1 failure, 2 bad arguments, config or path, 130 interrupted).
int bench_main(const std::vector<std::string>& args);

}  // namespace dsinf::bench
