// The config schema: DeepSpeed's keys, ranges and defaults (see
// shared/DEEPSPEED-CONFIG.md) and dsinf's own sections, read strictly through
// config_reader.h. Reading goes section by section in a fixed order, then the
// cross-field rules run; the first error wins.
#include "trainer/config/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "trainer/config/config_reader.h"
#include "trainer/config/model_reader.h"

namespace dsinf::trainer {
namespace {

using config_internal::Diagnostics;
using config_internal::Json;
using config_internal::kNoMax;
using config_internal::kNonNegative;
using config_internal::kPositive;
using config_internal::NumberRange;
using config_internal::ObjectReader;

constexpr size_t kMaxConfigBytes = size_t{16} << 20;
constexpr int64_t kMaxSeqLen = int64_t{1} << 20;
constexpr int64_t kDirectIoAlignmentBytes = 4096;
constexpr NumberRange kUnitInterval{0.0, 1.0, false, false};

constexpr absl::string_view kOffloadNotBuilt =
    "accepted but not acted on in this build: the offload runtime does not prefetch or "
    "group chunks yet (it streams one chunk at a time)";
// The two stage-3 keys dsinf's unit of work leaves without meaning.
constexpr absl::string_view kSubGroupPerChunk =
    "accepted but not acted on: dsinf's optimizer already steps one layer chunk at a time "
    "(each chunk is its own sub-group), so there is no larger group to split";
constexpr absl::string_view kReusePerChunk =
    "accepted but not acted on: dsinf streams whole layer chunks and a used chunk keeps its "
    "device slot until another chunk's load needs that slot (slots bounded by "
    "offload_param.buffer_count and stage3_max_live_parameters), so no release waits on a "
    "reuse distance";
// How ranks communicate is fixed by exactness (runtime_ranks.cc), not by these keys.
constexpr absl::string_view kRankComm =
    "accepted but not acted on: dsinf reduces each chunk's gradient at its owner, chunk by "
    "chunk as the backward produces it (contiguous, in rank order, so results do not depend "
    "on timing), and sends each updated chunk whole: only overlap_comm and "
    "reduce_bucket_size (the visits in flight) act on it";
constexpr absl::string_view kIgnored = "accepted but ignored by dsinf";
constexpr absl::string_view kDeviceValues = "\"auto\", \"cpu\", \"cuda\" or \"cuda:N\"";

std::string json_quoted(const std::string& s) { return Json(s).dump(); }

// Reads a type name: one of `supported` (canonical spelling stored in *out),
// a known but unsupported name ("not supported"), or an error naming `supported`.
bool read_type(ObjectReader& r, std::initializer_list<absl::string_view> supported,
               std::initializer_list<absl::string_view> unsupported, bool ignore_case,
               absl::string_view supported_phrase, size_t* out) {
  if (!r.has("type")) {
    r.fail("type", absl::StrCat("required; dsinf supports ", supported_phrase));
    return false;
  }
  const Json& value = *r.find("type");
  if (value.is_string()) {
    const std::string& given = value.get_ref<const std::string&>();
    for (absl::string_view name : unsupported) {
      if (ignore_case ? absl::EqualsIgnoreCase(given, name) : given == name) {
        r.fail("type", absl::StrCat(json_quoted(given), " is not supported; dsinf supports ",
                                    supported_phrase));
        return false;
      }
    }
  }
  return r.read_enum("type", supported, ignore_case, out);
}

void read_optimizer(ObjectReader& top, OptimizerConfig* o) {
  ObjectReader r = top.object("optimizer");
  if (!r.present()) return;
  r.allow_only({"type", "params"});
  size_t type = 0;
  if (!read_type(r, {"Adam", "AdamW"},
                 {"Adagrad", "Lamb", "OneBitAdam", "ZeroOneAdam", "OneBitLamb", "MuAdam", "MuAdamW",
                  "MuSGD", "Lion", "Muon", "SGD"},
                 /*ignore_case=*/true, "Adam and AdamW", &type)) {
    return;
  }
  o->type = type == 0 ? "Adam" : "AdamW";
  ObjectReader p = r.object("params");
  p.allow_only({"lr", "betas", "eps", "weight_decay", "adam_w_mode", "bias_correction",
                "torch_adam", "max_grad_norm"});
  if (p.has("max_grad_norm")) {
    p.fail("max_grad_norm",
           "DeepSpeed rejects max_grad_norm in optimizer params; use top-level gradient_clipping");
  }
  p.read_number("lr", kPositive, &o->lr);
  std::vector<double> betas;
  if (p.read_number_list("betas", 2, {0.0, 1.0, false, true}, &betas)) {
    o->beta1 = betas[0];
    o->beta2 = betas[1];
  }
  p.read_number("eps", kPositive, &o->eps);
  p.read_number("weight_decay", kNonNegative, &o->weight_decay);
  bool adam_w_mode = true;
  p.read_bool("adam_w_mode", &adam_w_mode);
  p.read_bool("bias_correction", &o->bias_correction);
  bool torch_adam = false;
  if (p.read_bool("torch_adam", &torch_adam)) p.warn("torch_adam", kIgnored);
  if (o->type == "AdamW" && !adam_w_mode) {
    p.fail("adam_w_mode",
           "AdamW always decouples weight decay; use type Adam for adam_w_mode false");
  }
  o->adam_w_mode = o->type == "AdamW" || adam_w_mode;
}

void read_warmup(ObjectReader& p, SchedulerConfig* s) {
  p.read_int("warmup_num_steps", 0, kNoMax, &s->warmup_num_steps);
  size_t warmup_type = 0;
  if (p.read_enum("warmup_type", {"log", "linear"}, /*ignore_case=*/false, &warmup_type)) {
    s->warmup_type = warmup_type == 0 ? WarmupType::kLog : WarmupType::kLinear;
  }
  int64_t last_batch_iteration = -1;  // dsinf resumes the schedule from the checkpoint
  p.read_int("last_batch_iteration", -1, -1, &last_batch_iteration);
  if (s->type == SchedulerType::kWarmupLR) return;
  if (!p.has("total_num_steps")) {
    p.fail("total_num_steps", s->type == SchedulerType::kWarmupDecayLR
                                  ? "required for WarmupDecayLR"
                                  : "required for WarmupCosineLR");
  }
  p.read_int("total_num_steps", 1, kNoMax, &s->total_num_steps);
}

void read_scheduler(ObjectReader& top, double optimizer_lr, SchedulerConfig* s) {
  ObjectReader r = top.object("scheduler");
  if (!r.present()) return;
  r.allow_only({"type", "params"});
  size_t type = 0;
  if (!read_type(r, {"WarmupLR", "WarmupDecayLR", "WarmupCosineLR"}, {"OneCycle", "LRRangeTest"},
                 /*ignore_case=*/false, "WarmupLR, WarmupDecayLR and WarmupCosineLR", &type)) {
    return;
  }
  ObjectReader p = r.object("params");
  if (type == 0 || type == 1) {
    s->type = type == 0 ? SchedulerType::kWarmupLR : SchedulerType::kWarmupDecayLR;
    if (type == 0) {
      p.allow_only({"warmup_min_lr", "warmup_max_lr", "warmup_num_steps", "warmup_type",
                    "last_batch_iteration"});
    } else {
      p.allow_only({"total_num_steps", "warmup_min_lr", "warmup_max_lr", "warmup_num_steps",
                    "warmup_type", "last_batch_iteration"});
    }
    s->warmup_max_lr = type == 0 ? optimizer_lr : 0.001;
    p.read_number("warmup_min_lr", kNonNegative, &s->warmup_min_lr);
    p.read_number("warmup_max_lr", kPositive, &s->warmup_max_lr);
  } else {
    s->type = SchedulerType::kWarmupCosineLR;
    p.allow_only({"total_num_steps", "warmup_min_ratio", "cos_min_ratio", "warmup_num_steps",
                  "warmup_type", "last_batch_iteration"});
    p.read_number("warmup_min_ratio", kUnitInterval, &s->warmup_min_ratio);
    p.read_number("cos_min_ratio", kUnitInterval, &s->cos_min_ratio);
  }
  read_warmup(p, s);
}

void read_fp16(ObjectReader& top, Fp16Config* f) {
  ObjectReader r = top.object("fp16");
  r.allow_only({"enabled", "loss_scale", "initial_scale_power", "loss_scale_window", "hysteresis",
                "consecutive_hysteresis", "min_loss_scale", "auto_cast"});
  r.read_bool("enabled", &f->enabled);
  r.read_number("loss_scale", kNonNegative, &f->loss_scale);
  r.read_int_as("initial_scale_power", 0, 63, &f->initial_scale_power);
  r.read_int("loss_scale_window", 1, kNoMax, &f->loss_scale_window);
  r.read_int_as("hysteresis", 1, INT_MAX, &f->hysteresis);
  r.read_bool("consecutive_hysteresis", &f->consecutive_hysteresis);
  r.read_number("min_loss_scale", kPositive, &f->min_loss_scale);
  bool auto_cast = false;
  if (r.read_bool("auto_cast", &auto_cast)) r.warn("auto_cast", kIgnored);
}

// "bf16", or DeepSpeed's older alias "bfloat16"; the name used, for messages.
std::string read_bf16(ObjectReader& top, bool* enabled) {
  if (top.has("bf16") && top.has("bfloat16")) {
    top.fail("bfloat16", "is DeepSpeed's alias of bf16; give only one of them");
  }
  const std::string name = top.has("bfloat16") ? "bfloat16" : "bf16";
  ObjectReader r = top.object(name);
  r.allow_only({"enabled"});
  r.read_bool("enabled", enabled);
  return name;
}

void read_offload_device(ObjectReader& r, OffloadDevice* device, std::vector<std::string>* paths,
                         bool* pin_memory) {
  size_t index = 0;
  if (r.read_enum("device", {"none", "cpu", "nvme"}, /*ignore_case=*/false, &index)) {
    *device = static_cast<OffloadDevice>(index);
  }
  r.read_string_list("nvme_path", paths);
  r.read_bool("pin_memory", pin_memory);
}

void read_zero(ObjectReader& top, ZeroConfig* z) {
  ObjectReader r = top.object("zero_optimization");
  r.allow_only({"stage", "offload_param", "offload_optimizer", "stage3_prefetch_bucket_size",
                "stage3_param_persistence_threshold", "stage3_max_live_parameters",
                "stage3_max_reuse_distance", "sub_group_size", "overlap_comm",
                "contiguous_gradients", "reduce_bucket_size", "allgather_bucket_size",
                "reduce_scatter", "allgather_partitions", "round_robin_gradients",
                "stage3_gather_16bit_weights_on_model_save"});
  r.read_int_as("stage", 0, 3, &z->stage);

  ObjectReader param = r.object("offload_param");
  param.allow_only(
      {"device", "nvme_path", "pin_memory", "buffer_count", "buffer_size", "max_in_cpu"});
  OffloadParamConfig& op = z->offload_param;
  read_offload_device(param, &op.device, &op.nvme_path, &op.pin_memory);
  param.read_int("buffer_count", 1, kNoMax, &op.buffer_count);
  param.read_int("buffer_size", 1, kNoMax, &op.buffer_size);
  param.read_int("max_in_cpu", 0, kNoMax, &op.max_in_cpu);

  ObjectReader optimizer = r.object("offload_optimizer");
  optimizer.allow_only({"device", "nvme_path", "pin_memory", "buffer_count", "fast_init", "ratio"});
  OffloadOptimizerConfig& oo = z->offload_optimizer;
  read_offload_device(optimizer, &oo.device, &oo.nvme_path, &oo.pin_memory);
  optimizer.read_int("buffer_count", 1, kNoMax, &oo.buffer_count);
  optimizer.read_bool("fast_init", &oo.fast_init);
  optimizer.read_number("ratio", {0.0, 1.0, true, false}, &oo.ratio);
  if (param.diagnostics()->ok()) {
    if (param.has("buffer_size")) param.warn("buffer_size", kOffloadNotBuilt);
  }
  if (optimizer.diagnostics()->ok()) {
    for (absl::string_view key : {"fast_init", "ratio"}) {
      if (optimizer.has(key)) optimizer.warn(key, kOffloadNotBuilt);
    }
  }

  r.read_int("stage3_prefetch_bucket_size", 0, kNoMax, &z->stage3_prefetch_bucket_size);
  r.read_int("stage3_param_persistence_threshold", 0, kNoMax,
             &z->stage3_param_persistence_threshold);
  r.read_int("stage3_max_live_parameters", 0, kNoMax, &z->stage3_max_live_parameters);
  r.read_int("stage3_max_reuse_distance", 0, kNoMax, &z->stage3_max_reuse_distance);
  r.read_int("sub_group_size", 1, kNoMax, &z->sub_group_size);
  r.read_bool("overlap_comm", &z->overlap_comm);
  r.read_bool("contiguous_gradients", &z->contiguous_gradients);
  r.read_int("reduce_bucket_size", 1, kNoMax, &z->reduce_bucket_size);
  r.read_int("allgather_bucket_size", 1, kNoMax, &z->allgather_bucket_size);
  bool ignored = false;
  for (absl::string_view key : {"reduce_scatter", "allgather_partitions", "round_robin_gradients",
                                "stage3_gather_16bit_weights_on_model_save"}) {
    r.read_bool(key, &ignored);
  }

  if (!r.diagnostics()->ok()) return;
  // stage3_prefetch_bucket_size, stage3_param_persistence_threshold and
  // stage3_max_live_parameters act on the parameter streamer (placement.cc).
  if (r.has("sub_group_size")) r.warn("sub_group_size", kSubGroupPerChunk);
  if (r.has("stage3_max_reuse_distance")) r.warn("stage3_max_reuse_distance", kReusePerChunk);
  if (r.has("stage3_gather_16bit_weights_on_model_save")) {
    r.warn("stage3_gather_16bit_weights_on_model_save", kOffloadNotBuilt);
  }
  for (absl::string_view key :
       {"contiguous_gradients", "allgather_bucket_size", "reduce_scatter", "allgather_partitions",
        "round_robin_gradients"}) {
    if (r.has(key)) r.warn(key, kRankComm);
  }
}

void read_aio(ObjectReader& top, AioConfig* a) {
  ObjectReader r = top.object("aio");
  if (r.has("thread_count") && r.diagnostics()->ok()) {
    r.diagnostics()->fail(
        "unknown key 'aio.thread_count': DeepSpeed renamed it to 'aio.intra_op_parallelism' and "
        "silently ignores the old name; rename it");
  }
  r.allow_only({"block_size", "queue_depth", "intra_op_parallelism", "single_submit",
                "overlap_events", "use_gds", "engine"});
  if (r.read_int("block_size", kDirectIoAlignmentBytes, kNoMax, &a->block_size) &&
      a->block_size % kDirectIoAlignmentBytes != 0) {
    r.fail("block_size",
           absl::StrCat("expected a multiple of 4096 (O_DIRECT alignment), got ", a->block_size));
  }
  r.read_int("queue_depth", 1, kNoMax, &a->queue_depth);
  r.read_int("intra_op_parallelism", 1, kNoMax, &a->intra_op_parallelism);
  r.read_bool("single_submit", &a->single_submit);
  r.read_bool("overlap_events", &a->overlap_events);
  if (r.read_bool("use_gds", &a->use_gds) && a->use_gds) {
    r.fail("use_gds", "GPUDirect Storage is not supported; set it to false");
  }
  size_t engine = 0;
  constexpr std::array<absl::string_view, 3> kEngines = {"auto", "uring", "threads"};
  if (r.read_enum("engine", {kEngines[0], kEngines[1], kEngines[2]}, /*ignore_case=*/false,
                  &engine)) {
    a->engine = std::string(kEngines[engine]);
  }
}

void read_monitor(ObjectReader& top, absl::string_view key, MonitorConfig* m) {
  ObjectReader r = top.object(key);
  r.allow_only({"enabled", "output_path", "job_name"});
  r.read_bool("enabled", &m->enabled);
  r.read_string("output_path", /*non_empty=*/false, &m->output_path);
  if (r.read_string("job_name", /*non_empty=*/true, &m->job_name) &&
      m->job_name.find('/') != std::string::npos) {
    r.fail("job_name",
           absl::StrCat("expected a non-empty string without '/', got ", json_quoted(m->job_name)));
  }
}

void read_ignored_sections(ObjectReader& top) {
  bool enabled = false;
  std::string text;
  ObjectReader wandb = top.object("wandb");
  wandb.allow_only({"enabled", "group", "team", "project"});
  wandb.read_bool("enabled", &enabled);
  for (absl::string_view key : {"group", "team", "project"}) wandb.read_string(key, false, &text);
  if (enabled && wandb.diagnostics()->ok()) {
    wandb.warn("enabled", "dsinf does not log to wandb; use tensorboard or csv_monitor");
  }

  ObjectReader checkpoint = top.object("checkpoint");
  checkpoint.allow_only(
      {"tag_validation", "load_universal", "use_node_local_storage", "parallel_write"});
  size_t index = 0;
  checkpoint.read_enum("tag_validation", {"Ignore", "Warn", "Fail"}, /*ignore_case=*/true, &index);
  checkpoint.read_bool("load_universal", &enabled);
  checkpoint.read_bool("use_node_local_storage", &enabled);
  ObjectReader parallel_write = checkpoint.object("parallel_write");
  parallel_write.allow_only({"pipeline_stage"});
  parallel_write.read_bool("pipeline_stage", &enabled);
  if (checkpoint.present() && checkpoint.diagnostics()->ok()) top.warn("checkpoint", kIgnored);
}

void read_data(ObjectReader& top, DataConfig* d) {
  ObjectReader r = top.object("data");
  if (!r.present()) top.fail("data", "required section is missing");
  r.allow_only({"path", "eval_path", "seq_len", "format", "tokenizer", "append_eos", "truncation",
                "packing"});
  r.read_int("seq_len", 1, kMaxSeqLen, &d->seq_len);
  if (r.present() && !r.has("path")) r.fail("path", "required key is missing");
  r.read_string("path", /*non_empty=*/true, &d->path);
  r.read_string("eval_path", /*non_empty=*/true, &d->eval_path);
  size_t format = 0;
  if (r.read_enum("format", {"text", "chat", "prompt_completion"}, false, &format)) {
    d->format = static_cast<DataFormat>(format);
  }
  r.read_string("tokenizer", /*non_empty=*/true, &d->tokenizer);
  r.read_bool("append_eos", &d->append_eos);
  size_t truncation = 0;
  if (r.read_enum("truncation", {"right", "drop"}, false, &truncation)) {
    d->truncation = static_cast<Truncation>(truncation);
  }
  if (r.read_bool("packing", &d->packing) && d->packing) {
    r.warn("packing",
           "accepted but not acted on: packed examples would attend across their boundaries "
           "(attention has no per-example mask yet), so each example gets a window of its own, "
           "padded");
  }
}

void read_train(ObjectReader& top, TrainConfig* t) {
  ObjectReader r = top.object("train");
  if (!r.present()) top.fail("train", "required section is missing");
  r.allow_only({"steps", "output_dir", "save_interval", "eval_interval", "seed"});
  if (r.present() && !r.has("steps")) r.fail("steps", "required key is missing");
  r.read_int("steps", 1, kNoMax, &t->steps);
  if (r.present() && !r.has("output_dir")) r.fail("output_dir", "required key is missing");
  r.read_string("output_dir", /*non_empty=*/true, &t->output_dir);
  r.read_int("save_interval", 0, kNoMax, &t->save_interval);
  r.read_int("eval_interval", 0, kNoMax, &t->eval_interval);
  r.read_int_as("seed", 0, kNoMax, &t->seed);
}

void read_memory(ObjectReader& top, MemoryConfig* m) {
  ObjectReader r = top.object("memory");
  r.allow_only({"device_budget_bytes", "host_budget_bytes"});
  r.read_int_as("device_budget_bytes", 0, kNoMax, &m->device_budget_bytes);
  r.read_int_as("host_budget_bytes", 0, kNoMax, &m->host_budget_bytes);
}

void read_device(ObjectReader& top, DeviceConfig* d) {
  // Read raw: "auto" is this key's own value here, not the Hugging Face placeholder.
  const Json* value = top.find("device");
  if (value == nullptr) return;
  if (!value->is_string()) {
    top.fail("device", absl::StrCat("must be a string: ", kDeviceValues));
    return;
  }
  absl::StatusOr<DeviceConfig> parsed = parse_device(value->get<std::string>());
  if (!parsed.ok()) {
    top.fail("device", parsed.status().message());
    return;
  }
  *d = *parsed;
}

// train_batch_size = micro batch * accumulation steps * world size (DeepSpeed's).
void resolve_batch(ObjectReader& top, Config* c) {
  int64_t& tbs = c->train_batch_size;
  int64_t& mbs = c->train_micro_batch_size_per_gpu;
  int64_t& gas = c->gradient_accumulation_steps;
  const int64_t world = c->world_size;
  const bool has_tbs = top.read_int("train_batch_size", 1, kNoMax, &tbs);
  const bool has_mbs = top.read_int("train_micro_batch_size_per_gpu", 1, kNoMax, &mbs);
  const bool has_gas = top.read_int("gradient_accumulation_steps", 1, kNoMax, &gas);
  Diagnostics* diag = top.diagnostics();
  if (!diag->ok()) return;
  if (!has_tbs && !has_mbs) {
    diag->fail("train_batch_size or train_micro_batch_size_per_gpu is required");
    return;
  }
  const std::string times_world = absl::StrCat(" * world size ", world);
  int64_t product = 0;
  if (!has_tbs) {
    if (!has_gas) gas = 1;
    if (__builtin_mul_overflow(mbs, gas, &product) ||
        __builtin_mul_overflow(product, world, &tbs)) {
      top.fail("train_micro_batch_size_per_gpu",
               absl::StrCat("train_micro_batch_size_per_gpu * gradient_accumulation_steps",
                            times_world, " overflows int64"));
    }
    return;
  }
  auto divide = [&](const char* name, int64_t by, int64_t* out) {
    if (tbs % (by * world) != 0) {
      top.fail("train_batch_size",
               absl::StrCat(tbs, " is not divisible by ", name, " ", by, times_world));
    }
    *out = tbs / (by * world);
  };
  if (has_mbs && has_gas) {
    if (__builtin_mul_overflow(mbs, gas, &product) ||
        __builtin_mul_overflow(product, world, &product) || product != tbs) {
      top.fail("train_batch_size",
               absl::StrCat(tbs, " != train_micro_batch_size_per_gpu ", mbs,
                            " * gradient_accumulation_steps ", gas, times_world));
    }
  } else if (has_mbs) {
    divide("train_micro_batch_size_per_gpu", mbs, &gas);
  } else if (has_gas) {
    divide("gradient_accumulation_steps", gas, &mbs);
  } else {
    gas = 1;
    if (tbs % world != 0) {
      top.fail("train_batch_size",
               absl::StrCat(tbs, " is not divisible by the world size ", world));
    }
    mbs = tbs / world;
  }
}

absl::string_view device_name(OffloadDevice d) {
  return d == OffloadDevice::kNone ? "none" : d == OffloadDevice::kCpu ? "cpu" : "nvme";
}

void check_nvme_paths(Diagnostics* diag, const std::string& section,
                      const std::vector<std::string>& paths) {
  const std::string key = section + ".nvme_path";
  if (paths.empty()) diag->fail_at(key, "required when device is \"nvme\"");
  for (const std::string& path : paths) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
      const int error = errno;
      diag->fail_at(key,
                    absl::StrCat("cannot access ", json_quoted(path), ": ", std::strerror(error)));
    } else if (!S_ISDIR(st.st_mode)) {
      diag->fail_at(key, absl::StrCat(json_quoted(path), " is not a directory"));
    } else if (access(path.c_str(), W_OK | X_OK) != 0) {
      const int error = errno;
      diag->fail_at(key,
                    absl::StrCat(json_quoted(path), " is not writable: ", std::strerror(error)));
    }
  }
}

