// `dsinf bench tiers`: one table of the machine's memory tiers -- host memory,
// host copies, host<->device, NVMe at the configured aio settings -- and the
// JSON that `dsinf plan` reads to predict step time.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/benchmarks.h"
#include "bench/device_bandwidth.h"
#include "bench/host_bandwidth.h"
#include "bench/interrupt.h"
#include "bench/nvme_io.h"
#include "bench/report.h"
#include "memory/util/args.h"
#include "memory/util/format.h"

namespace dsinf::bench {
namespace {

constexpr const char* kName = "tiers";
constexpr uint64_t kDefaultNvmeBytes = uint64_t{1} << 30;
constexpr uint64_t kQuickNvmeBytes = uint64_t{64} << 20;
constexpr uint64_t kQuickArrayBytes = uint64_t{16} << 20;
constexpr uint64_t kDefaultDeviceBytes = uint64_t{256} << 20;
constexpr uint64_t kQuickDeviceBytes = uint64_t{16} << 20;

constexpr const char* kUsage = R"(usage: dsinf bench tiers [options]

Measures the memory tiers training moves data through, each as GB/s
(1e9 bytes/s) next to host memory bandwidth, the ceiling measured in the
same run:
  host memory    a[i] += s*b[i] over float arrays far larger than the
                 last-level cache, all cores, 12 bytes per element
  host copy      memcpy pageable <-> aligned buffers, bytes counted once
  host<->device  the CUDA backend's copies (upload and download streams)
                 from pinned and from pageable memory; the pinned rows are
                 also compared with a plain cudaMemcpyAsync loop on
                 cudaHostAlloc memory, measured in the same run. n/a when
                 there is no CUDA device or the backend was not built
  NVMe           O_DIRECT write and read at the configured aio settings,
                 when --path or the config's nvme_path names a directory

options:
  --config FILE               aio settings and nvme_path from a dsinf config
  --path DIR                  directory for the NVMe rows (overrides the config's)
  --size BYTES                NVMe file size, suffixes K M G (default 1G)
  --engine auto|uring|threads I/O engine for the NVMe rows (default auto)
  --array-bytes BYTES         bytes per host array (default 256M, at least 4x the
                              last-level cache, at most 1/8 of available memory)
  --device-bytes BYTES        bytes per host<->device copy (default 256M)
  --passes N                  timed passes after one warm-up; medians (default 5)
  --quick                     small arrays, 2 passes, a 64M NVMe file: a smoke test,
                              not a measurement
  --out FILE                  also write the result JSON to FILE
  --json                      the table on stderr; the last stdout line is the JSON
)";

struct TiersPlan {
  HostOptions host;
  uint64_t device_bytes = kDefaultDeviceBytes;
  std::optional<NvmeRun> nvme;  // nullopt: not measured, for `nvme_reason`
  std::string nvme_path;
  std::string nvme_reason;
  std::string out_path;
  bool json = false;
};

absl::StatusOr<TiersPlan> make_plan(const Args& o, const NvmeSettingsLoader& load_settings) {
  TiersPlan plan;
  plan.json = o.flag("--json");
  plan.out_path = o.text("--out").value_or("");
  const bool quick = o.flag("--quick");
  absl::StatusOr<uint64_t> array_bytes =
      o.bytes("--array-bytes", quick ? kQuickArrayBytes : default_array_bytes(), 1 << 20,
              uint64_t{1} << 40);
  absl::StatusOr<int64_t> passes = o.integer("--passes", quick ? 2 : 5, 1, 1000);
  absl::StatusOr<uint64_t> size =
      o.bytes("--size", quick ? kQuickNvmeBytes : kDefaultNvmeBytes, 4096, uint64_t{1} << 50);
  absl::StatusOr<uint64_t> device_bytes = o.bytes(
      "--device-bytes", quick ? kQuickDeviceBytes : kDefaultDeviceBytes, 4096, uint64_t{1} << 40);
  for (const absl::Status& s :
       {array_bytes.status(), passes.status(), size.status(), device_bytes.status()}) {
    if (!s.ok()) return s;
  }
  if (*size % nvme::kDirectIoAlignment != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--size: ", *size, " is not a multiple of ", nvme::kDirectIoAlignment));
  }
  plan.host.array_bytes = *array_bytes / sizeof(float) * sizeof(float);
  plan.host.passes = static_cast<int>(*passes);
  plan.device_bytes = *device_bytes;

  NvmeSettings settings;
  if (std::optional<std::string> config = o.text("--config")) {
    absl::StatusOr<NvmeSettings> loaded = load_settings(*config);
    if (!loaded.ok()) return loaded.status();
    settings = *loaded;
  }
  NvmeRun run;
  run.options = settings.engine;
  run.size_bytes = *size;
  absl::StatusOr<nvme::EngineKind> kind =
      o.has("--engine") ? parse_engine_kind(*o.text("--engine"), "--engine") : settings.kind;
  if (!kind.ok()) return kind.status();
  run.kind = *kind;
  plan.nvme_path = o.text("--path").value_or(settings.path);
  if (plan.nvme_path.empty()) {
    plan.nvme_reason = o.has("--config")
                           ? "not measured: the config names no nvme_path and no --path was given"
                           : "not measured: no --path DIR (or --config with an nvme_path)";
  } else {
    plan.nvme = run;
  }
  return plan;
}

std::string ratio(double gbps, double ceiling_gbps) {
  return ceiling_gbps > 0 ? format_fixed(gbps / ceiling_gbps, 2) : "";
}

void print_table(const Reporter& out, const TiersPlan& plan, const HostBandwidth& host,
                 const std::optional<DeviceBandwidth>& device, const std::string& device_reason,
                 const std::optional<NvmeResult>& nvme) {
  const double ceiling = host.update_gbps;
  TextTable table({"tier", "direction", "GB/s", "vs host memory", "how"});
  table.add_row({"host memory", "update a += s*b", format_fixed(host.update_gbps, 2), "1.00",
                 absl::StrCat("2 x ", util::format_bytes(host.array_bytes), " float arrays, ",
                              host.threads, " threads, 12 B/element, median of ", host.passes)});
  const std::string copy_how = absl::StrCat(util::format_bytes(host.array_bytes),
                                            " memcpy in parallel slices, bytes counted once");
  table.add_row({"host copy", "pageable -> aligned", format_fixed(host.pageable_to_aligned_gbps, 2),
                 ratio(host.pageable_to_aligned_gbps, ceiling), copy_how});
  table.add_row({"host copy", "aligned -> pageable", format_fixed(host.aligned_to_pageable_gbps, 2),
                 ratio(host.aligned_to_pageable_gbps, ceiling), copy_how});
  if (device) {
    const std::string how =
        absl::StrCat(device->device, ", ", util::format_bytes(device->bytes), " copies, ",
                     device->copies, " a pass, median of ", device->passes);
    auto vs_ceiling = [](double gbps, double ceiling_gbps) {
      return absl::StrCat(format_fixed(gbps / ceiling_gbps, 2), "x a cudaMemcpyAsync loop (",
                          format_fixed(ceiling_gbps, 2), " GB/s); ");
    };
    table.add_row({"host<->device", "host -> device, pinned",
                   format_fixed(device->h2d_pinned_gbps, 2),
                   ratio(device->h2d_pinned_gbps, ceiling),
                   vs_ceiling(device->h2d_pinned_gbps, device->ceiling_h2d_gbps) + how});
    table.add_row({"host<->device", "device -> host, pinned",
                   format_fixed(device->d2h_pinned_gbps, 2),
                   ratio(device->d2h_pinned_gbps, ceiling),
                   vs_ceiling(device->d2h_pinned_gbps, device->ceiling_d2h_gbps) + how});
    table.add_row({"host<->device", "host -> device, pageable",
                   format_fixed(device->h2d_pageable_gbps, 2),
                   ratio(device->h2d_pageable_gbps, ceiling), how});
    table.add_row({"host<->device", "device -> host, pageable",
                   format_fixed(device->d2h_pageable_gbps, 2),
                   ratio(device->d2h_pageable_gbps, ceiling), how});
  } else {
    table.add_row({"host<->device", "host -> device", "n/a", "", device_reason});
    table.add_row({"host<->device", "device -> host", "n/a", "", device_reason});
  }
  if (nvme) {
    const std::string how = absl::StrCat(
        "engine ", nvme->engine, ", block_size ", util::format_bytes(nvme->options.block_size),
        ", queue_depth ", nvme->options.queue_depth, ", intra_op_parallelism ",
        nvme->options.intra_op_parallelism, ", ", util::format_bytes(nvme->size_bytes), " file in ",
        plan.nvme_path);
    table.add_row({"NVMe", "write", format_fixed(nvme->write_gbps, 2),
                   ratio(nvme->write_gbps, ceiling), how});
    table.add_row(
        {"NVMe", "read", format_fixed(nvme->read_gbps, 2), ratio(nvme->read_gbps, ceiling), how});
  } else {
    table.add_row({"NVMe", "write", "n/a", "", plan.nvme_reason});
    table.add_row({"NVMe", "read", "n/a", "", plan.nvme_reason});
  }
  out.text() << table.render();
  if (host.array_bytes < 4 * last_level_cache_bytes()) {
    out.text() << "note: the host arrays are not much larger than the last-level cache ("
               << util::format_bytes(last_level_cache_bytes())
               << "): host memory figures are cache figures\n";
  }
}

nlohmann::ordered_json device_json(const DeviceBandwidth& d) {
  return {{"name", d.device},
          {"bytes", d.bytes},
          {"h2d_pinned_gbps", round_significant(d.h2d_pinned_gbps, 4)},
          {"d2h_pinned_gbps", round_significant(d.d2h_pinned_gbps, 4)},
          {"h2d_pageable_gbps", round_significant(d.h2d_pageable_gbps, 4)},
          {"d2h_pageable_gbps", round_significant(d.d2h_pageable_gbps, 4)},
          {"ceiling_h2d_gbps", round_significant(d.ceiling_h2d_gbps, 4)},
          {"ceiling_d2h_gbps", round_significant(d.ceiling_d2h_gbps, 4)},
          {"h2d_vs_ceiling", round_significant(d.h2d_pinned_gbps / d.ceiling_h2d_gbps, 3)},
          {"d2h_vs_ceiling", round_significant(d.d2h_pinned_gbps / d.ceiling_d2h_gbps, 3)}};
}

// Written next to FILE and renamed over it, so a reader never sees half a file.
absl::Status write_json_file(const std::string& path, const nlohmann::ordered_json& json) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  {
    std::ofstream file(tmp, std::ios::binary | std::ios::trunc);
    file << json.dump(2) << "\n";
    file.flush();
    if (!file) {
      std::remove(tmp.c_str());
      return absl::InvalidArgumentError(absl::StrCat("--out ", path, ": cannot write ", tmp));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::InvalidArgumentError(absl::StrCat("--out ", path, ": cannot rename ", tmp));
  }
  return absl::OkStatus();
}

}  // namespace

int tiers_main(const std::vector<std::string>& args, const NvmeSettingsLoader& load_settings) {
  int exit_code = kExitOk;
  const std::optional<TiersPlan> plan = plan_from_args(
      kName, kUsage, args,
      {"--config", "--path", "--size", "--engine", "--array-bytes", "--device-bytes", "--passes",
       "--out"},
      {"--quick", "--json", "--help"}, [&](const Args& o) { return make_plan(o, load_settings); },
      &exit_code);
  if (!plan) return exit_code;
  const Reporter out(plan->json);
  InterruptGuard interrupt_guard;

  // The NVMe directory is checked before the minutes of host measurements.
  std::optional<ScratchDir> dir;
  if (plan->nvme) {
    absl::StatusOr<ScratchDir> created =
        ScratchDir::create(plan->nvme_path, plan->nvme->size_bytes);
    if (!created.ok()) return report_failure(kName, created.status());
    dir.emplace(std::move(*created));
    if (const std::string warning = memory_backed_warning(plan->nvme_path); !warning.empty()) {
      out.progress("warning: " + warning);
    }
  }
  out.progress(absl::StrCat("host memory: 2 x ", util::format_bytes(plan->host.array_bytes),
                            " arrays, ", plan->host.passes, " passes"));
  absl::StatusOr<HostBandwidth> host = measure_host(plan->host);
  if (!host.ok()) return report_failure(kName, host.status());

  std::string device_reason;
  out.progress(absl::StrCat("host<->device: ", util::format_bytes(plan->device_bytes), " copies"));
  absl::StatusOr<std::optional<DeviceBandwidth>> device =
      measure_device(plan->device_bytes, plan->host.passes, &device_reason);
  if (!device.ok()) return report_failure(kName, device.status());

  std::optional<NvmeResult> nvme;
  if (plan->nvme) {
    out.progress(absl::StrCat("NVMe: ", util::format_bytes(plan->nvme->size_bytes), " file in ",
                              plan->nvme_path));
    std::string note;
    absl::StatusOr<NvmeResult> measured = measure_nvme(*dir, *plan->nvme, &note);
    if (!note.empty()) out.progress("note: " + note);
    if (!measured.ok()) return report_failure(kName, measured.status());
    nvme = *measured;
  }
  print_table(out, *plan, *host, *device, device_reason, nvme);

  nlohmann::ordered_json result = {
      {"host_update_gbps", round_significant(host->update_gbps, 4)},
      {"host_copy",
       {{"pageable_to_aligned_gbps", round_significant(host->pageable_to_aligned_gbps, 4)},
        {"aligned_to_pageable_gbps", round_significant(host->aligned_to_pageable_gbps, 4)}}},
      {"nvme", nvme ? to_json(*nvme) : nlohmann::ordered_json(nullptr)},
      {"device", *device ? device_json(**device) : nlohmann::ordered_json(nullptr)},
      {"device_reason",
       *device ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(device_reason)},
      {"host_array_bytes", host->array_bytes},
      {"host_threads", host->threads}};
  if (!plan->out_path.empty()) {
    if (absl::Status s = write_json_file(plan->out_path, result); !s.ok()) {
      return report_failure(kName, s);
    }
  }
  out.result(result);
  return kExitOk;
}

}  // namespace dsinf::bench
