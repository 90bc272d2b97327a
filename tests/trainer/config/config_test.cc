#include "trainer/config/config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"

namespace dsinf::trainer {
namespace {

using Json = nlohmann::ordered_json;

// A temporary tree shared by all tests: @TMP@ in configs stands for its root.
//   data/shard0.bin  train.bin  empty/  nvme/  init.safetensors
class TempTree {
 public:
  TempTree() {
    std::string templ = ::testing::TempDir() + "/config_test.XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) std::abort();
    root_ = templ;
    std::filesystem::create_directories(root_ + "/data");
    std::filesystem::create_directories(root_ + "/empty");
    std::filesystem::create_directories(root_ + "/nvme");
    for (const char* file : {"/data/shard0.bin", "/train.bin", "/init.safetensors"}) {
      std::ofstream(root_ + file) << "0123456789";
    }
  }
  ~TempTree() {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  const std::string& root() const { return root_; }

 private:
  std::string root_;
};

const TempTree& tree() {
  static const TempTree instance;
  return instance;
}

std::string expand(const std::string& text) {
  return absl::StrReplaceAll(text, {{"@TMP@", tree().root()}});
}

constexpr char kSource[] = "test.json";
constexpr char kBaseConfig[] = R"({
  "train_micro_batch_size_per_gpu": 4,
  "model": {},
  "data": {"path": "@TMP@/data"},
  "train": {"steps": 10, "output_dir": "@TMP@/out"}
})";

// The base config with a JSON merge patch applied (null deletes a key).
std::string patched(const std::string& patch) {
  Json config = Json::parse(kBaseConfig);
  config.merge_patch(Json::parse(patch));
  return expand(config.dump(2));
}

absl::StatusOr<LoadedConfig> parse_patched(const std::string& patch) {
  return parse_config(patched(patch), kSource);
}

bool has_warning(const LoadedConfig& loaded, const std::string& key) {
  for (const std::string& w : loaded.warnings) {
    if (absl::StrContains(w, absl::StrCat(": ", key, ": "))) return true;
  }
  return false;
}

TEST(ConfigTest, BaseConfigHasDocumentedDefaults) {
  const absl::StatusOr<LoadedConfig> loaded = parse_patched("{}");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Config& c = loaded->config;
  EXPECT_EQ(c.source_path, kSource);
  EXPECT_EQ(c.train_batch_size, 4);
  EXPECT_EQ(c.train_micro_batch_size_per_gpu, 4);
  EXPECT_EQ(c.gradient_accumulation_steps, 1);
  EXPECT_EQ(c.optimizer.type, "Adam");
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 1e-3);
  EXPECT_DOUBLE_EQ(c.optimizer.beta1, 0.9);
  EXPECT_DOUBLE_EQ(c.optimizer.beta2, 0.999);
  EXPECT_DOUBLE_EQ(c.optimizer.eps, 1e-8);
  EXPECT_DOUBLE_EQ(c.optimizer.weight_decay, 0.0);
  EXPECT_TRUE(c.optimizer.adam_w_mode);
  EXPECT_TRUE(c.optimizer.bias_correction);
  EXPECT_EQ(c.scheduler.type, SchedulerType::kNone);
  EXPECT_DOUBLE_EQ(c.gradient_clipping, 1.0);
  EXPECT_EQ(c.steps_per_print, 10);
  EXPECT_FALSE(c.wall_clock_breakdown);
  EXPECT_FALSE(c.fp16.enabled);
  EXPECT_EQ(c.fp16.initial_scale_power, 16);
  EXPECT_EQ(c.fp16.loss_scale_window, 1000);
  EXPECT_EQ(c.fp16.hysteresis, 2);
  EXPECT_DOUBLE_EQ(c.fp16.min_loss_scale, 1.0);
  EXPECT_FALSE(c.bf16_enabled);
  EXPECT_EQ(c.zero.stage, 0);
  EXPECT_EQ(c.zero.offload_param.device, OffloadDevice::kNone);
  EXPECT_EQ(c.zero.offload_param.buffer_count, 5);
  EXPECT_EQ(c.zero.offload_param.buffer_size, 100000000);
  EXPECT_EQ(c.zero.offload_optimizer.device, OffloadDevice::kNone);
  EXPECT_EQ(c.zero.offload_optimizer.buffer_count, 4);
  EXPECT_EQ(c.zero.stage3_prefetch_bucket_size, 50000000);
  EXPECT_EQ(c.zero.stage3_max_live_parameters, 1000000000);
  EXPECT_EQ(c.zero.stage3_param_persistence_threshold, 0);  // dsinf's default (config.h)
  EXPECT_EQ(c.zero.sub_group_size, 1000000000);
  EXPECT_EQ(c.aio.block_size, 1048576);
  EXPECT_EQ(c.aio.queue_depth, 8);
  EXPECT_EQ(c.aio.intra_op_parallelism, 1);
  EXPECT_TRUE(c.aio.overlap_events);
  EXPECT_EQ(c.aio.engine, "auto");
  EXPECT_FALSE(c.tensorboard.enabled);
  EXPECT_EQ(c.csv_monitor.job_name, "DeepSpeedJobName");
  EXPECT_EQ(c.model.type, "gpt2");
  EXPECT_EQ(c.model.n_layer, 12);
  EXPECT_EQ(c.model.n_head, 12);
  EXPECT_EQ(c.model.n_embd, 768);
  EXPECT_EQ(c.model.n_positions, 1024);
  EXPECT_EQ(c.model.vocab_size, 50257);
  EXPECT_EQ(c.model.seed, 42u);
  EXPECT_TRUE(c.model.init_from.empty());
  EXPECT_EQ(c.data.path, tree().root() + "/data");
  EXPECT_TRUE(c.data.eval_path.empty());
  EXPECT_EQ(c.train.steps, 10);
  EXPECT_EQ(c.train.output_dir, tree().root() + "/out");
  EXPECT_EQ(c.train.save_interval, 0);
  EXPECT_EQ(c.train.eval_interval, 0);
  EXPECT_EQ(c.train.seed, 1234u);
  EXPECT_EQ(c.memory.device_budget_bytes, 0u);
  EXPECT_EQ(c.memory.host_budget_bytes, 0u);
  EXPECT_TRUE(loaded->warnings.empty());
}

