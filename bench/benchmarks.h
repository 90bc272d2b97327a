// The benchmarks `dsinf bench` dispatches to, and what they share: option
// parsing errors and the mapping from a status to the exit code.
#pragma once

#include <iostream>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "bench/nvme_io.h"
#include "memory/util/args.h"
#include "memory/util/exit_code.h"

namespace dsinf::bench {

using util::Args;
using util::kExitBadInput;
using util::kExitFailure;
using util::kExitInterrupted;
using util::kExitOk;

// args follow the benchmark's name on the command line.
int nvme_main(const std::vector<std::string>& args, const NvmeSettingsLoader& load_settings);
int tiers_main(const std::vector<std::string>& args, const NvmeSettingsLoader& load_settings);
int adam_main(const std::vector<std::string>& args);
int comm_main(const std::vector<std::string>& args);

// Prints "dsinf: bench <name>: <message>" on stderr and returns the exit code for `status`.
int report_failure(const std::string& name, const absl::Status& status);
// A bad command line: prints the message and a pointer to --help, returns kExitBadInput.
int usage_error(const std::string& name, const std::string& message);

// The start every benchmark shares: parse `args` against its options, answer
// --help with `usage`, and build its plan with make_plan(const Args&) ->
// absl::StatusOr<Plan>. Returns the plan, or nullopt with *exit_code set when
// the command ends here (help shown, or a bad command line or config).
template <typename MakePlan>
auto plan_from_args(const std::string& name, const char* usage,
                    const std::vector<std::string>& args, const std::set<std::string>& valued,
                    const std::set<std::string>& flags, MakePlan&& make_plan, int* exit_code)
    -> std::optional<typename decltype(make_plan(std::declval<const Args&>()))::value_type> {
  absl::StatusOr<Args> options = Args::parse(args, {valued, flags});
  if (!options.ok()) {
    *exit_code = usage_error(name, std::string(options.status().message()));
    return std::nullopt;
  }
  if (options->flag("--help")) {
    std::cout << usage;
    *exit_code = kExitOk;
    return std::nullopt;
  }
  auto plan = make_plan(*options);
  if (!plan.ok()) {
    // A bad option value is a usage error; a bad config file is reported as such.
    const bool usage_problem =
        plan.status().code() == absl::StatusCode::kInvalidArgument && !options->has("--config");
    *exit_code = usage_problem ? usage_error(name, std::string(plan.status().message()))
                               : report_failure(name, plan.status());
    return std::nullopt;
  }
  return *std::move(plan);
}

}  // namespace dsinf::bench
