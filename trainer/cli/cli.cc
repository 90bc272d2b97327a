#include "trainer/cli/cli.h"

#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_main.h"
#include "bench/bench_step.h"
#include "kernels/comm/communicator.h"
#include "memory/util/args.h"
#include "memory/util/exit_code.h"
#include "trainer/cli/generate_commands.h"
#include "trainer/cli/text_commands.h"
#include "trainer/config/config.h"
#include "trainer/config/runtime_spec.h"
#include "trainer/models/model.h"
#include "trainer/plan/plan_report.h"
#include "trainer/train/jobs.h"
#include "trainer/train/session.h"

namespace dsinf::trainer {
namespace {

using util::Args;
using util::exit_code;
using util::kExitBadInput;
using util::kExitOk;

constexpr const char* kUsage = R"(usage: dsinf <command> [options]

commands:
  train  CONFIG [--json]                 train or fine-tune; resumes from the newest
                                         checkpoint in train.output_dir
  eval   CONFIG [--json]                 mean token cross-entropy on data.eval_path
                                         (else data.path)
  export CONFIG --out DIR [--dtype fp32|bf16] [--max-shard-bytes N] [--json]
                                         write a Hugging Face model directory: config.json,
                                         safetensors shards (default at most 5 GB each) and
                                         index, the tokenizer files of model.init_from's
                                         directory; DIR must be new or empty. GPT-2 also
                                         exports to one FILE ending in .safetensors
  plan   CONFIG [--tiers FILE] [--world-size N] [--json]
                                         where each tensor class lives, bytes per tier,
                                         and a predicted step time; --tiers takes a
                                         `dsinf bench tiers --out FILE` result;
                                         --world-size N adds what each of N ranks holds
  bench nvme --path DIR [--json]         O_DIRECT read/write GB/s of a disk; sweeps the
                                         aio settings and prints the best aio block
  tokenize --tokenizer DIR|FILE --in PATH... --out SHARD [--append-eos] [--json]
                                         encode documents with a Hugging Face tokenizer.json
                                         into a token shard (dsinf tokenize --help)
  template --tokenizer DIR --in CONVERSATION.json [--add-generation-prompt] [--json]
                                         print a conversation rendered with the model's
                                         chat template
  generate CONFIG (--prompt TEXT | --in PROMPTS.jsonl) [--max-new-tokens N]
         [--temperature F] [--top-k N] [--top-p F] [--seed N] [--json]
                                         continue prompts (the llama family), streaming the
                                         text; weights as eval takes them (dsinf generate --help)
  chat   CONFIG [sampling options] [--json]
                                         a conversation through the chat template; /reset,
                                         /exit; reads one user line after another from a pipe
  launch -n N [--hostfile FILE | --host LIST] CONFIG [--json]
                                         train as N data-parallel ranks (ZeRO) through
                                         Open MPI's mpirun; `mpirun -n N dsinf train CONFIG`
                                         is the same
  bench step CONFIG [--steps N] [--json] a config's step against its bound, with a trace
  bench tokenize --tokenizer DIR --in PATH... [--json]
                                         tokenizer MB/s against transformers.js
  bench tiers [--path DIR] [--json]      bandwidth of host memory, host copies,
                                         host<->device and NVMe (dsinf bench --help)

eval, export, generate and chat use the newest checkpoint in train.output_dir, else
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

int failed(const absl::Status& status, const std::string& what = "") {
  std::cerr << "dsinf: " << what << status.message() << "\n";
  return exit_code(status);
}

// What a run takes from the environment: the user's device override and the
// test hooks (see RunEnvironment). Read here only, never below the CLI.
absl::StatusOr<RunEnvironment> read_environment() {
  RunEnvironment env;
  auto get = [](const char* name) -> std::optional<std::string> {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') return std::nullopt;
    return std::string(value);
  };
  env.device = get("DSINF_DEVICE");
  if (std::optional<std::string> fault = get("DSINF_NVME_FAULT")) {
    absl::StatusOr<nvme::FaultPlan> plan = parse_fault_plan(*fault, "DSINF_NVME_FAULT");
    if (!plan.ok()) return plan.status();
    env.nvme_faults = *plan;
  }
  if (std::optional<std::string> pace = get("DSINF_SAVE_PACE_MS")) {
    env.save_pace_ms = std::atoi(pace->c_str());
  }
  env.defer_copies = get("DSINF_CPU_DEFER_COPIES") == "1";
  env.local_rank = kernels::comm::launcher_local_rank();
  return env;
}

// A config read and validated as every command reads it (for the world
// size of the run); its warnings printed (by rank 0).
absl::StatusOr<LoadedConfig> read_config(const std::string& path, int world_size) {
  absl::StatusOr<LoadedConfig> loaded = load_config(path, world_size);
  if (!loaded.ok()) return loaded.status();
  if (!primary_output()) return loaded;
  for (const std::string& warning : loaded->warnings) std::cerr << "warning: " << warning << "\n";
  return loaded;
}

// `bench nvme|tiers --config FILE`: the config's aio settings and first nvme_path.
absl::StatusOr<bench::NvmeSettings> nvme_settings(const std::string& path) {
  absl::StatusOr<LoadedConfig> loaded = load_config(path);
  if (!loaded.ok()) return loaded.status();
  const Config& c = loaded->config;
  if (c.aio.queue_depth > INT_MAX || c.aio.intra_op_parallelism > INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": aio.queue_depth and aio.intra_op_parallelism must fit an int"));
  }
  absl::StatusOr<actors::RuntimeSpec> spec = runtime_spec(c, RunEnvironment{}, true);
  if (!spec.ok()) return spec.status();
  bench::NvmeSettings settings;
  settings.engine = spec->aio;
  settings.kind = spec->engine_kind;
  const actors::Placement& p = spec->placement;
  if (!p.optimizer_paths.empty()) {
    settings.path = p.optimizer_paths.front();
  } else if (!p.param_paths.empty()) {
    settings.path = p.param_paths.front();
  }
  return settings;
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
trace of one more step and its optimizer run (default
<train.output_dir>/step-trace.json; open it in
ui.perfetto.dev). With --json the last stdout line is
{"step_s":..,"bound_s":..,"ratio":..,"components":{..},"trace":"path",..}.
)";

