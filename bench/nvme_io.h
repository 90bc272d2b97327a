// The NVMe measurement behind `dsinf bench nvme` and the NVMe rows of
// `dsinf bench tiers`: write a preallocated file through an I/O engine, then
// read it back, both O_DIRECT with the queue depth kept full, and check a
// sample of what came back so bandwidth is never reported for garbage.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "nvme/engine.h"

namespace dsinf::bench {

// What a dsinf config says about NVMe: its `aio` block and the first
// zero_optimization.offload_optimizer (else offload_param) nvme_path.
struct NvmeSettings {
  nvme::EngineOptions engine;
  nvme::EngineKind kind = nvme::EngineKind::kAuto;  // aio.engine
  std::string path;                                 // empty when the config names none
};

// "auto", "uring" or "threads"; kInvalidArgument naming `key` otherwise.
absl::StatusOr<nvme::EngineKind> parse_engine_kind(const std::string& text, const std::string& key);
// The NVMe settings of a config file (`--config FILE`): the front reads and
// validates it as `dsinf train` would (kInvalidArgument or kNotFound); the
// benchmarks only receive what it says.
using NvmeSettingsLoader = std::function<absl::StatusOr<NvmeSettings>(const std::string& path)>;

// A private directory <parent>/dsinf-bench-<pid> for the benchmark file,
// removed with its contents when the object dies (also on error or Ctrl-C).
class ScratchDir {
 public:
  // kInvalidArgument if `parent` is not a writable directory, kFailedPrecondition
  // if its file system has less than `needed_bytes` (plus a margin) free.
  static absl::StatusOr<ScratchDir> create(const std::string& parent, uint64_t needed_bytes);
  ScratchDir(ScratchDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  ScratchDir& operator=(ScratchDir&&) = delete;
  ScratchDir(const ScratchDir&) = delete;
  ~ScratchDir();
  const std::string& path() const { return path_; }

 private:
  explicit ScratchDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// A warning when `dir` lies on a memory-backed file system (tmpfs, ramfs),
// where O_DIRECT is accepted but no disk is involved; empty otherwise.
std::string memory_backed_warning(const std::string& dir);

struct NvmeRun {
  nvme::EngineKind kind = nvme::EngineKind::kAuto;
  nvme::EngineOptions options;
  uint64_t size_bytes = uint64_t{1} << 30;  // multiple of nvme::kDirectIoAlignment
  int repeat = 1;                           // measurements; the result holds their medians
};

struct NvmeResult {
  std::string engine;  // the engine's name(): "uring", "threads"
  nvme::EngineOptions options;
  uint64_t size_bytes = 0;
  double write_gbps = 0;  // 1e9 bytes per second, first submit to last completion
  double read_gbps = 0;
  double cpu_s_per_gb_write = 0;  // user + system CPU seconds of this process per 1e9 bytes
  double cpu_s_per_gb_read = 0;
};

// Measures one configuration in `dir`: each repeat writes a fresh preallocated
// file of run.size_bytes, then reads it back. `note` receives make_engine's
// fallback reason and other remarks for the log (empty if none).
// kCancelled when interrupted, kDataLoss when the data read back is wrong.
absl::StatusOr<NvmeResult> measure_nvme(const ScratchDir& dir, const NvmeRun& run,
                                        std::string* note);
// The same through an engine the caller made with run.options (tests use a
// misbehaving one to show that wrong data read back is caught).
absl::StatusOr<NvmeResult> measure_nvme_with(nvme::IoEngine& engine, const ScratchDir& dir,
                                             const NvmeRun& run, std::string* note);

// {"read_gbps", "write_gbps", "block_size", "queue_depth", "engine",
//  "intra_op_parallelism", "size_bytes", "cpu_s_per_gb_read", "cpu_s_per_gb_write"}
nlohmann::ordered_json to_json(const NvmeResult& result);
// The config's `aio` block for these options: {"block_size", "queue_depth",
// "intra_op_parallelism", "single_submit", "overlap_events"}.
nlohmann::ordered_json aio_block(const nvme::EngineOptions& options);

}  // namespace dsinf::bench