void check_zero(Diagnostics* diag, const ZeroConfig& z) {
  const std::string param = "zero_optimization.offload_param";
  const std::string optimizer = "zero_optimization.offload_optimizer";
  const OffloadDevice pd = z.offload_param.device;
  const OffloadDevice od = z.offload_optimizer.device;
  if (pd != OffloadDevice::kNone && z.stage != 3) {
    diag->fail_at(param + ".device",
                  absl::StrFormat("\"%s\" requires zero_optimization.stage 3, got stage %d",
                                  device_name(pd), z.stage));
  }
  if (od != OffloadDevice::kNone && z.stage < 1) {
    diag->fail_at(optimizer + ".device",
                  absl::StrFormat("\"%s\" requires zero_optimization.stage 1, 2 or 3, got stage %d",
                                  device_name(od), z.stage));
  }
  if (od == OffloadDevice::kNvme && z.stage != 3) {
    diag->fail_at(
        optimizer + ".device",
        absl::StrFormat("\"nvme\" requires zero_optimization.stage 3, got stage %d", z.stage));
  }
  if (pd == OffloadDevice::kNvme) check_nvme_paths(diag, param, z.offload_param.nvme_path);
  if (od == OffloadDevice::kNvme) check_nvme_paths(diag, optimizer, z.offload_optimizer.nvme_path);
}

