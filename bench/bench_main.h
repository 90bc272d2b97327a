// `dsinf bench ...`: the memory-tier benchmark harness.
#pragma once

#include <string>
#include <vector>

namespace dsinf::bench {

// args are what follows "bench" on the command line. Returns the exit code
// (0 ok, 2 bad arguments or config, 1 failure).
int bench_main(const std::vector<std::string>& args);

}  // namespace dsinf::bench
