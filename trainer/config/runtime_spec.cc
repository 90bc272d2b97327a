#include "trainer/config/runtime_spec.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace dsinf::trainer {
namespace {

using actors::Tier;

Tier tier_of(OffloadDevice device) {
  switch (device) {
    case OffloadDevice::kCpu:
      return Tier::kHost;
    case OffloadDevice::kNvme:
      return Tier::kNvme;
    case OffloadDevice::kNone:
      break;
  }
  return Tier::kDevice;
}

// The matmul operand precision fp16 / bf16 ask for.
kernels::Precision matmul_precision(const Config& config) {
  if (config.fp16.enabled) return kernels::Precision::kFp16;
  if (config.bf16_enabled) return kernels::Precision::kBf16;
  return kernels::Precision::kFp32;
}

nvme::EngineKind engine_kind(const std::string& name) {
  if (name == "uring") return nvme::EngineKind::kUring;
  if (name == "threads") return nvme::EngineKind::kThreads;
  return nvme::EngineKind::kAuto;
}

actors::DeviceRequest request_of(const DeviceConfig& device, std::string origin) {
  actors::DeviceRequest r;
  r.kind = device.kind == DeviceKind::kCpu    ? actors::DeviceRequest::Kind::kCpu
           : device.kind == DeviceKind::kCuda ? actors::DeviceRequest::Kind::kCuda
                                              : actors::DeviceRequest::Kind::kAuto;
  r.index = device.index;
  r.name = device.name;
  r.origin = std::move(origin);
  return r;
}

// Several ranks on a node: "cuda" or "auto" without an index means the GPU of
// the rank's place on its node (as torchrun's LOCAL_RANK does); "cuda:N" is
// taken as written.
actors::DeviceRequest with_local_rank(actors::DeviceRequest r, const RunEnvironment& env) {
  if (r.kind != actors::DeviceRequest::Kind::kCpu && r.name.find(':') == std::string::npos) {
    r.index = env.local_rank;
  }
  return r;
}

actors::StepSpec step_spec(const Config& config) {
  actors::StepSpec step;
  step.micro_batch = static_cast<int>(config.train_micro_batch_size_per_gpu);
  step.gradient_accumulation = config.gradient_accumulation_steps;
  step.gradient_clipping = config.gradient_clipping;
  step.checkpoint_dir = config.train.output_dir;
  step.loss_scale = config.fp16;
  return step;
}

}  // namespace

actors::Placement place(const Config& config) {
  const ZeroConfig& z = config.zero;
  actors::Placement p;
  p.params = z.stage == 3 ? tier_of(z.offload_param.device) : Tier::kDevice;
  p.optimizer = z.stage >= 1 ? tier_of(z.offload_optimizer.device) : Tier::kDevice;
  p.grads = p.optimizer == Tier::kDevice ? Tier::kDevice : Tier::kHost;
  p.param_paths = z.offload_param.nvme_path;
  p.optimizer_paths = z.offload_optimizer.nvme_path;
  p.pin_memory =
      p.optimizer != Tier::kDevice ? z.offload_optimizer.pin_memory : z.offload_param.pin_memory;
  p.param_buffer_count = z.offload_param.buffer_count;
  p.param_max_in_cpu = z.offload_param.max_in_cpu;
  p.param_prefetch_bucket = z.stage3_prefetch_bucket_size;
  p.param_max_live = z.stage3_max_live_parameters;
  p.param_persistence_threshold = z.stage3_param_persistence_threshold;
  p.optimizer_buffer_count = z.offload_optimizer.buffer_count;
  // fp16 / bf16: working weights and gradient visits in that type off the device.
  p.working_dtype = config.fp16.enabled   ? kernels::DType::kF16
                    : config.bf16_enabled ? kernels::DType::kBF16
                                          : kernels::DType::kF32;
  return p;
}

absl::StatusOr<actors::DeviceRequest> device_request(const Config& config,
                                                     const RunEnvironment& env) {
  if (env.device && !env.device->empty()) {
    absl::StatusOr<DeviceConfig> parsed = parse_device(*env.device);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("DSINF_DEVICE: ", parsed.status().message()));
    }
    return with_local_rank(request_of(*parsed, "DSINF_DEVICE"), env);
  }
  return with_local_rank(request_of(config.device, config.source_path + ": device"), env);
}

int rank_of(const RunEnvironment& env) { return env.comm ? env.comm->rank() : 0; }
int world_of(const RunEnvironment& env) { return env.comm ? env.comm->size() : 1; }