TEST(ConfigTest, ReadsEveryValue) {
  const absl::StatusOr<LoadedConfig> loaded = parse_patched(R"({
    "optimizer": {"type": "adamw", "params": {"lr": 6e-4, "betas": [0.8, 0.95], "eps": 1e-6,
                  "weight_decay": 0.1, "bias_correction": false}},
    "scheduler": {"type": "WarmupDecayLR", "params": {"total_num_steps": 5e3,
                  "warmup_num_steps": 100, "warmup_type": "linear", "warmup_min_lr": 1e-5,
                  "last_batch_iteration": -1}},
    "gradient_clipping": 0, "steps_per_print": 5, "wall_clock_breakdown": true,
    "bfloat16": {"enabled": false},
    "tensorboard": {"enabled": true, "output_path": "tb", "job_name": "run1"},
    "model": {"n_layer": 2, "n_head": 4, "n_embd": 64, "n_positions": 128, "vocab_size": 256,
              "init_from": "@TMP@/init.safetensors", "seed": 7},
    "data": {"path": "@TMP@/train.bin", "eval_path": "@TMP@/data"},
    "train": {"save_interval": 5, "eval_interval": 2, "seed": 0},
    "memory": {"device_budget_bytes": 1e9}
  })");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Config& c = loaded->config;
  EXPECT_EQ(c.optimizer.type, "AdamW");
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 6e-4);
  EXPECT_DOUBLE_EQ(c.optimizer.beta1, 0.8);
  EXPECT_DOUBLE_EQ(c.optimizer.beta2, 0.95);
  EXPECT_DOUBLE_EQ(c.optimizer.eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.optimizer.weight_decay, 0.1);
  EXPECT_TRUE(c.optimizer.adam_w_mode);
  EXPECT_FALSE(c.optimizer.bias_correction);
  EXPECT_EQ(c.scheduler.type, SchedulerType::kWarmupDecayLR);
  EXPECT_EQ(c.scheduler.total_num_steps, 5000);
  EXPECT_EQ(c.scheduler.warmup_num_steps, 100);
  EXPECT_EQ(c.scheduler.warmup_type, WarmupType::kLinear);
  EXPECT_DOUBLE_EQ(c.scheduler.warmup_min_lr, 1e-5);
  EXPECT_DOUBLE_EQ(c.scheduler.warmup_max_lr, 0.001);  // WarmupDecayLR's own default
  EXPECT_DOUBLE_EQ(c.gradient_clipping, 0.0);
  EXPECT_EQ(c.steps_per_print, 5);
  EXPECT_TRUE(c.wall_clock_breakdown);
  EXPECT_TRUE(c.tensorboard.enabled);
  EXPECT_EQ(c.tensorboard.output_path, "tb");
  EXPECT_EQ(c.tensorboard.job_name, "run1");
  EXPECT_EQ(c.model.n_layer, 2);
  EXPECT_EQ(c.model.n_head, 4);
  EXPECT_EQ(c.model.n_embd, 64);
  EXPECT_EQ(c.model.init_from, tree().root() + "/init.safetensors");
  EXPECT_EQ(c.model.seed, 7u);
  EXPECT_EQ(c.data.eval_path, tree().root() + "/data");
  EXPECT_EQ(c.train.seed, 0u);
  EXPECT_EQ(c.memory.device_budget_bytes, 1000000000u);
  EXPECT_TRUE(loaded->warnings.empty());  // device_budget_bytes is enforced
}

TEST(ConfigTest, ReadsAioBlockWithEngine) {
  const absl::StatusOr<LoadedConfig> loaded = parse_patched(R"({
    "aio": {"block_size": 8388608, "queue_depth": 32, "intra_op_parallelism": 2,
            "single_submit": true, "overlap_events": false, "engine": "threads"}
  })");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const AioConfig& a = loaded->config.aio;
  EXPECT_EQ(a.block_size, 8388608);
  EXPECT_EQ(a.queue_depth, 32);
  EXPECT_EQ(a.intra_op_parallelism, 2);
  EXPECT_TRUE(a.single_submit);
  EXPECT_FALSE(a.overlap_events);
  EXPECT_EQ(a.engine, "threads");
}

TEST(ConfigTest, SchedulerDefaults) {
  absl::StatusOr<LoadedConfig> loaded = parse_patched(
      R"({"optimizer": {"type": "Adam", "params": {"lr": 3e-4, "adam_w_mode": false}},
          "scheduler": {"type": "WarmupLR"}})");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->config.optimizer.adam_w_mode);
  EXPECT_EQ(loaded->config.scheduler.type, SchedulerType::kWarmupLR);
  EXPECT_DOUBLE_EQ(loaded->config.scheduler.warmup_max_lr, 3e-4);  // the optimizer's lr
  EXPECT_DOUBLE_EQ(loaded->config.scheduler.warmup_min_lr, 0.0);
  EXPECT_EQ(loaded->config.scheduler.warmup_num_steps, 1000);
  EXPECT_EQ(loaded->config.scheduler.warmup_type, WarmupType::kLog);

  loaded = parse_patched(R"({"scheduler": {"type": "WarmupCosineLR",
      "params": {"total_num_steps": 100, "warmup_min_ratio": 0.1}}})");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->config.scheduler.type, SchedulerType::kWarmupCosineLR);
  EXPECT_EQ(loaded->config.scheduler.total_num_steps, 100);
  EXPECT_DOUBLE_EQ(loaded->config.scheduler.warmup_min_ratio, 0.1);
  EXPECT_DOUBLE_EQ(loaded->config.scheduler.cos_min_ratio, 1e-4);
}

struct BatchCase {
  const char* patch;
  int64_t train_batch_size, micro_batch, accumulation;
};

