// `dsinf bench nvme`: O_DIRECT write and read bandwidth of a disk through
// dsinf's I/O engine, for one aio configuration or a sweep that picks the best.
#include <algorithm>
#include <iostream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/benchmarks.h"
#include "bench/interrupt.h"
#include "bench/nvme_io.h"
#include "bench/report.h"
#include "memory/util/args.h"
#include "memory/util/format.h"

namespace dsinf::bench {
namespace {

constexpr const char* kName = "nvme";
constexpr uint64_t kDefaultSizeBytes = uint64_t{1} << 30;
constexpr uint64_t kMaxSizeBytes = uint64_t{1} << 50;
constexpr uint64_t kMaxBlockBytes = uint64_t{1} << 30;
constexpr int64_t kMaxQueueDepth = 4096;
constexpr int64_t kMaxIntraOpParallelism = 64;
constexpr int64_t kMaxRepeat = 100;

constexpr const char* kUsage = R"(usage: dsinf bench nvme --path DIR [options]

Writes a preallocated file of --size bytes in a private subdirectory of DIR
(removed at the end) through dsinf's I/O engine, then reads it back, both with
O_DIRECT (no page cache) and the queue kept full; a sample of the data read
back is checked. Reports read and write GB/s (1e9 bytes/s) and CPU seconds per
GB of this process.

Without --block-size, --queue-depth and --config it sweeps block sizes 128K,
1M, 8M x queue depths 8, 32, 128 x intra_op_parallelism 1, 2 and prints the
best aio block (highest min(read, write) GB/s) to paste into a config.

options:
  --path DIR                  directory on the disk to measure
                              (default: the nvme_path of --config)
  --size BYTES                file size, suffixes K M G (default 1G)
  --block-size BYTES          aio.block_size: bytes per request (default 1M)
  --queue-depth N             aio.queue_depth: requests in flight per ring (default 8)
  --intra-op-parallelism N    aio.intra_op_parallelism: rings or thread groups (default 1)
  --engine auto|uring|threads auto: io_uring, else the pread/pwrite thread pool (default)
  --config FILE               measure the aio block and nvme_path of a dsinf config;
                              the options above override it
  --repeat N                  measurements per configuration; medians reported (default 1)
  --json                      tables on stderr; the last stdout line is the result JSON
)";

struct Plan {
  std::string path;
  NvmeRun base;
  std::vector<NvmeRun> runs;
  bool sweep = false;
  bool json = false;
};

absl::Status multiple_of_sector(const std::string& name, uint64_t bytes) {
  if (bytes % nvme::kDirectIoAlignment == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(name, ": ", bytes, " is not a multiple of ",
                                                 nvme::kDirectIoAlignment,
                                                 " (O_DIRECT alignment)"));
}

absl::StatusOr<Plan> make_plan(const Args& o, const NvmeSettingsLoader& load_settings) {
  Plan plan;
  plan.json = o.flag("--json");
  NvmeSettings settings;
  if (std::optional<std::string> config = o.text("--config")) {
    absl::StatusOr<NvmeSettings> loaded = load_settings(*config);
    if (!loaded.ok()) return loaded.status();
    settings = *loaded;
  }
  plan.path = o.text("--path").value_or(settings.path);
  if (plan.path.empty()) {
    return absl::InvalidArgumentError(
        "needs --path DIR (or --config FILE whose zero_optimization names an nvme_path)");
  }
  NvmeRun& run = plan.base;
  run.options = settings.engine;
  absl::StatusOr<uint64_t> size = o.bytes("--size", kDefaultSizeBytes, 4096, kMaxSizeBytes);
  absl::StatusOr<uint64_t> block =
      o.bytes("--block-size", run.options.block_size, 4096, kMaxBlockBytes);
  absl::StatusOr<int64_t> depth =
      o.integer("--queue-depth", run.options.queue_depth, 1, kMaxQueueDepth);
  absl::StatusOr<int64_t> parallelism = o.integer(
      "--intra-op-parallelism", run.options.intra_op_parallelism, 1, kMaxIntraOpParallelism);
  absl::StatusOr<int64_t> repeat = o.integer("--repeat", 1, 1, kMaxRepeat);
  absl::StatusOr<nvme::EngineKind> kind =
      o.has("--engine") ? parse_engine_kind(*o.text("--engine"), "--engine") : settings.kind;
  for (const absl::Status& s : {size.status(), block.status(), depth.status(), parallelism.status(),
                                repeat.status(), kind.status()}) {
    if (!s.ok()) return s;
  }
  if (absl::Status s = multiple_of_sector("--size", *size); !s.ok()) return s;
  if (absl::Status s = multiple_of_sector("--block-size", *block); !s.ok()) return s;
  run.size_bytes = *size;
  run.options.block_size = *block;
  run.options.queue_depth = static_cast<int>(*depth);
  run.options.intra_op_parallelism = static_cast<int>(*parallelism);
  run.repeat = static_cast<int>(*repeat);
  run.kind = *kind;

  plan.sweep = !o.has("--block-size") && !o.has("--queue-depth") && !o.has("--config");
  if (!plan.sweep) {
    plan.runs.push_back(run);
    return plan;
  }
  const std::vector<int64_t> parallelisms = o.has("--intra-op-parallelism")
                                                ? std::vector<int64_t>{*parallelism}
                                                : std::vector<int64_t>{1, 2};
  for (uint64_t block_bytes : {uint64_t{128} << 10, uint64_t{1} << 20, uint64_t{8} << 20}) {
    for (int queue_depth : {8, 32, 128}) {
      for (int64_t p : parallelisms) {
        NvmeRun r = run;
        r.options.block_size = block_bytes;
        r.options.queue_depth = queue_depth;
        r.options.intra_op_parallelism = static_cast<int>(p);
        plan.runs.push_back(r);
      }
    }
  }
  return plan;
}

std::string describe(const nvme::EngineOptions& o) {
  return absl::StrCat("block_size ", util::format_bytes(o.block_size), " queue_depth ",
                      o.queue_depth, " intra_op_parallelism ", o.intra_op_parallelism);
}

double min_gbps(const NvmeResult& r) { return std::min(r.read_gbps, r.write_gbps); }

void print_table(const Reporter& out, const std::vector<NvmeResult>& results, double best_gbps) {
  // A sweep compares each configuration with its best; one configuration has
  // nothing to compare with here (scripts/compare_fio.sh measures it against fio).
  const bool sweep = results.size() > 1;
  std::vector<std::string> header = {"block_size",    "queue_depth", "intra_op_parallelism",
                                     "read GB/s",     "write GB/s",  "CPU s/GB read",
                                     "CPU s/GB write"};
  if (sweep) header.push_back("min vs best");
  TextTable table(header);
  for (const NvmeResult& r : results) {
    std::vector<std::string> row = {util::format_bytes(r.options.block_size),
                                    absl::StrCat(r.options.queue_depth),
                                    absl::StrCat(r.options.intra_op_parallelism),
                                    format_fixed(r.read_gbps, 3),
                                    format_fixed(r.write_gbps, 3),
                                    format_fixed(r.cpu_s_per_gb_read, 3),
                                    format_fixed(r.cpu_s_per_gb_write, 3)};
    if (sweep) row.push_back(format_fixed(best_gbps > 0 ? min_gbps(r) / best_gbps : 0.0, 2));
    table.add_row(row);
  }
  out.text() << table.render();
}

}  // namespace

