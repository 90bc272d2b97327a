// Where dsinf plan's bandwidths come from: a `dsinf bench tiers --out` file,
// the cache, or a quick measurement written to the cache.
#include "trainer/plan/plan_tiers.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/host_bandwidth.h"
#include "bench/nvme_io.h"
#include "bench/report.h"
#include "kernels/backend.h"
#include "memory/util/atomic_file.h"
#include "memory/util/format.h"

namespace dsinf::trainer {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

// Quick in-process measurements: seconds, not minutes.
constexpr size_t kQuickArrayMin = size_t{32} << 20;
constexpr size_t kQuickArrayMax = size_t{256} << 20;
constexpr int kQuickPasses = 3;
constexpr uint64_t kQuickNvmeBytes = uint64_t{32} << 20;
constexpr int kMatmulDim = 512;
constexpr double kMatmulSeconds = 0.25;

// ---- bandwidths ----

absl::StatusOr<double> positive(const nlohmann::json& object, const std::string& key,
                                const std::string& where) {
  auto it = object.find(key);
  if (it == object.end()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": \"", key, "\" is missing"));
  }
  if (!it->is_number() || !(it->get<double>() > 0) || !std::isfinite(it->get<double>())) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": \"", key, "\" must be a positive number, got ", it->dump()));
  }
  return it->get<double>();
}

std::string cache_path() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && xdg[0] == '/') return absl::StrCat(xdg, "/dsinf/tiers.json");
  const char* home = std::getenv("HOME");
  if (home != nullptr && home[0] != '\0') return absl::StrCat(home, "/.cache/dsinf/tiers.json");
  return "";
}

absl::StatusOr<std::string> read_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " ", path, ": ", fs::exists(path, ec) ? "not a regular file" : "no such file"));
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) return absl::InvalidArgumentError(absl::StrCat(what, " ", path, ": cannot read it"));
  return text.str();
}

// Atomically (util::AtomicFileWriter), so a reader never sees half a file.
absl::Status write_cache(const std::string& path, const ojson& json) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec)
    return absl::UnavailableError(
        absl::StrCat("cannot create ", fs::path(path).parent_path().string(), ": ", ec.message()));
  absl::StatusOr<util::AtomicFileWriter> writer = util::AtomicFileWriter::open(path);
  if (!writer.ok()) return writer.status();
  if (absl::Status s = writer->write(json.dump(2) + "\n"); !s.ok()) return s;
  return writer->commit();
}

// GFLOP/s of the CPU backend's matmul_forward on 512x512x512, best of the runs
// that fit in about a quarter of a second.
absl::StatusOr<double> measure_cpu_gflops() {
  std::unique_ptr<kernels::Backend> backend = kernels::make_cpu_backend({});
  const size_t n = static_cast<size_t>(kMatmulDim) * kMatmulDim;
  std::vector<float> host(n);
  for (size_t i = 0; i < n; ++i) host[i] = static_cast<float>(i % 17) * 0.01f - 0.08f;
  float* buffers[3] = {};
  for (float*& b : buffers) {
    absl::StatusOr<void*> p = backend->allocate(n * sizeof(float));
    if (!p.ok()) return p.status();
    b = static_cast<float*>(*p);
  }
  absl::Status status =
      backend->copy_to_device(buffers[1], host.data(), n * sizeof(float), kernels::Stream::kUpload);
  status.Update(backend->copy_to_device(buffers[2], host.data(), n * sizeof(float),
                                        kernels::Stream::kUpload));
  status.Update(backend->synchronize(kernels::Stream::kUpload));
  double best = 0;
  if (status.ok()) {
    auto run = [&] {
      backend->matmul_forward(buffers[0], buffers[1], buffers[2], nullptr, kMatmulDim, kMatmulDim,
                              kMatmulDim);
      return backend->synchronize(kernels::Stream::kCompute);
    };
    status.Update(run());  // warm-up
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 50 && status.ok(); ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      status.Update(run());
      const auto t1 = std::chrono::steady_clock::now();
      const double s = std::chrono::duration<double>(t1 - t0).count();
      if (best == 0 || s < best) best = s;
      if (std::chrono::duration<double>(t1 - start).count() > kMatmulSeconds) break;
    }
  }
  for (float* b : buffers) {
    if (b != nullptr) backend->release(b);
  }
  if (!status.ok()) return status;
  return 2.0 * kMatmulDim * kMatmulDim * kMatmulDim / std::max(best, 1e-9) / 1e9;
}

