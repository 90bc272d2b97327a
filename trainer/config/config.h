// The run configuration: DeepSpeed's ds_config keys with DeepSpeed's meaning
// and defaults, plus dsinf's own sections (model, data, train, memory).
// Parsing is strict: unknown keys, wrong types, out-of-range values and
// inconsistent combinations are kInvalidArgument errors whose message names the
// JSON path of the key (e.g. "zero_optimization.offload_param.device").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "actors/runtime/loss_scaler.h"
#include "trainer/config/model_config.h"

namespace dsinf::trainer {

enum class OffloadDevice { kNone, kCpu, kNvme };
enum class SchedulerType { kNone, kWarmupLR, kWarmupDecayLR, kWarmupCosineLR };
enum class WarmupType { kLog, kLinear };

struct OptimizerConfig {
  std::string type = "Adam";  // "Adam" or "AdamW"
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool adam_w_mode = true;  // resolved: always true for AdamW
  bool bias_correction = true;
};

struct SchedulerConfig {
  SchedulerType type = SchedulerType::kNone;
  // WarmupLR / WarmupDecayLR
  double warmup_min_lr = 0.0;
  double warmup_max_lr = 1e-3;  // resolved: WarmupLR defaults to optimizer.lr
  // WarmupCosineLR
  double warmup_min_ratio = 0.0;
  double cos_min_ratio = 1e-4;
  // all
  int64_t warmup_num_steps = 1000;
  WarmupType warmup_type = WarmupType::kLog;
  int64_t total_num_steps = 0;  // required for WarmupDecayLR and WarmupCosineLR
};

// DeepSpeed's fp16 block is the loss scaler's settings: one struct serves both.
using Fp16Config = actors::LossScaleSpec;

struct OffloadParamConfig {
  OffloadDevice device = OffloadDevice::kNone;
  std::vector<std::string> nvme_path;  // one or more directories (string or list in JSON)
  bool pin_memory = true;
  int64_t buffer_count = 5;
  int64_t buffer_size = 100000000;
  int64_t max_in_cpu = 1000000000;
};

struct OffloadOptimizerConfig {
  OffloadDevice device = OffloadDevice::kNone;
  std::vector<std::string> nvme_path;
  bool pin_memory = true;
  int64_t buffer_count = 4;
  bool fast_init = false;
  double ratio = 1.0;
};

struct ZeroConfig {
  int stage = 0;
  OffloadParamConfig offload_param;
  OffloadOptimizerConfig offload_optimizer;
  int64_t stage3_prefetch_bucket_size = 50000000;
  // dsinf's default is 0, not DeepSpeed's 1e5: DeepSpeed compares single tensors
  // (biases, LayerNorm vectors), dsinf whole layer chunks, and at 1e5 elements
  // every layer of a small model would stay on the device.
  int64_t stage3_param_persistence_threshold = 0;
  int64_t stage3_max_live_parameters = 1000000000;
  int64_t stage3_max_reuse_distance = 1000000000;
  int64_t sub_group_size = 1000000000;
  bool overlap_comm = false;
  bool contiguous_gradients = true;
  int64_t reduce_bucket_size = 500000000;
  int64_t allgather_bucket_size = 500000000;
};

struct AioConfig {
  int64_t block_size = 1048576;
  int64_t queue_depth = 8;
  int64_t intra_op_parallelism = 1;
  bool single_submit = false;
  bool overlap_events = true;
  bool use_gds = false;
  // dsinf's own key: which engine serves the aio settings. "auto" takes io_uring
  // and falls back to the pread/pwrite thread pool when no ring can be created.
  std::string engine = "auto";  // "auto", "uring" or "threads"
};

struct MonitorConfig {
  bool enabled = false;
  std::string output_path;  // empty: train.output_dir
  std::string job_name = "DeepSpeedJobName";
};

// What the examples of data.path are and where the loss is taken.
enum class DataFormat {
  kText,              // language modelling on every token
  kChat,              // JSONL {"messages": [...]}: the chat template; loss on assistant turns
  kPromptCompletion,  // JSONL {"prompt", "completion"}: loss on the completion
};
enum class Truncation { kRight, kDrop };  // examples longer than a window

struct DataConfig {
  std::string path;
  std::string eval_path;  // empty: evaluate on path
  int64_t seq_len = 0;    // as written; 0: absent (model.seq_len is the resolved value)
  DataFormat format = DataFormat::kText;
  // The tokenizer (tokenizer.json, or a directory with it and, for chat,
  // tokenizer_config.json); empty: model.init_from's directory when it has one.
  std::string tokenizer;
  bool append_eos = false;  // text: the EOS token after each document
  Truncation truncation = Truncation::kRight;
  bool packing = false;  // accepted; examples are padded one per window (warned)
};

struct TrainConfig {
  int64_t steps = 0;
  std::string output_dir;
  int64_t save_interval = 0;  // 0: only the final checkpoint
  int64_t eval_interval = 0;  // 0: no evaluation during training
  uint64_t seed = 1234;
};

struct MemoryConfig {
  uint64_t device_budget_bytes = 0;  // 0: no budget
  uint64_t host_budget_bytes = 0;
};

// Which backend runs the model: the top-level "device" key (a dsinf key).
enum class DeviceKind { kAuto, kCpu, kCuda };
struct DeviceConfig {
  DeviceKind kind = DeviceKind::kAuto;
  int index = 0;              // cuda:N
  std::string name = "auto";  // as written
};

struct Config {
  std::string source_path;  // the file it was read from
  // The data-parallel ranks the run has (the launcher's): train_batch_size
  // is micro batch * accumulation steps * world_size, as in DeepSpeed.
  int world_size = 1;

  int64_t train_batch_size = 0;
  int64_t train_micro_batch_size_per_gpu = 0;
  int64_t gradient_accumulation_steps = 0;
  OptimizerConfig optimizer;
  SchedulerConfig scheduler;
  double gradient_clipping = 1.0;  // DeepSpeed's current default; 0 disables
  int64_t steps_per_print = 10;
  bool wall_clock_breakdown = false;
  Fp16Config fp16;
  bool bf16_enabled = false;
  ZeroConfig zero;
  AioConfig aio;
  MonitorConfig tensorboard;
  MonitorConfig csv_monitor;
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  MemoryConfig memory;
  DeviceConfig device;
};

struct LoadedConfig {
  Config config;
  // Keys dsinf accepted but does not act on in this build, one line each, for the log.
  std::vector<std::string> warnings;
};

// Reads, parses and validates. Errors are kInvalidArgument (bad content) or
// kNotFound (the config file itself is missing), with a one-line message that
// starts with the file name and names the JSON path of the offending key.
absl::StatusOr<LoadedConfig> load_config(const std::string& path, int world_size = 1);
// The "device" key's value: "auto", "cpu", "cuda" or "cuda:N"; kInvalidArgument
// saying what is accepted otherwise.
absl::StatusOr<DeviceConfig> parse_device(const std::string& text);
// Same, from text already in memory; `source_name` is used in messages.
// Relative paths in the config are relative to the working directory.
absl::StatusOr<LoadedConfig> parse_config(const std::string& text, const std::string& source_name,
                                          int world_size = 1);

}  // namespace dsinf::trainer