int bench_step_main(const std::vector<std::string>& args, const RunEnvironment& env) {
  absl::StatusOr<Args> parsed =
      Args::parse(args, {{"--steps", "--trace"}, {"--json", "--help"}, /*max_positional=*/1});
  if (!parsed.ok()) return usage_error("bench step: " + std::string(parsed.status().message()));
  if (parsed->flag("--help")) {
    std::cout << kBenchStepUsage;
    return kExitOk;
  }
  bench::BenchStepOptions options;
  options.json = parsed->flag("--json");
  options.trace_path = parsed->text("--trace").value_or("");
  absl::StatusOr<int64_t> steps = parsed->integer("--steps", options.steps, 1, 1000);
  if (!steps.ok()) return usage_error("bench step: " + std::string(steps.status().message()));
  options.steps = static_cast<int>(*steps);
  if (parsed->positional().empty()) return usage_error("bench step needs a CONFIG file");
  const int world = world_of(env);
  absl::StatusOr<LoadedConfig> loaded = read_config(parsed->positional().front(), world);
  if (!loaded.ok()) return failed(loaded.status());
  const Config& config = loaded->config;
  absl::StatusOr<actors::RuntimeSpec> spec = runtime_spec(config, env, /*training=*/true);
  if (!spec.ok()) return failed(spec.status(), "bench step: ");
  absl::StatusOr<std::unique_ptr<Model>> model = make_model(config.model);
  if (!model.ok()) return failed(model.status(), "bench step: ");
  const actors::Placement& p = spec->placement;
  bench::BenchStepRun run;
  run.name = config.source_path;
  run.placement =
      p.all_on_device()
          ? std::string("every tensor on the device")
          : absl::StrFormat("zero stage %d: params on %s, optimizer on %s", config.zero.stage,
                            tier_name(p.params), tier_name(p.optimizer));
  run.trace_dir = config.train.output_dir;
  run.lr = config.optimizer.lr;
  run.seed = config.model.seed;
  const absl::Status status = bench::run_bench_step(*spec, **model, run, options);
  return status.ok() ? kExitOk : failed(status, "bench step: ");
}