namespace {

// Several ranks on one node share the configured NVMe folders: each rank
// swaps in a subfolder of its own, "rank<r>" (made, mode 0700, when missing).
absl::Status rank_paths(const Config& config, int rank, std::vector<std::string>& paths,
                        const char* key) {
  for (std::string& path : paths) {
    path = (std::filesystem::path(path) / absl::StrCat("rank", rank)).string();
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::InvalidArgumentError(absl::StrCat(
          config.source_path, ": ", key, ": cannot create ", path, ": ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<actors::RuntimeSpec> runtime_spec(const Config& config, const RunEnvironment& env,
                                                 bool training) {
  absl::StatusOr<actors::DeviceRequest> device = device_request(config, env);
  if (!device.ok()) return device.status();
  actors::RuntimeSpec spec;
  spec.source = config.source_path;
  spec.training = training;
  spec.placement = place(config);
  spec.budgets = {config.memory.device_budget_bytes, config.memory.host_budget_bytes};
  spec.device = *device;
  spec.backend.device_budget_bytes = config.memory.device_budget_bytes;
  spec.backend.matmul_precision = matmul_precision(config);
  spec.backend.device_index = device->index;
  // GPT-2's attention keeps (T,T) probabilities and its backward does every
  // head of a window at once; the decoder families' tiled attention needs no
  // scratch outside the arena.
  const FamilyTraits* family = find_family(config.model.type);
  spec.backend.attention_scratch_bytes =
      family != nullptr && family->decoder
          ? 0
          : kernels::attention_scratch_bytes(static_cast<int>(config.model.window()),
                                             static_cast<int>(config.model.n_head));
  spec.backend.defer_copies = env.defer_copies;
  spec.engine_kind = engine_kind(config.aio.engine);
  spec.aio.block_size = static_cast<size_t>(config.aio.block_size);
  spec.aio.queue_depth = static_cast<int>(config.aio.queue_depth);
  spec.aio.intra_op_parallelism = static_cast<int>(config.aio.intra_op_parallelism);
  spec.aio.single_submit = config.aio.single_submit;
  spec.aio.overlap_events = config.aio.overlap_events;
  spec.nvme_faults = env.nvme_faults;
  const OptimizerConfig& o = config.optimizer;
  spec.adam = {o.beta1, o.beta2, o.eps, o.weight_decay, o.adam_w_mode, o.bias_correction};
  spec.step = step_spec(config);
  spec.zero_stage = static_cast<int>(config.zero.stage);
  spec.exchange = {config.zero.overlap_comm, config.zero.reduce_bucket_size};
  if (world_of(env) > 1) {
    spec.comm = env.comm;
    const int rank = rank_of(env);
    if (absl::Status s = rank_paths(config, rank, spec.placement.param_paths,
                                    "zero_optimization.offload_param.nvme_path");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = rank_paths(config, rank, spec.placement.optimizer_paths,
                                    "zero_optimization.offload_optimizer.nvme_path");
        !s.ok()) {
      return s;
    }
  }
  return spec;
}

absl::StatusOr<nvme::FaultPlan> parse_fault_plan(const std::string& text, const std::string& what) {
  const size_t at = text.find('@');
  const std::string kind = text.substr(0, at);
  nvme::Fault fault = nvme::Fault::kNone;
  if (kind == "eio") fault = nvme::Fault::kEio;
  if (kind == "enospc") fault = nvme::Fault::kEnospc;
  if (kind == "bitflip") fault = nvme::Fault::kBitFlip;
  nvme::FaultPlan plan;
  std::string index = at == std::string::npos ? std::string() : text.substr(at + 1);
  for (auto [prefix, op] :
       {std::pair{"read:", nvme::IoOp::kRead}, std::pair{"write:", nvme::IoOp::kWrite}}) {
    if (index.rfind(prefix, 0) == 0) {
      plan.schedule_op = op;
      index = index.substr(std::strlen(prefix));
    }
  }
  char* end = nullptr;
  const unsigned long n = index.empty() ? 0 : std::strtoul(index.c_str(), &end, 10);
  if (fault == nvme::Fault::kNone || index.empty() || end == nullptr || *end != '\0' ||
      n > 1000000) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, "=", text, ": expected <eio|enospc|bitflip>@[read:|write:]N"));
  }
  plan.schedule.assign(n + 1, nvme::Fault::kNone);
  plan.schedule[n] = fault;
  return plan;
}

}  // namespace dsinf::trainer