TEST(ConfigTest, BatchTripleDerivations) {
  const BatchCase cases[] = {
      {R"({"train_micro_batch_size_per_gpu": 4})", 4, 4, 1},
      {R"({"train_micro_batch_size_per_gpu": null, "train_batch_size": 16})", 16, 16, 1},
      {R"({"train_batch_size": 16})", 16, 4, 4},
      {R"({"gradient_accumulation_steps": 3})", 12, 4, 3},
      {R"({"train_micro_batch_size_per_gpu": null, "train_batch_size": 12,
           "gradient_accumulation_steps": 3})",
       12, 4, 3},
      {R"({"train_batch_size": 8, "gradient_accumulation_steps": 2})", 8, 4, 2},
      {R"({"train_batch_size": 8.0, "gradient_accumulation_steps": 2e0})", 8, 4, 2},
  };
  for (const BatchCase& bc : cases) {
    const absl::StatusOr<LoadedConfig> loaded = parse_patched(bc.patch);
    ASSERT_TRUE(loaded.ok()) << bc.patch << ": " << loaded.status();
    EXPECT_EQ(loaded->config.train_batch_size, bc.train_batch_size) << bc.patch;
    EXPECT_EQ(loaded->config.train_micro_batch_size_per_gpu, bc.micro_batch) << bc.patch;
    EXPECT_EQ(loaded->config.gradient_accumulation_steps, bc.accumulation) << bc.patch;
  }
}

// Every example config runs as it stands: it loads with no error and no warning.
TEST(ConfigTest, ShippedConfigsLoadCleanly) {
  // They are run from the repository root (their relative paths say so).
  const std::filesystem::path before = std::filesystem::current_path();
  std::filesystem::current_path(DSINF_SOURCE_DIR);
  int seen = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(DSINF_SOURCE_DIR) + "/configs")) {
    if (entry.path().extension() != ".json") continue;
    ++seen;
    const absl::StatusOr<LoadedConfig> loaded = load_config(entry.path().string());
    // A fine-tune config names a checkpoint and data the README says how to
    // get: until they are there it must say which path is missing.
    const nlohmann::json raw = nlohmann::json::parse(std::ifstream(entry.path()));
    const std::string init_from = raw["model"].value("init_from", "");
    if (!init_from.empty() && !std::filesystem::exists(init_from)) {
      ASSERT_FALSE(loaded.ok()) << entry.path();
      EXPECT_TRUE(absl::StrContains(loaded.status().message(), "cannot access")) << loaded.status();
      continue;
    }
    ASSERT_TRUE(loaded.ok()) << entry.path() << ": " << loaded.status();
    EXPECT_TRUE(loaded->warnings.empty())
        << entry.path() << ": " << (loaded->warnings.empty() ? "" : loaded->warnings.front());
  }
  EXPECT_GE(seen, 3);
  std::filesystem::current_path(before);
}

TEST(ConfigTest, WarningsOnlyForPresentKeysNotActedOn) {
  const absl::StatusOr<LoadedConfig> loaded = parse_patched(R"({
    "optimizer": {"type": "Adam", "params": {"torch_adam": false}},
    "fp16": {"enabled": true, "auto_cast": false},
    "zero_optimization": {"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "@TMP@/nvme"},
                          "offload_optimizer": {"device": "cpu"}, "stage3_max_live_parameters": 1e9,
                          "sub_group_size": 1e8, "reduce_bucket_size": 5e8, "overlap_comm": true,
                          "allgather_bucket_size": 5e8},
    "aio": {"block_size": 1048576},
    "wandb": {"enabled": true, "project": "p"},
    "checkpoint": {"tag_validation": "warn"},
    "memory": {"device_budget_bytes": 1000, "host_budget_bytes": 2000}
  })");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  for (const char* key :
       {"optimizer.params.torch_adam", "fp16.auto_cast", "zero_optimization.sub_group_size",
        "zero_optimization.allgather_bucket_size", "wandb.enabled", "checkpoint"}) {
    EXPECT_TRUE(has_warning(*loaded, key)) << key;
  }
  for (const char* key :
       {"memory.device_budget_bytes", "zero_optimization.stage3_max_reuse_distance",
        "zero_optimization.stage3_max_live_parameters", "zero_optimization.contiguous_gradients",
        "zero_optimization.overlap_comm", "zero_optimization.reduce_bucket_size",
        "fp16.enabled", "bf16.enabled", "zero_optimization.stage",
        "zero_optimization.offload_param", "zero_optimization.offload_optimizer", "aio",
        "memory.host_budget_bytes"}) {
    EXPECT_FALSE(has_warning(*loaded, key)) << key;
  }
  for (const std::string& w : loaded->warnings) {
    EXPECT_TRUE(absl::StartsWith(w, "test.json: ")) << w;
    EXPECT_EQ(w.find('\n'), std::string::npos) << w;
  }
  EXPECT_EQ(loaded->config.zero.offload_param.device, OffloadDevice::kNvme);
  EXPECT_EQ(loaded->config.zero.offload_param.nvme_path,
            std::vector<std::string>{tree().root() + "/nvme"});
  EXPECT_EQ(loaded->config.zero.stage3_max_live_parameters, 1000000000);
  EXPECT_EQ(loaded->config.memory.host_budget_bytes, 2000u);
}

// The stage-3 keys the parameter streamer acts on are read without a warning;
// the two that have nothing to act on at chunk granularity say why.
TEST(ConfigTest, StageThreeStreamingKeysAreActedOnTheOthersWarnWhy) {
  const absl::StatusOr<LoadedConfig> loaded = parse_patched(R"({
    "zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"},
                          "stage3_prefetch_bucket_size": 123, "stage3_max_live_parameters": 456,
                          "stage3_param_persistence_threshold": 789,
                          "stage3_max_reuse_distance": 10, "sub_group_size": 20}
  })");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const ZeroConfig& z = loaded->config.zero;
  EXPECT_EQ(z.stage3_prefetch_bucket_size, 123);
  EXPECT_EQ(z.stage3_max_live_parameters, 456);
  EXPECT_EQ(z.stage3_param_persistence_threshold, 789);
  for (const char* key : {"zero_optimization.stage3_prefetch_bucket_size",
                          "zero_optimization.stage3_max_live_parameters",
                          "zero_optimization.stage3_param_persistence_threshold"}) {
    EXPECT_FALSE(has_warning(*loaded, key)) << key;
  }
  ASSERT_EQ(loaded->warnings.size(), 2u) << absl::StrJoin(loaded->warnings, "\n");
  for (const std::string& w : loaded->warnings) {
    EXPECT_TRUE(absl::StrContains(w, "one layer chunk at a time") ||
                absl::StrContains(w, "whole layer chunks"))
        << w;
    EXPECT_FALSE(absl::StrContains(w, "yet")) << w;
  }
  EXPECT_TRUE(has_warning(*loaded, "zero_optimization.sub_group_size"));
  EXPECT_TRUE(has_warning(*loaded, "zero_optimization.stage3_max_reuse_distance"));
}