int nvme_main(const std::vector<std::string>& args, const NvmeSettingsLoader& load_settings) {
  int exit_code = kExitOk;
  const std::optional<Plan> plan = plan_from_args(
      kName, kUsage, args,
      {"--path", "--size", "--block-size", "--queue-depth", "--intra-op-parallelism", "--engine",
       "--config", "--repeat"},
      {"--json", "--help"}, [&](const Args& o) { return make_plan(o, load_settings); }, &exit_code);
  if (!plan) return exit_code;
  const Reporter out(plan->json);
  InterruptGuard interrupt_guard;
  absl::StatusOr<ScratchDir> dir = ScratchDir::create(plan->path, plan->base.size_bytes);
  if (!dir.ok()) return report_failure(kName, dir.status());
  if (const std::string warning = memory_backed_warning(plan->path); !warning.empty()) {
    out.progress("warning: " + warning);
  }

  std::vector<NvmeResult> results;
  std::set<std::string> notes_printed;
  for (size_t i = 0; i < plan->runs.size(); ++i) {
    const NvmeRun& run = plan->runs[i];
    std::string note;
    absl::StatusOr<NvmeResult> result = measure_nvme(*dir, run, &note);
    if (!note.empty() && notes_printed.insert(note).second) out.progress("note: " + note);
    if (!result.ok()) {
      if (result.status().code() == absl::StatusCode::kCancelled) {
        return report_failure(
            kName, absl::CancelledError(absl::StrCat("interrupted; removing ", dir->path())));
      }
      return report_failure(kName, result.status());
    }
    out.progress(absl::StrCat("[", i + 1, "/", plan->runs.size(), "] ", describe(run.options),
                              " engine ", result->engine, ": write ",
                              format_fixed(result->write_gbps, 3), " GB/s, read ",
                              format_fixed(result->read_gbps, 3), " GB/s"));
    results.push_back(*result);
  }

  // The best configuration serves both directions: the highest min(read, write).
  const auto best = std::max_element(
      results.begin(), results.end(),
      [](const NvmeResult& a, const NvmeResult& b) { return min_gbps(a) < min_gbps(b); });
  const int repeat = plan->base.repeat;
  out.text() << absl::StrCat(
      util::format_bytes(plan->base.size_bytes), " file in ", plan->path, ", O_DIRECT, engine ",
      best->engine, repeat > 1 ? absl::StrCat(", medians of ", repeat, " runs") : "", ":\n");
  print_table(out, results, min_gbps(*best));
  if (!plan->sweep) {
    out.result(to_json(results.front()));
    return kExitOk;
  }
  const nlohmann::ordered_json best_block = {{"aio", aio_block(best->options)}};
  out.text() << "best aio block (the configuration with the highest min(read GB/s, write GB/s), "
             << format_fixed(min_gbps(*best), 3) << " GB/s); paste it into the config:\n";
  if (!plan->json) {
    std::cout << best_block.dump() << std::endl;
    return kExitOk;
  }
  out.text() << best_block.dump() << "\n";
  nlohmann::ordered_json all = nlohmann::ordered_json::array();
  for (const NvmeResult& r : results) all.push_back(to_json(r));
  out.result({{"results", all},
              {"best", best_block},
              {"chosen_by", "highest min(read_gbps, write_gbps)"}});
  return kExitOk;
}

}  // namespace dsinf::bench