// export's --dtype and --max-shard-bytes (defaults when absent).
absl::StatusOr<ExportOptions> parse_export_options(const Args& parsed) {
  ExportOptions options;
  const std::string dtype = parsed.text("--dtype").value_or("fp32");
  if (dtype == "bf16") {
    options.dtype = TensorDtype::kBF16;
  } else if (dtype == "fp16") {
    options.dtype = TensorDtype::kF16;
  } else if (dtype != "fp32") {
    return absl::InvalidArgumentError(
        absl::StrCat("export: --dtype must be fp32, bf16 or fp16, got '", dtype, "'"));
  }
  if (std::optional<std::string> text = parsed.text("--max-shard-bytes")) {
    const std::optional<uint64_t> bytes = util::parse_byte_count(*text);
    if (!bytes || *bytes == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "export: --max-shard-bytes must be a positive byte count (e.g. 2GB), got '", *text, "'"));
    }
    options.max_shard_bytes = *bytes;
  }
  if (parsed.flag("--adapter") && parsed.flag("--merged")) {
    return absl::InvalidArgumentError("export: give --adapter or --merged, not both");
  }
  if (parsed.flag("--adapter")) options.kind = ExportOptions::Kind::kAdapter;
  if (parsed.flag("--merged")) options.kind = ExportOptions::Kind::kMerged;
  return options;
}

// train, eval, export and plan: CONFIG and the command's options.
int config_command_main(const std::string& command, const std::vector<std::string>& args,
                        const RunEnvironment& env, const std::string& who = "") {
  Args::Spec spec{{}, {"--json", "--help"}, /*max_positional=*/1};
  if (command == "export") {
    spec.valued.insert({"--out", "--dtype", "--max-shard-bytes"});
    spec.flags.insert({"--adapter", "--merged"});
  }
  if (command == "plan") spec.valued.insert({"--tiers", "--world-size"});
  absl::StatusOr<Args> parsed = Args::parse(args, spec);
  if (!parsed.ok()) return usage_error(command + ": " + std::string(parsed.status().message()));
  if (parsed->flag("--help")) {
    std::cout << kUsage;
    return kExitOk;
  }
  if (parsed->positional().empty()) return usage_error(command + " needs a CONFIG file");
  if (command == "export" && !parsed->has("--out")) return usage_error("export needs --out DIR");
  absl::StatusOr<ExportOptions> export_options = parse_export_options(*parsed);
  if (!export_options.ok()) return usage_error(std::string(export_options.status().message()));
  // plan --world-size; otherwise the launcher's world size.
  absl::StatusOr<int64_t> world = parsed->integer("--world-size", world_of(env), 1, 4096);
  if (!world.ok()) {
    return usage_error("plan: --world-size must be a number of ranks from 1 to 4096");
  }
  absl::StatusOr<LoadedConfig> loaded =
      read_config(parsed->positional().front(), static_cast<int>(*world));
  if (!loaded.ok()) return failed(loaded.status(), who);
  RunOptions options{parsed->flag("--json"), env};
  absl::Status status;
  if (command == "train") {
    status = run_train(*loaded, options);
  } else if (command == "eval") {
    status = run_eval(*loaded, options);
  } else if (command == "plan") {
    status = run_plan(*loaded, {options.json, parsed->text("--tiers").value_or(""), env});
  } else {
    status = run_export(*loaded, *parsed->text("--out"), *export_options, options);
  }
  return status.ok() ? kExitOk : failed(status, who);
}

// `dsinf train` as one rank of an MPI job: rank 0 alone prints; a rank that
// fails prints its message and ends every rank with its exit status.
int rank_main(const std::vector<std::string>& args, RunEnvironment env) {
  absl::StatusOr<std::unique_ptr<kernels::comm::Communicator>> world =
      kernels::comm::make_world_communicator();
  if (!world.ok()) return failed(world.status());
  env.comm = world->get();
  set_primary_output(env.comm->rank() == 0);
  const std::string who = absl::StrCat("rank ", env.comm->rank(), " of ", env.comm->size(), ": ");
  // The failure's message is this rank's own; the job ends with its status.
  const int code = config_command_main("train", args, env, who);
  if (code != kExitOk) {
    std::cerr.flush();
    env.comm->abort(code);
  }
  return code;
}