TEST(ConfigTest, NoWarningsForDisabledSections) {
  const absl::StatusOr<LoadedConfig> loaded = parse_patched(R"({
    "fp16": {"enabled": false}, "bf16": {"enabled": false}, "zero_optimization": {"stage": 0},
    "wandb": {"enabled": false}})");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->warnings.empty()) << loaded->warnings.front();
}

TEST(ConfigTest, LoadConfigReadsFile) {
  const std::string path = tree().root() + "/ds_config.json";
  std::ofstream(path) << patched(R"({"steps_per_print": 3})");
  const absl::StatusOr<LoadedConfig> loaded = load_config(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->config.source_path, path);
  EXPECT_EQ(loaded->config.steps_per_print, 3);
}

TEST(ConfigTest, MissingConfigFileIsNotFound) {
  const std::string path = tree().root() + "/no_such_config.json";
  const absl::StatusOr<LoadedConfig> loaded = load_config(path);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(loaded.status().message(), path + ": cannot read config: No such file or directory");
}

TEST(ConfigTest, MalformedFileNamesFileLineAndColumn) {
  const std::string path = tree().root() + "/bad.json";
  std::ofstream(path) << "{\n  \"model\": {},\n}\n";
  const absl::StatusOr<LoadedConfig> loaded = load_config(path);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(
      absl::StartsWith(loaded.status().message(), path + ": malformed JSON at line 3, column 1: "))
      << loaded.status();
}

TEST(ConfigTest, UnknownKeyMessageIsExact) {
  const absl::StatusOr<LoadedConfig> loaded = parse_patched(R"({"model": {"n_layers": 4}})");
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(loaded.status().message(),
            "test.json: unknown key 'model.n_layers' (did you mean 'model.n_layer'?)");
}

TEST(ConfigTest, NvmePathMustBeWritable) {
  if (::geteuid() == 0) GTEST_SKIP() << "root may write to any directory";
  const std::string dir = tree().root() + "/readonly";
  std::filesystem::create_directories(dir);
  ASSERT_EQ(::chmod(dir.c_str(), 0555), 0);
  const absl::StatusOr<LoadedConfig> loaded = parse_patched(
      R"({"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "nvme",
          "nvme_path": ["@TMP@/nvme", "@TMP@/readonly"]}}})");
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(loaded.status().message(),
                                "zero_optimization.offload_optimizer.nvme_path: \"" + dir))
      << loaded.status();
}

// One case per rule: a merge patch on the base config (or, if raw, the whole text).
struct ErrorCase {
  const char* name;
  const char* patch;
  absl::StatusCode code;
  const char* message;  // expanded like the config, then searched in the message
  bool raw = false;
};

class ConfigErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ConfigErrorTest, FailsWithKeyInMessage) {
  const ErrorCase& c = GetParam();
  const absl::StatusOr<LoadedConfig> loaded =
      parse_config(c.raw ? std::string(c.patch) : patched(c.patch), kSource);
  ASSERT_FALSE(loaded.ok()) << c.patch;
  const std::string message(loaded.status().message());
  EXPECT_EQ(loaded.status().code(), c.code) << message;
  EXPECT_TRUE(absl::StartsWith(message, "test.json: ")) << message;
  EXPECT_TRUE(absl::StrContains(message, expand(c.message))) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

const ErrorCase kErrorCases[] = {
    // Syntax and shape.
    {"TrailingComma", "{\n  \"model\": {\"n_layer\": 12,}\n}", kInvalid,
     "malformed JSON at line 2, column 27: ", true},
    {"UnexpectedEnd", "{\n  \"model\": {", kInvalid, "malformed JSON at line 2, column 13: ", true},
    {"Comment", "{\n  // no comments in JSON\n}", kInvalid, "malformed JSON at line 2, column 3",
     true},
    // A number beyond a double once aborted the process (an uncaught exception).
    {"NumberOutOfRange", "{\n  \"gradient_clipping\": 1e400\n}", kInvalid,
     "number out of range at line 2, column 24: 1e400 does not fit a double", true},
    {"DuplicateKey", R"({"model": {"n_layer": 1, "n_layer": 2}})", kInvalid,
     "duplicate key 'model.n_layer'", true},
    {"TopLevelArray", "[1, 2]", kInvalid, "expected a JSON object at the top level, got [1,2]",
     true},
    // Unknown keys, at every level, with the nearest known key at that level.
    {"UnknownTop", R"({"train_batch_sise": 8})", kInvalid,
     "unknown key 'train_batch_sise' (did you mean 'train_batch_size'?)"},
    {"UnknownTopCase", R"({"Steps_Per_Print": 8})", kInvalid,
     "unknown key 'Steps_Per_Print' (did you mean 'steps_per_print'?)"},
    {"UnknownOptimizer", R"({"optimizer": {"type": "Adam", "parms": {}}})", kInvalid,
     "unknown key 'optimizer.parms' (did you mean 'optimizer.params'?)"},
    {"UnknownOptimizerParam", R"({"optimizer": {"type": "Adam", "params": {"beta": [0.9, 0.9]}}})",
     kInvalid, "unknown key 'optimizer.params.beta' (did you mean 'optimizer.params.betas'?)"},
    {"UnknownScheduler", R"({"scheduler": {"type": "WarmupLR", "param": {}}})", kInvalid,
     "unknown key 'scheduler.param' (did you mean 'scheduler.params'?)"},
    {"UnknownSchedulerParam", R"({"scheduler": {"type": "WarmupLR", "params": {"warmup_max": 1}}})",
     kInvalid,
     "unknown key 'scheduler.params.warmup_max' (did you mean 'scheduler.params.warmup_max_lr'?)"},
    {"OtherSchedulerParamWarmupLR",
     R"({"scheduler": {"type": "WarmupLR", "params": {"total_num_steps": 10}}})", kInvalid,
     "unknown key 'scheduler.params.total_num_steps'"},
    {"OtherSchedulerParamCosine",
     R"({"scheduler": {"type": "WarmupCosineLR", "params": {"total_num_steps": 10, "warmup_max_lr": 1}}})",
     kInvalid, "unknown key 'scheduler.params.warmup_max_lr'"},
    {"UnknownFp16", R"({"fp16": {"loss_scale_windw": 8}})", kInvalid,
     "unknown key 'fp16.loss_scale_windw' (did you mean 'fp16.loss_scale_window'?)"},
    {"UnknownBf16", R"({"bf16": {"enable": true}})", kInvalid,
     "unknown key 'bf16.enable' (did you mean 'bf16.enabled'?)"},
    {"UnknownZero", R"({"zero_optimization": {"stage3_max_live_params": 1}})", kInvalid,
     "(did you mean 'zero_optimization.stage3_max_live_parameters'?)"},
    {"UnknownOffloadParam", R"({"zero_optimization": {"offload_param": {"devcie": "cpu"}}})",
     kInvalid,
     "unknown key 'zero_optimization.offload_param.devcie' (did you mean "
     "'zero_optimization.offload_param.device'?)"},
    {"UnknownOffloadOptimizer", R"({"zero_optimization": {"offload_optimizer": {"fastinit": 1}}})",
     kInvalid, "(did you mean 'zero_optimization.offload_optimizer.fast_init'?)"},
    {"UnknownAio", R"({"aio": {"queue_dept": 8}})", kInvalid,
     "unknown key 'aio.queue_dept' (did you mean 'aio.queue_depth'?)"},
    {"AioThreadCount", R"({"aio": {"thread_count": 4}})", kInvalid,
     "'aio.thread_count': DeepSpeed renamed it to 'aio.intra_op_parallelism'"},
    {"UnknownTensorboard", R"({"tensorboard": {"jobname": "x"}})", kInvalid,
     "(did you mean 'tensorboard.job_name'?)"},
    {"UnknownCsvMonitor", R"({"csv_monitor": {"output": "x"}})", kInvalid,
     "(did you mean 'csv_monitor.output_path'?)"},
    {"UnknownWandb", R"({"wandb": {"projects": "x"}})", kInvalid,
     "(did you mean 'wandb.project'?)"},
    {"UnknownCheckpoint", R"({"checkpoint": {"load_universl": true}})", kInvalid,
     "(did you mean 'checkpoint.load_universal'?)"},
    {"UnknownParallelWrite", R"({"checkpoint": {"parallel_write": {"pipeline": true}}})", kInvalid,
     "(did you mean 'checkpoint.parallel_write.pipeline_stage'?)"},
    {"UnknownData", R"({"data": {"evalpath": "x"}})", kInvalid,
     "unknown key 'data.evalpath' (did you mean 'data.eval_path'?)"},
    {"UnknownTrain", R"({"train": {"step": 1}})", kInvalid,
     "unknown key 'train.step' (did you mean 'train.steps'?)"},
    {"UnknownMemory", R"({"memory": {"device_budget": 1}})", kInvalid,
     "(did you mean 'memory.device_budget_bytes'?)"},
    // Types, ranges and enums.
    {"IntNegative", R"({"model": {"n_head": -3}})", kInvalid,
     "test.json: model.n_head: expected an integer in [1, 1048576], got -3"},
    {"IntFractional", R"({"train": {"steps": 10.5}})", kInvalid,
     "train.steps: expected an integer >= 1, got 10.5"},
    {"IntString", R"({"train": {"steps": "10"}})", kInvalid,
     "train.steps: expected an integer >= 1, got \"10\""},
    {"IntAboveMax", R"({"fp16": {"initial_scale_power": 64}})", kInvalid,
     "fp16.initial_scale_power: expected an integer in [0, 63], got 64"},
    {"ZeroStage", R"({"zero_optimization": {"stage": 4}})", kInvalid,
     "zero_optimization.stage: expected an integer in [0, 3], got 4"},
    {"IntTooLargeForInt64", R"({"memory": {"host_budget_bytes": 1e300}})", kInvalid,
     "memory.host_budget_bytes: expected an integer >= 0"},
    {"SeedNegative", R"({"train": {"seed": -1}})", kInvalid,
     "train.seed: expected an integer >= 0"},
    {"StepsPerPrint", R"({"steps_per_print": 0})", kInvalid,
     "steps_per_print: expected an integer >= 1"},
    {"NumberString", R"({"optimizer": {"type": "Adam", "params": {"lr": "0.1"}}})", kInvalid,
     "optimizer.params.lr: expected a number > 0, got \"0.1\""},
    {"LrZero", R"({"optimizer": {"type": "Adam", "params": {"lr": 0}}})", kInvalid,
     "optimizer.params.lr: expected a number > 0, got 0"},
    {"EpsNegative", R"({"optimizer": {"type": "Adam", "params": {"eps": -1e-8}}})", kInvalid,
     "optimizer.params.eps: expected a number > 0"},
    {"WeightDecayNegative", R"({"optimizer": {"type": "Adam", "params": {"weight_decay": -0.1}}})",
     kInvalid, "optimizer.params.weight_decay: expected a number >= 0, got -0.1"},
    {"BetaOne", R"({"optimizer": {"type": "Adam", "params": {"betas": [0.9, 1.0]}}})", kInvalid,
     "optimizer.params.betas: expected a list of 2 numbers, each a number in [0, 1), got "
     "[0.9,1.0]"},
    {"BetasLength", R"({"optimizer": {"type": "Adam", "params": {"betas": [0.9]}}})", kInvalid,
     "optimizer.params.betas: expected a list of 2 numbers"},
    {"GradientClipping", R"({"gradient_clipping": -1})", kInvalid,
     "gradient_clipping: expected a number >= 0, got -1"},
    {"WarmupMinRatio",
     R"({"scheduler": {"type": "WarmupCosineLR", "params": {"total_num_steps": 9, "warmup_min_ratio": 1.5}}})",
     kInvalid, "scheduler.params.warmup_min_ratio: expected a number in [0, 1], got 1.5"},
    {"OffloadRatio", R"({"zero_optimization": {"offload_optimizer": {"ratio": 0}}})", kInvalid,
     "zero_optimization.offload_optimizer.ratio: expected a number in (0, 1], got 0"},
    {"MinLossScale", R"({"fp16": {"min_loss_scale": 0}})", kInvalid,
     "fp16.min_loss_scale: expected a number > 0"},
    {"Bool", R"({"wall_clock_breakdown": "yes"})", kInvalid,
     "wall_clock_breakdown: expected true or false, got \"yes\""},
    {"BoolInt", R"({"zero_optimization": {"overlap_comm": 1}})", kInvalid,
     "zero_optimization.overlap_comm: expected true or false, got 1"},
    {"StringEmpty", R"({"train": {"output_dir": ""}})", kInvalid,
     "train.output_dir: expected a non-empty string, got \"\""},
    {"StringNumber", R"({"data": {"path": 5}})", kInvalid,
     "data.path: expected a non-empty string, got 5"},
    {"ObjectExpected", R"({"optimizer": 5})", kInvalid, "optimizer: expected an object, got 5"},
    {"Enum", R"({"zero_optimization": {"offload_param": {"device": "disk"}}})", kInvalid,
     "zero_optimization.offload_param.device: expected one of none, cpu, nvme, got \"disk\""},
    {"WarmupType", R"({"scheduler": {"type": "WarmupLR", "params": {"warmup_type": "cosine"}}})",
     kInvalid, "scheduler.params.warmup_type: expected one of log, linear, got \"cosine\""},
    {"ModelType", R"({"model": {"type": "bert"}})", kInvalid,
     "model.type: \"bert\" is not a model family dsinf has (gpt2, llama, mistral, qwen2, qwen3)"},
    {"DecoderNeedsSeqLen", R"({"model": {"type": "llama"}})", kInvalid,
     "data.seq_len: required key is missing"},
    {"SeqLenAbovePositions", R"({"data": {"seq_len": 2048}})", kInvalid,
     "data.seq_len: 2048 is more than model.n_positions 1024"},
    {"KvHeadsDoNotDivide",
     R"({"model": {"type": "llama", "num_attention_heads": 32, "num_key_value_heads": 5},
         "data": {"seq_len": 64}})",
     kInvalid, "model.num_attention_heads: 32 is not a multiple of model.num_key_value_heads 5"},
    {"RopeScalingUnsupported",
     R"({"model": {"type": "llama", "rope_scaling": {"rope_type": "yarn", "factor": 4}},
         "data": {"seq_len": 64}})",
     kInvalid, "model.rope_scaling.rope_type: expected one of default, linear, llama3"},
    {"GeluRefused", R"({"model": {"type": "qwen2", "hidden_act": "gelu"}, "data": {"seq_len": 8}})",
     kInvalid, "model.hidden_act: \"gelu\" is not supported"},
    {"GptKeyOnLlama", R"({"model": {"type": "llama", "n_layer": 2}, "data": {"seq_len": 8}})",
     kInvalid, "unknown key 'model.n_layer'"},
    {"TagValidation", R"({"checkpoint": {"tag_validation": "Maybe"}})", kInvalid,
     "checkpoint.tag_validation: expected one of Ignore, Warn, Fail"},
    {"OptimizerUnsupported", R"({"optimizer": {"type": "Lamb"}})", kInvalid,
     "optimizer.type: \"Lamb\" is not supported; dsinf supports Adam and AdamW"},
    {"OptimizerOneBitAdam", R"({"optimizer": {"type": "OneBitAdam"}})", kInvalid,
     "optimizer.type: \"OneBitAdam\" is not supported"},
    {"OptimizerUnknown", R"({"optimizer": {"type": "Foo"}})", kInvalid,
     "optimizer.type: expected one of Adam, AdamW, got \"Foo\""},
    {"OptimizerTypeMissing", R"({"optimizer": {"params": {}}})", kInvalid,
     "optimizer.type: required"},
    {"SchedulerOneCycle", R"({"scheduler": {"type": "OneCycle"}})", kInvalid,
     "scheduler.type: \"OneCycle\" is not supported"},
    {"SchedulerRangeTest", R"({"scheduler": {"type": "LRRangeTest"}})", kInvalid,
     "scheduler.type: \"LRRangeTest\" is not supported"},
    {"SchedulerUnknown", R"({"scheduler": {"type": "Cosine"}})", kInvalid,
     "scheduler.type: expected one of WarmupLR, WarmupDecayLR, WarmupCosineLR"},
    {"MaxGradNorm", R"({"optimizer": {"type": "Adam", "params": {"max_grad_norm": 1.0}}})",
     kInvalid,
     "optimizer.params.max_grad_norm: DeepSpeed rejects max_grad_norm in optimizer params; use "
     "top-level gradient_clipping"},
    {"AdamWNotDecoupled", R"({"optimizer": {"type": "AdamW", "params": {"adam_w_mode": false}}})",
     kInvalid, "optimizer.params.adam_w_mode"},
    {"LastBatchIteration",
     R"({"scheduler": {"type": "WarmupLR", "params": {"last_batch_iteration": 5}}})", kInvalid,
     "scheduler.params.last_batch_iteration: expected -1, got 5"},
    {"DecayTotalMissing", R"({"scheduler": {"type": "WarmupDecayLR"}})", kInvalid,
     "scheduler.params.total_num_steps: required for WarmupDecayLR"},
    {"CosineTotalMissing", R"({"scheduler": {"type": "WarmupCosineLR", "params": {}}})", kInvalid,
     "scheduler.params.total_num_steps: required for WarmupCosineLR"},
    {"CosineTotalZero",
     R"({"scheduler": {"type": "WarmupCosineLR", "params": {"total_num_steps": 0}}})", kInvalid,
     "scheduler.params.total_num_steps: expected an integer >= 1, got 0"},
    {"JobNameSlash", R"({"csv_monitor": {"job_name": "a/b"}})", kInvalid,
     "csv_monitor.job_name: expected a non-empty string without '/', got \"a/b\""},
    {"JobNameEmpty", R"({"tensorboard": {"job_name": ""}})", kInvalid,
     "tensorboard.job_name: expected a non-empty string"},
    {"NvmePathEmptyList", R"({"zero_optimization": {"offload_param": {"nvme_path": []}}})",
     kInvalid,
     "zero_optimization.offload_param.nvme_path: expected a non-empty string or a non-empty list"},
    {"NvmePathNumber", R"({"zero_optimization": {"offload_param": {"nvme_path": [1]}}})", kInvalid,
     "zero_optimization.offload_param.nvme_path: expected"},
    {"AioBlockSizeSmall", R"({"aio": {"block_size": 512}})", kInvalid,
     "aio.block_size: expected an integer >= 4096, got 512"},
    {"AioBlockSizeUnaligned", R"({"aio": {"block_size": 5000}})", kInvalid,
     "aio.block_size: expected a multiple of 4096 (O_DIRECT alignment), got 5000"},
    {"AioQueueDepth", R"({"aio": {"queue_depth": 0}})", kInvalid,
     "aio.queue_depth: expected an integer >= 1"},
    {"AioGds", R"({"aio": {"use_gds": true}})", kInvalid,
     "aio.use_gds: GPUDirect Storage is not supported"},
    {"AioEngine", R"({"aio": {"engine": "libaio"}})", kInvalid,
     "aio.engine: expected one of auto, uring, threads"},
    {"BufferCount", R"({"zero_optimization": {"offload_param": {"buffer_count": 0}}})", kInvalid,
     "zero_optimization.offload_param.buffer_count: expected an integer >= 1, got 0"},
    {"SubGroupSize", R"({"zero_optimization": {"sub_group_size": 0}})", kInvalid,
     "zero_optimization.sub_group_size: expected an integer >= 1"},
    {"Stage3Negative", R"({"zero_optimization": {"stage3_max_reuse_distance": -1}})", kInvalid,
     "zero_optimization.stage3_max_reuse_distance: expected an integer >= 0"},
    {"DeviceBudgetNegative", R"({"memory": {"device_budget_bytes": -1}})", kInvalid,
     "memory.device_budget_bytes: expected an integer >= 0, got -1"},
    {"BothBf16Spellings", R"({"bf16": {"enabled": false}, "bfloat16": {"enabled": false}})",
     kInvalid, "bfloat16: is DeepSpeed's alias of bf16"},
    // "auto", as Hugging Face configs write it.
    {"AutoTop", R"({"train_batch_size": "auto"})", kInvalid,
     "train_batch_size: 'auto' is resolved by the Hugging Face Trainer integration; give a value"},
    {"AutoNested", R"({"optimizer": {"type": "AdamW", "params": {"lr": "auto"}}})", kInvalid,
     "optimizer.params.lr: 'auto' is resolved by the Hugging Face Trainer integration"},
    {"AutoInList", R"({"optimizer": {"type": "AdamW", "params": {"betas": ["auto", 0.9]}}})",
     kInvalid, "optimizer.params.betas: 'auto' is resolved"},
    {"AutoSection", R"({"scheduler": "auto"})", kInvalid, "scheduler: 'auto' is resolved"},
    // Required keys.
    {"ModelMissing", R"({"model": null})", kInvalid, "model: required section is missing"},
    {"DataMissing", R"({"data": null})", kInvalid, "data: required section is missing"},
    {"TrainMissing", R"({"train": null})", kInvalid, "train: required section is missing"},
    {"DataPathMissing", R"({"data": {"path": null, "eval_path": "@TMP@/data"}})", kInvalid,
     "data.path: required key is missing"},
    {"StepsMissing", R"({"train": {"steps": null}})", kInvalid,
     "train.steps: required key is missing"},
    {"OutputDirMissing", R"({"train": {"output_dir": null}})", kInvalid,
     "train.output_dir: required key is missing"},
    // Cross-field rules.
    {"BatchInconsistent", R"({"train_batch_size": 16, "gradient_accumulation_steps": 2})", kInvalid,
     "train_batch_size: 16 != train_micro_batch_size_per_gpu 4 * gradient_accumulation_steps 2"},
    {"BatchNotDivisibleByMicro", R"({"train_batch_size": 10})", kInvalid,
     "train_batch_size: 10 is not divisible by train_micro_batch_size_per_gpu 4"},
    {"BatchNotDivisibleByAccumulation",
     R"({"train_micro_batch_size_per_gpu": null, "train_batch_size": 10, "gradient_accumulation_steps": 4})",
     kInvalid, "train_batch_size: 10 is not divisible by gradient_accumulation_steps 4"},
    {"BatchNone", R"({"train_micro_batch_size_per_gpu": null})", kInvalid,
     "test.json: train_batch_size or train_micro_batch_size_per_gpu is required"},
    {"BatchOnlyAccumulation",
     R"({"train_micro_batch_size_per_gpu": null, "gradient_accumulation_steps": 2})", kInvalid,
     "train_batch_size or train_micro_batch_size_per_gpu is required"},
    {"OffloadParamNeedsStage3",
     R"({"zero_optimization": {"stage": 2, "offload_param": {"device": "cpu"}}})", kInvalid,
     "zero_optimization.offload_param.device: \"cpu\" requires zero_optimization.stage 3, got "
     "stage 2"},
    {"OffloadOptimizerNeedsStage1",
     R"({"zero_optimization": {"offload_optimizer": {"device": "cpu"}}})", kInvalid,
     "zero_optimization.offload_optimizer.device: \"cpu\" requires zero_optimization.stage 1, 2 or "
     "3"},
    {"OffloadOptimizerNvmeNeedsStage3",
     R"({"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "nvme", "nvme_path": "@TMP@/nvme"}}})",
     kInvalid,
     "zero_optimization.offload_optimizer.device: \"nvme\" requires zero_optimization.stage 3"},
    {"NvmePathMissing",
     R"({"zero_optimization": {"stage": 3, "offload_param": {"device": "nvme"}}})", kInvalid,
     "zero_optimization.offload_param.nvme_path: required when device is \"nvme\""},
    {"NvmePathAbsent",
     R"({"zero_optimization": {"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "@TMP@/none"}}})",
     kInvalid, "zero_optimization.offload_param.nvme_path: cannot access \"@TMP@/none\""},
    {"NvmePathFile",
     R"({"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "nvme",
         "nvme_path": ["@TMP@/nvme", "@TMP@/train.bin"]}}})",
     kInvalid,
     "zero_optimization.offload_optimizer.nvme_path: \"@TMP@/train.bin\" is not a directory"},
    {"Fp16AndBf16", R"({"fp16": {"enabled": true}, "bf16": {"enabled": true}})", kInvalid,
     "bf16.enabled: fp16.enabled and bf16.enabled are both true"},
    {"Fp16AndBfloat16", R"({"fp16": {"enabled": true}, "bfloat16": {"enabled": true}})", kInvalid,
     "bfloat16.enabled: fp16.enabled and bfloat16.enabled are both true"},
    {"HeadsAboveEmbd", R"({"model": {"n_head": 1e12}})", kInvalid,
     "model.n_head: expected an integer in [1, 1048576], got 1000000000000.0"},
    {"HeadsDoNotDivide", R"({"model": {"n_embd": 768, "n_head": 5}})", kInvalid,
     "model.n_embd: 768 is not divisible by model.n_head 5"},
    {"VocabTooSmall", R"({"model": {"vocab_size": 100}})", kInvalid,
     "model.vocab_size: must be at least 256 for byte-level tokens, got 100"},
    {"LayersAbsurd", R"({"model": {"n_layer": 2097152}})", kInvalid,
     "model.n_layer: expected an integer in [1, 1048576], got 2097152"},
    {"EmbdAbsurd", R"({"model": {"n_embd": 1e7}})", kInvalid,
     "model.n_embd: expected an integer in [1, 1048576]"},
    {"ModelTooLarge", R"({"model": {"n_layer": 1024, "n_embd": 65536, "n_head": 64}})", kInvalid,
     "model: the shape gives 5.28e+13 parameters; dsinf supports fewer than 2^40"},
    {"DataPathAbsent", R"({"data": {"path": "@TMP@/nope.bin"}})", kInvalid,
     "data.path: cannot access \"@TMP@/nope.bin\": No such file or directory"},
    {"DataPathEmptyDir", R"({"data": {"path": "@TMP@/empty"}})", kInvalid,
     "data.path: directory \"@TMP@/empty\" contains no regular file"},
    {"EvalPathAbsent", R"({"data": {"eval_path": "@TMP@/eval.bin"}})", kInvalid,
     "data.eval_path: cannot access \"@TMP@/eval.bin\""},
    {"InitFromAbsent", R"({"model": {"init_from": "@TMP@/none.safetensors"}})", kInvalid,
     "model.init_from: cannot access \"@TMP@/none.safetensors\""},
    {"InitFromDirectory", R"({"model": {"init_from": "@TMP@/data"}})", kInvalid,
     "model.init_from: directory \"@TMP@/data\" has no readable config.json"},
};