// Empty if `path` is an existing regular file (or, with `allow_directory`, a
// directory holding at least one regular file); otherwise why not.
std::string path_problem(const std::string& path, bool allow_directory) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    const int error = errno;
    return absl::StrCat("cannot access ", json_quoted(path), ": ", std::strerror(error));
  }
  if (S_ISREG(st.st_mode)) return "";
  if (!allow_directory) return absl::StrCat(json_quoted(path), " is not a regular file");
  if (!S_ISDIR(st.st_mode)) {
    return absl::StrCat(json_quoted(path), " is not a regular file or directory");
  }
  std::error_code ec;
  for (std::filesystem::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    if (it->is_regular_file(type_ec)) return "";
  }
  if (ec) return absl::StrCat("cannot list ", json_quoted(path), ": ", ec.message());
  return absl::StrCat("directory ", json_quoted(path), " contains no regular file");
}

void check_paths(Diagnostics* diag, const Config& c) {
  const std::pair<absl::string_view, const std::string*> checks[] = {
      {"data.path", &c.data.path},
      {"data.eval_path", &c.data.eval_path},
      {"model.init_from", &c.model.init_from},
  };
  for (const auto& [key, path] : checks) {
    if (path->empty()) continue;
    const std::string problem = path_problem(*path, /*allow_directory=*/true);
    if (!problem.empty()) diag->fail_at(key, problem);
  }
}

}  // namespace

