// `dsinf bench ...`: the memory-tier benchmark harness.
#pragma once

#include <string>
#include <vector>

#include "bench/nvme_io.h"

namespace dsinf::bench {

// args are what follows "bench" on the command line. Returns the exit code
// (0 ok, 1 failure, 2 bad arguments, config or path, 130 interrupted).
// `load_settings` reads a config's NVMe settings for --config FILE.
int bench_main(const std::vector<std::string>& args, const NvmeSettingsLoader& load_settings);

}  // namespace dsinf::bench