INSTANTIATE_TEST_SUITE_P(Rules, ConfigErrorTest, ::testing::ValuesIn(kErrorCases),
                         [](const ::testing::TestParamInfo<ErrorCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(ConfigTest, DeviceKey) {
  const absl::StatusOr<LoadedConfig> base = parse_patched("{}");
  ASSERT_TRUE(base.ok()) << base.status();
  EXPECT_EQ(base->config.device.kind, DeviceKind::kAuto);
  struct Case {
    const char* text;
    DeviceKind kind;
    int index;
  };
  for (const Case& c : {Case{"auto", DeviceKind::kAuto, 0}, Case{"cpu", DeviceKind::kCpu, 0},
                        Case{"cuda", DeviceKind::kCuda, 0}, Case{"cuda:3", DeviceKind::kCuda, 3}}) {
    const absl::StatusOr<LoadedConfig> loaded =
        parse_patched(std::string(R"({"device": ")") + c.text + "\"}");
    ASSERT_TRUE(loaded.ok()) << c.text << ": " << loaded.status();
    EXPECT_EQ(loaded->config.device.kind, c.kind) << c.text;
    EXPECT_EQ(loaded->config.device.index, c.index) << c.text;
    EXPECT_EQ(loaded->config.device.name, c.text);
  }
  for (const char* bad :
       {R"("gpu")", R"("cuda:")", R"("cuda:x")", R"("cuda:123456")", R"("CPU")", "1", "true"}) {
    const absl::StatusOr<LoadedConfig> loaded =
        parse_patched(std::string(R"({"device": )") + bad + "}");
    ASSERT_FALSE(loaded.ok()) << bad;
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(loaded.status().message().find("device"), std::string::npos)
        << loaded.status().message();
    EXPECT_NE(loaded.status().message().find("\"cuda:N\""), std::string::npos)
        << loaded.status().message();
  }
}

}  // namespace
}  // namespace dsinf::trainer