// `dsinf launch -n N [--hostfile FILE] [--host LIST] CONFIG [--json]`: runs
// `dsinf train` as N ranks through Open MPI's mpirun.
int launch_main(const std::vector<std::string>& args, const char* self) {
  Args::Spec spec{{"-n", "--hostfile", "--host"}, {"--json", "--help"}, /*max_positional=*/1};
  absl::StatusOr<Args> parsed = Args::parse(args, spec);
  if (!parsed.ok()) return usage_error("launch: " + std::string(parsed.status().message()));
  if (parsed->flag("--help")) {
    std::cout << kUsage;
    return kExitOk;
  }
  absl::StatusOr<int64_t> ranks = parsed->integer("-n", 0, 1, 4096);
  if (!parsed->has("-n") || !ranks.ok()) {
    return usage_error("launch needs -n N, the number of ranks (1 to 4096)");
  }
  if (parsed->positional().empty()) return usage_error("launch needs a CONFIG file");
  // Open MPI 4.1's aggregated help messages garble an abort's report.
  std::vector<std::string> command = {"mpirun", "-n", std::to_string(*ranks), "--mca",
                                      "orte_base_help_aggregate", "0"};
  if (parsed->has("--hostfile")) {
    command.insert(command.end(), {"--hostfile", *parsed->text("--hostfile")});
  } else if (parsed->has("--host")) {
    command.insert(command.end(), {"--host", *parsed->text("--host")});
  } else {
    command.push_back("--oversubscribe");  // one node: ranks may outnumber its cores
  }
  if (::geteuid() == 0) {
    // Open MPI refuses root unless told twice (flag and environment).
    command.push_back("--allow-run-as-root");
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  }
  std::string exe = self;
  std::error_code ec;
  if (std::filesystem::path proc = std::filesystem::read_symlink("/proc/self/exe", ec); !ec) {
    exe = proc.string();
  }
  command.insert(command.end(), {exe, "train", parsed->positional().front()});
  if (parsed->flag("--json")) command.push_back("--json");
  std::vector<char*> argv;
  for (std::string& a : command) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::cout.flush();
  ::execvp(argv[0], argv.data());
  std::cerr << "dsinf: launch: cannot run mpirun: " << std::strerror(errno)
            << " (install openmpi-bin)\n";
  return kExitBadInput;
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
  absl::StatusOr<RunEnvironment> env = read_environment();
  if (!env.ok()) return failed(env.status());
  const std::string command = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (command == "launch") return launch_main(rest, argv[0]);
  // train and bench comm take part in an MPI job; N copies of any other
  // command would do its work N times over the same files.
  const bool joins_job =
      command == "train" || (command == "bench" && !rest.empty() && rest[0] == "comm");
  if (const int ranks = kernels::comm::launcher_world_size(); ranks > 1 && !joins_job) {
    std::cerr << "dsinf: " << command << " runs as one process (an MPI launcher started " << ranks
              << " ranks); only train and bench comm run across ranks\n";
    return kExitBadInput;
  }
  if (command == "train" && kernels::comm::launcher_world_size() > 1) return rank_main(rest, *env);
  if (command == "tokenize") return tokenize_main(rest);
  if (command == "template") return template_main(rest);
  if (command == "bench" && !rest.empty() && rest[0] == "tokenize") {
    return bench_tokenize_main({rest.begin() + 1, rest.end()});
  }
  if (command == "bench" && !rest.empty() && rest[0] == "step") {
    return bench_step_main({rest.begin() + 1, rest.end()}, *env);
  }
  if (command == "bench") return bench::bench_main(rest, nvme_settings);
  if (command == "generate") return generate_main(rest, *env);
  if (command == "chat") return chat_main(rest, *env);
  if (command != "train" && command != "eval" && command != "export" && command != "plan") {
    return usage_error("unknown command '" + command + "'");
  }
  return config_command_main(command, rest, *env);
}

}  // namespace dsinf::trainer