absl::StatusOr<LoadedConfig> parse_config(const std::string& text, const std::string& source_name,
                                          int world_size) {
  Diagnostics diag(source_name);
  const std::optional<Json> json = config_internal::parse_json_strict(text, &diag);
  if (!json) return diag.status();
  if (!json->is_object()) {
    diag.fail(absl::StrCat("expected a JSON object at the top level, got ",
                           config_internal::describe_value(*json)));
    return diag.status();
  }
  LoadedConfig loaded;
  Config& c = loaded.config;
  c.source_path = source_name;
  c.world_size = std::max(1, world_size);
  ObjectReader top(&*json, "", &diag);
  top.allow_only({"train_batch_size",
                  "train_micro_batch_size_per_gpu",
                  "gradient_accumulation_steps",
                  "optimizer",
                  "scheduler",
                  "gradient_clipping",
                  "steps_per_print",
                  "wall_clock_breakdown",
                  "fp16",
                  "bf16",
                  "bfloat16",
                  "zero_optimization",
                  "aio",
                  "tensorboard",
                  "csv_monitor",
                  "wandb",
                  "checkpoint",
                  "model",
                  "lora",
                  "data",
                  "train",
                  "memory",
                  "device"});
  resolve_batch(top, &c);
  read_optimizer(top, &c.optimizer);
  read_scheduler(top, c.optimizer.lr, &c.scheduler);
  top.read_number("gradient_clipping", kNonNegative, &c.gradient_clipping);
  top.read_int("steps_per_print", 1, kNoMax, &c.steps_per_print);
  top.read_bool("wall_clock_breakdown", &c.wall_clock_breakdown);
  read_fp16(top, &c.fp16);
  const std::string bf16_name = read_bf16(top, &c.bf16_enabled);
  read_zero(top, &c.zero);
  read_aio(top, &c.aio);
  read_monitor(top, "tensorboard", &c.tensorboard);
  read_monitor(top, "csv_monitor", &c.csv_monitor);
  read_ignored_sections(top);
  config_internal::read_lora(top, &c.model);
  config_internal::read_model(top, &c.model);
  read_data(top, &c.data);
  read_train(top, &c.train);
  read_memory(top, &c.memory);
  read_device(top, &c.device);
  if (!diag.ok()) return diag.status();

  check_zero(&diag, c.zero);
  if (c.fp16.enabled && c.bf16_enabled) {
    diag.fail_at(bf16_name + ".enabled",
                 "fp16.enabled and " + bf16_name + ".enabled are both true; enable at most one");
  }
  config_internal::check_model(&diag, &c.model, c.data.seq_len);
  config_internal::check_lora(&diag, c.model);
  check_paths(&diag, c);
  if (!diag.ok()) return diag.status();
  loaded.warnings = diag.take_warnings();
  return loaded;
}

absl::StatusOr<DeviceConfig> parse_device(const std::string& text) {
  DeviceConfig d;
  d.name = text;
  const bool digits =
      text.size() > 5 && text.size() <= 8 &&
      std::all_of(text.begin() + 5, text.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
  if (text == "auto") {
    d.kind = DeviceKind::kAuto;
  } else if (text == "cpu") {
    d.kind = DeviceKind::kCpu;
  } else if (text == "cuda") {
    d.kind = DeviceKind::kCuda;
  } else if (absl::StartsWith(text, "cuda:") && digits) {
    d.kind = DeviceKind::kCuda;
    d.index = std::stoi(text.substr(5));
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("must be ", kDeviceValues, " (got ", json_quoted(text), ")"));
  }
  return d;
}

absl::StatusOr<LoadedConfig> load_config(const std::string& path, int world_size) {
  auto cannot_read = [&path](int error) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot read config: ", std::strerror(error)));
  };
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return cannot_read(errno);
  std::string text;
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      close(fd);
      return cannot_read(error);
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > kMaxConfigBytes) {
      close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": config is larger than ", kMaxConfigBytes, " bytes"));
    }
  }
  close(fd);
  return parse_config(text, path, world_size);
}

}  // namespace dsinf::trainer