// The directory the quick NVMe measurement uses: the optimizer's first
// nvme_path, else the parameters' (as `dsinf bench tiers --config` picks).
std::string nvme_measure_path(const Config& config) {
  if (!config.zero.offload_optimizer.nvme_path.empty() &&
      config.zero.offload_optimizer.device == OffloadDevice::kNvme) {
    return config.zero.offload_optimizer.nvme_path.front();
  }
  if (!config.zero.offload_param.nvme_path.empty() &&
      config.zero.offload_param.device == OffloadDevice::kNvme) {
    return config.zero.offload_param.nvme_path.front();
  }
  return "";
}

// O_DIRECT write and read of a small file at the config's aio settings.
absl::StatusOr<bench::NvmeResult> measure_nvme_quick(const Config& config, const std::string& dir,
                                                     std::ostream& log) {
  bench::NvmeRun run;
  run.options.block_size = static_cast<size_t>(config.aio.block_size);
  run.options.queue_depth = static_cast<int>(std::min<int64_t>(config.aio.queue_depth, INT_MAX));
  run.options.intra_op_parallelism =
      static_cast<int>(std::min<int64_t>(config.aio.intra_op_parallelism, INT_MAX));
  run.options.single_submit = config.aio.single_submit;
  run.options.overlap_events = config.aio.overlap_events;
  absl::StatusOr<nvme::EngineKind> kind = bench::parse_engine_kind(config.aio.engine, "aio.engine");
  if (!kind.ok()) return kind.status();
  run.kind = *kind;
  run.size_bytes = kQuickNvmeBytes;
  absl::StatusOr<bench::ScratchDir> scratch = bench::ScratchDir::create(dir, run.size_bytes);
  if (!scratch.ok()) return scratch.status();
  if (const std::string w = bench::memory_backed_warning(dir); !w.empty()) {
    log << "warning: " << w << "\n";
  }
  std::string note;
  absl::StatusOr<bench::NvmeResult> result = bench::measure_nvme(*scratch, run, &note);
  if (!note.empty()) log << "note: " << note << "\n";
  return result;
}

// --tiers FILE, else the cache, else a quick measurement (written to the cache).
}  // namespace