namespace dsinf::trainer {
namespace {

// transformers 5 writes rope_theta and the scaling inside rope_parameters:
// both spellings give the same model.
TEST(ConfigTest, RopeParametersAreReadAsRopeThetaAndScaling) {
  const absl::StatusOr<LoadedConfig> v5 = parse_patched(R"({
    "model": {"type": "llama", "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0,
              "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 8192}},
    "data": {"seq_len": 64}})");
  ASSERT_TRUE(v5.ok()) << v5.status();
  const absl::StatusOr<LoadedConfig> v4 = parse_patched(R"({
    "model": {"type": "llama", "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3",
              "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 8192}},
    "data": {"seq_len": 64}})");
  ASSERT_TRUE(v4.ok()) << v4.status();
  for (const ModelConfig* m : {&v5->config.model, &v4->config.model}) {
    EXPECT_EQ(m->rope_theta, 500000.0);
    EXPECT_EQ(m->rope_scaling.type, "llama3");
    EXPECT_EQ(m->rope_scaling.factor, 8.0);
    EXPECT_EQ(m->rope_scaling.original_max_position_embeddings, 8192);
  }
  const absl::StatusOr<LoadedConfig> yarn = parse_patched(
      R"({"model": {"type": "llama", "rope_parameters": {"rope_type": "yarn", "factor": 4}},
          "data": {"seq_len": 64}})");
  ASSERT_FALSE(yarn.ok());
  EXPECT_TRUE(absl::StrContains(yarn.status().message(), "model.rope_parameters.rope_type"))
      << yarn.status();
}

}  // namespace
}  // namespace dsinf::trainer
