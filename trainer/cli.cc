#include "trainer/cli.h"

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bench/bench_main.h"
#include "memory/util/exit_code.h"
#include "trainer/bench_step.h"
#include "trainer/config.h"
#include "trainer/plan_report.h"
#include "trainer/session.h"

namespace dsinf::trainer {
namespace {

using util::exit_code;
using util::kExitBadInput;
using util::kExitOk;

constexpr const char* kUsage = R"(usage: dsinf <command> [options]

commands:
  train  CONFIG [--json]                 train or fine-tune; resumes from the newest
                                         checkpoint in train.output_dir
  eval   CONFIG [--json]                 mean token cross-entropy on data.eval_path
                                         (else data.path)
  export CONFIG --out FILE [--json]      write the weights as fp32 safetensors with
                                         Hugging Face GPT-2 names
  plan   CONFIG [--tiers FILE] [--json]  where each tensor class lives, bytes per tier,
                                         and a predicted step time; --tiers takes a
                                         `dsinf bench tiers --out FILE` result
  bench nvme --path DIR [--json]         O_DIRECT read/write GB/s of a disk; sweeps the
                                         aio settings and prints the best aio block
  bench step CONFIG [--steps N] [--json] a config's step against its bound, with a trace
  bench tiers [--path DIR] [--json]      bandwidth of host memory, host copies,
                                         host<->device and NVMe (dsinf bench --help)

eval and export use the newest checkpoint in train.output_dir, else
model.init_from, else the seeded initialisation.

options:
  --json       stdout carries JSON Lines only (progress objects, then a summary)
  --help       this text
  --version    the version

exit status: 0 ok, 1 internal failure, 2 bad input (config, data, checkpoint, disk),
130 interrupted (a checkpoint was saved; run again to resume)
)";

int usage_error(const std::string& message) {
  std::cerr << "dsinf: " << message << "\n(see dsinf --help)\n";
  return kExitBadInput;
}

constexpr const char* kBenchStepUsage =
    R"(usage: dsinf bench step CONFIG [--steps N] [--trace FILE] [--json]

Runs the config's training step (its placement, budgets and actors) on
generated tokens, without data or checkpoints: two warm-up steps, then 3
rounds of N timed steps (default 10), each followed by N compute-alone passes
(the step time and compute are medians over the rounds, measured side by
side). Measures each resource alone -- compute, copy in, copy out,
CPU Adam, NVMe read, NVMe write -- and prints the step time, the bound (the
slowest independent resource; on the CPU backend compute, copies and Adam
share the cores and count as one), their ratio, and writes a Chrome/Perfetto
trace of the last step (default <train.output_dir>/step-trace.json; open it in
ui.perfetto.dev). With --json the last stdout line is
{"step_s":..,"bound_s":..,"ratio":..,"components":{..},"trace":"path",..}.
)";

int bench_step_main(const std::vector<std::string>& args) {
  BenchStepOptions options;
  std::string config_path;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::cout << kBenchStepUsage;
      return kExitOk;
    } else if (a == "--json") {
      options.json = true;
    } else if ((a == "--steps" || a == "--trace") && i + 1 < args.size()) {
      const std::string& value = args[++i];
      if (a == "--trace") {
        options.trace_path = value;
        continue;
      }
      char* end = nullptr;
      const long steps = std::strtol(value.c_str(), &end, 10);
      if (end == value.c_str() || *end != '\0' || steps < 1 || steps > 1000) {
        return usage_error("bench step: --steps must be a whole number from 1 to 1000");
      }
      options.steps = static_cast<int>(steps);
    } else if (a.starts_with("-")) {
      return usage_error("bench step: unknown option '" + a + "' (or a missing value)");
    } else if (config_path.empty()) {
      config_path = a;
    } else {
      return usage_error("bench step: unexpected argument '" + a + "'");
    }
  }
  if (config_path.empty()) return usage_error("bench step needs a CONFIG file");
  absl::StatusOr<LoadedConfig> loaded = load_config(config_path);
  if (!loaded.ok()) {
    std::cerr << "dsinf: " << loaded.status().message() << "\n";
    return exit_code(loaded.status());
  }
  for (const std::string& warning : loaded->warnings) std::cerr << "warning: " << warning << "\n";
  const absl::Status status = run_bench_step(*loaded, options);
  if (!status.ok()) std::cerr << "dsinf: bench step: " << status.message() << "\n";
  return exit_code(status);
}

}  // namespace

int cli_main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::cerr << kUsage;
    return kExitBadInput;
  }
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kUsage;
    return kExitOk;
  }
  if (args[0] == "--version") {
    std::cout << "dsinf " << DSINF_VERSION << "\n";
    return kExitOk;
  }
  const std::string command = args[0];
  if (command == "bench" && args.size() >= 2 && args[1] == "step") {
    return bench_step_main({args.begin() + 2, args.end()});
  }
  if (command == "bench") return bench::bench_main({args.begin() + 1, args.end()});
  if (command != "train" && command != "eval" && command != "export" && command != "plan") {
    return usage_error("unknown command '" + command + "'");
  }
  RunOptions options;
  std::string config_path, out_path;
  bool have_out = false;
  PlanOptions plan_options;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--json") {
      options.json = true;
    } else if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return kExitOk;
    } else if (a == "--out" && command == "export") {
      if (i + 1 >= args.size()) return usage_error("--out needs a file name");
      out_path = args[++i];
      have_out = true;
    } else if (a.starts_with("--out=") && command == "export") {
      out_path = a.substr(6);
      have_out = true;
    } else if (a == "--tiers" && command == "plan") {
      if (i + 1 >= args.size()) return usage_error("--tiers needs a file name");
      plan_options.tiers_path = args[++i];
      if (plan_options.tiers_path.empty()) return usage_error("--tiers needs a file name");
    } else if (a.starts_with("--tiers=") && command == "plan") {
      plan_options.tiers_path = a.substr(8);
      if (plan_options.tiers_path.empty()) return usage_error("--tiers needs a file name");
    } else if (a.starts_with("-")) {
      return usage_error("unknown option '" + a + "' for " + command);
    } else if (config_path.empty()) {
      config_path = a;
    } else {
      return usage_error("unexpected argument '" + a + "'");
    }
  }
  if (config_path.empty()) return usage_error(command + " needs a CONFIG file");
  if (command == "export" && !have_out) return usage_error("export needs --out FILE");

  absl::StatusOr<LoadedConfig> loaded = load_config(config_path);
  if (!loaded.ok()) {
    std::cerr << "dsinf: " << loaded.status().message() << "\n";
    return exit_code(loaded.status());
  }
  for (const std::string& warning : loaded->warnings) std::cerr << "warning: " << warning << "\n";
  absl::Status status;
  if (command == "train") {
    status = run_train(*loaded, options);
  } else if (command == "eval") {
    status = run_eval(*loaded, options);
  } else if (command == "plan") {
    plan_options.json = options.json;
    status = run_plan(*loaded, plan_options);
  } else {
    status = run_export(*loaded, out_path, options);
  }
  if (!status.ok()) std::cerr << "dsinf: " << status.message() << "\n";
  return exit_code(status);
}

}  // namespace dsinf::trainer