namespace {

// The bandwidths and the JSON of the cache being built.
struct Resolving {
  Bandwidths bw;
  ojson cache_json;
  bool cache_dirty = false;
};

// The cache at r.bw.where, when it is there and parses.
bool read_cache(Resolving& r, std::ostream& log) {
  std::error_code ec;
  if (r.bw.where.empty() || !fs::exists(r.bw.where, ec)) return false;
  absl::StatusOr<std::string> text = read_file(r.bw.where, "cache");
  absl::StatusOr<TierBandwidths> parsed =
      text.ok() ? parse_tiers_json(*text, absl::StrCat("cache ", r.bw.where))
                : absl::StatusOr<TierBandwidths>(text.status());
  if (!parsed.ok()) {
    log << "warning: ignoring the bandwidth cache: " << parsed.status().message()
        << "; measuring again\n";
    return false;
  }
  r.bw.tiers = *parsed;
  r.bw.source = "cache";
  r.cache_json = ojson::parse(*text, nullptr, false);
  return true;
}

absl::Status measure_host_quickly(Resolving& r, std::ostream& log) {
  log << "measuring host memory bandwidth (no --tiers FILE and no cache; `dsinf bench tiers "
         "--out FILE` measures properly)\n";
  bench::HostOptions host;
  host.array_bytes = std::clamp(2 * bench::last_level_cache_bytes(), kQuickArrayMin, kQuickArrayMax);
  host.passes = kQuickPasses;
  absl::StatusOr<double> gbps = bench::measure_update_gbps(host);
  if (!gbps.ok()) return gbps.status();
  r.bw.tiers.host_update_gbps = *gbps;
  r.bw.source = "measured";
  r.cache_json = {{"host_update_gbps", bench::round_significant(*gbps, 4)},
                  {"host_copy", nullptr},
                  {"nvme", nullptr},
                  {"device", nullptr},
                  {"host_array_bytes", host.array_bytes},
                  {"written_by", "dsinf plan (quick measurement)"}};
  r.cache_dirty = true;
  return absl::OkStatus();
}

// The cache may lack NVMe figures the placement needs: measure them now.
void measure_nvme_quickly(const Config& config, Resolving& r, std::ostream& log) {
  const std::string dir = nvme_measure_path(config);
  if (r.bw.tiers.nvme_read_gbps || dir.empty()) return;
  log << "measuring NVMe in " << dir << " (" << util::format_bytes(kQuickNvmeBytes)
      << " O_DIRECT file)\n";
  absl::StatusOr<bench::NvmeResult> nvme = measure_nvme_quick(config, dir, log);
  if (!nvme.ok()) {
    r.bw.nvme_reason = absl::StrCat("not measured: ", nvme.status().message());
    return;
  }
  r.bw.tiers.nvme_read_gbps = nvme->read_gbps;
  r.bw.tiers.nvme_write_gbps = nvme->write_gbps;
  r.cache_json["nvme"] = bench::to_json(*nvme);
  r.cache_json["nvme_path"] = dir;
  r.bw.source = "measured";
  r.cache_dirty = true;
}

absl::Status cpu_rate(Resolving& r) {
  if (r.bw.tiers.cpu_gflops) {
    r.bw.cpu_source = r.bw.source == "file" ? "file" : "cache";
    return absl::OkStatus();
  }
  absl::StatusOr<double> gflops = measure_cpu_gflops();
  if (!gflops.ok()) return gflops.status();
  r.bw.tiers.cpu_gflops = *gflops;
  r.bw.cpu_source = "measured";
  if (r.bw.source != "file") {
    r.cache_json["cpu_gflops"] = bench::round_significant(*gflops, 4);
    r.cache_dirty = true;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Bandwidths> resolve_bandwidths(const Config& config, const PlanOptions& options,
                                              const std::optional<TierBandwidths>& file_tiers,
                                              bool uses_nvme, std::ostream& log) {
  Resolving r;
  if (file_tiers) {
    r.bw.tiers = *file_tiers;
    r.bw.source = "file";
    r.bw.where = options.tiers_path;
  } else {
    r.bw.where = cache_path();
    if (!read_cache(r, log)) {
      if (absl::Status s = measure_host_quickly(r, log); !s.ok()) return s;
    }
    if (uses_nvme) measure_nvme_quickly(config, r, log);
  }
  if (absl::Status s = cpu_rate(r); !s.ok()) return s;
  if (uses_nvme && !r.bw.tiers.nvme_read_gbps && r.bw.nvme_reason.empty()) {
    r.bw.nvme_reason = r.bw.source == "file" ? "not measured: the --tiers file has no NVMe figures"
                                             : "not measured";
  }
  if (r.cache_dirty && !r.bw.where.empty() && r.bw.source != "file") {
    if (absl::Status s = write_cache(r.bw.where, r.cache_json); !s.ok()) {
      log << "warning: cannot write the bandwidth cache: " << s.message() << "\n";
    } else {
      log << "wrote " << r.bw.where << "\n";
    }
  }
  return r.bw;
}

absl::StatusOr<TierBandwidths> parse_tiers_json(const std::string& text, const std::string& name) {
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": not valid JSON (expected the object `dsinf bench tiers --out` writes)"));
  }
  if (!json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": expected a JSON object"));
  }
  TierBandwidths t;
  absl::StatusOr<double> host = positive(json, "host_update_gbps", name);
  if (!host.ok()) return host.status();
  t.host_update_gbps = *host;
  auto nvme = json.find("nvme");
  if (nvme != json.end() && !nvme->is_null()) {
    if (!nvme->is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": \"nvme\" must be an object or null, got ", nvme->dump()));
    }
    const std::string where = absl::StrCat(name, ": nvme");
    absl::StatusOr<double> read = positive(*nvme, "read_gbps", where);
    if (!read.ok()) return read.status();
    absl::StatusOr<double> write = positive(*nvme, "write_gbps", where);
    if (!write.ok()) return write.status();
    t.nvme_read_gbps = *read;
    t.nvme_write_gbps = *write;
  }
  if (json.contains("cpu_gflops") && !json["cpu_gflops"].is_null()) {
    absl::StatusOr<double> gflops = positive(json, "cpu_gflops", name);
    if (!gflops.ok()) return gflops.status();
    t.cpu_gflops = *gflops;
  }
  return t;
}

absl::StatusOr<TierBandwidths> read_tiers_file(const std::string& path) {
  absl::StatusOr<std::string> text = read_file(path, "--tiers");
  if (!text.ok()) return text.status();
  return parse_tiers_json(*text, absl::StrCat("--tiers ", path));
}

}  // namespace dsinf::trainer
