#include "bench/bench_main.h"

#include <iostream>

#include "bench/benchmarks.h"

namespace dsinf::bench {
namespace {

constexpr const char* kUsage = R"(usage: dsinf bench <benchmark> [options]

benchmarks:
  nvme   read and write GB/s of a disk through dsinf's O_DIRECT I/O engine;
         without --block-size/--queue-depth it sweeps the aio settings and
         prints the best aio block for a config
  tiers  one table of the machine's memory tiers: host memory, host copies,
         host<->device, NVMe at the configured aio settings
  adam   the CPU optimizer step (plain, fused mixed precision, multi-pass,
         naive) against the host memory ceiling measured in the same run
  comm   all-reduce, reduce-scatter and all-gather bandwidth among the ranks
         of an MPI job (mpirun -np N dsinf bench comm), as nccl-tests reports it

dsinf bench <benchmark> --help lists its options. Exit status: 0 ok,
1 internal failure, 2 bad option, config or path, or a disk that is full,
fails or returns wrong data, 130 interrupted (the benchmark files were removed).
)";

}  // namespace

int report_failure(const std::string& name, const absl::Status& status) {
  std::cerr << "dsinf: bench " << name << ": " << status.message() << "\n";
  return util::exit_code(status);
}

int usage_error(const std::string& name, const std::string& message) {
  std::cerr << "dsinf: bench " << name << ": " << message << " (see dsinf bench " << name
            << " --help)\n";
  return kExitBadInput;
}

int bench_main(const std::vector<std::string>& args, const NvmeSettingsLoader& load_settings) {
  if (args.empty()) {
    std::cerr << kUsage;
    return kExitBadInput;
  }
  const std::string& name = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (name == "--help" || name == "-h" || name == "help") {
    std::cout << kUsage;
    return kExitOk;
  }
  if (name == "nvme") return nvme_main(rest, load_settings);
  if (name == "tiers") return tiers_main(rest, load_settings);
  if (name == "adam") return adam_main(rest);
  if (name == "comm") return comm_main(rest);
  std::cerr << "dsinf: bench: unknown benchmark '" << name
            << "' (expected nvme, tiers, adam or comm; see dsinf bench --help)\n";
  return kExitBadInput;
}

}  // namespace dsinf::bench
