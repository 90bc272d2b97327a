#include "trainer/runtime.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dsinf::trainer {

kernels::Precision matmul_precision(const Config& config) {
  if (config.fp16.enabled) return kernels::Precision::kFp16;
  if (config.bf16_enabled) return kernels::Precision::kBf16;
  return kernels::Precision::kFp32;
}

absl::StatusOr<ChosenDevice> chosen_device(const Config& config) {
  if (const char* env = std::getenv("DSINF_DEVICE"); env != nullptr && env[0] != '\0') {
    absl::StatusOr<DeviceConfig> parsed = parse_device(env);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("DSINF_DEVICE: ", parsed.status().message()));
    }
    return ChosenDevice{*parsed, "DSINF_DEVICE"};
  }
  return ChosenDevice{config.device, config.source_path + ": device"};
}

absl::StatusOr<BackendChoice> make_backend(const Config& config) {
  absl::StatusOr<ChosenDevice> chosen = chosen_device(config);
  if (!chosen.ok()) return chosen.status();
  const DeviceConfig& device = chosen->device;
  const std::string& origin = chosen->origin;
  kernels::BackendOptions options;
  options.device_budget_bytes = config.memory.device_budget_bytes;
  options.matmul_precision = matmul_precision(config);
  options.device_index = device.index;
  // Attention's backward does every head of a window at once.
  options.attention_scratch_bytes = kernels::attention_scratch_bytes(
      static_cast<int>(config.model.n_positions), static_cast<int>(config.model.n_head));
  // A test mode of the CPU backend: copies complete as late as a GPU's could.
  if (const char* defer = std::getenv("DSINF_CPU_DEFER_COPIES"); defer != nullptr) {
    options.defer_copies = std::string(defer) == "1";
  }
  const std::string precision = kernels::precision_name(options.matmul_precision);
  BackendChoice choice;
  auto use_cpu = [&](const std::string& why) {
    choice.backend = kernels::make_cpu_backend(options);
    choice.description = absl::StrCat("cpu (", why, "; matmul operands ", precision,
                                      options.defer_copies ? "; copies deferred" : "", ")");
  };
  if (device.kind == DeviceKind::kCpu) {
    use_cpu(absl::StrCat("device \"cpu\" from ", origin == "DSINF_DEVICE" ? origin : "the config"));
    return choice;
  }
  absl::StatusOr<kernels::CudaDeviceInfo> info = kernels::cuda_device_info(device.index);
  if (!info.ok()) {
    if (device.kind == DeviceKind::kCuda) {
      return absl::InvalidArgumentError(absl::StrCat(
          origin, ": \"", device.name, "\" asks for a CUDA device, but ", info.status().message()));
    }
    use_cpu(absl::StrCat("auto: ", info.status().message()));
    return choice;
  }
  absl::StatusOr<std::unique_ptr<kernels::Backend>> cuda = kernels::make_cuda_backend(options);
  if (!cuda.ok()) {
    return absl::Status(cuda.status().code(),
                        absl::StrCat(origin, ": ", device.name, ": ", cuda.status().message()));
  }
  choice.backend = *std::move(cuda);
  choice.cuda_device = *info;
  choice.description =
      absl::StrFormat("cuda:%d %s (sm_%d%d, %d SMs, %.1f GiB; %s%s; matmul operands %s)",
                      info->index, info->name, info->sm_major, info->sm_minor,
                      info->multiprocessors, static_cast<double>(info->total_bytes) / (1 << 30),
                      device.kind == DeviceKind::kAuto ? "auto" : "asked for by ",
                      device.kind == DeviceKind::kAuto ? "" : origin, precision);
  return choice;
}

namespace {

// The backend into rt, after the checks that need none passed.
absl::Status attach_backend(const Config& config, Runtime& rt) {
  absl::StatusOr<BackendChoice> backend = make_backend(config);
  if (!backend.ok()) return backend.status();
  rt.backend = std::move(backend->backend);
  rt.device_description = std::move(backend->description);
  rt.cuda_device = std::move(backend->cuda_device);
  return absl::OkStatus();
}

// The offload runtime's half of make_runtime.
absl::Status make_offload_runtime(const Config& config, Runtime& rt) {
  const int micro_batch = static_cast<int>(config.train_micro_batch_size_per_gpu);
  const std::vector<memory::ChunkLayout> layouts = GPT2::make_layouts(config.model);
  absl::StatusOr<MemoryPlan> plan = plan_memory(
      config, rt.placement, layouts, GPT2::activation_bytes_needed(config.model, micro_batch));
  if (!plan.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(config.source_path, ": ", plan.status().message()));
  }
  rt.plan = *plan;
  if (absl::Status s = attach_backend(config, rt); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<GPT2>> model =
      GPT2::create(rt.backend.get(), config.model, micro_batch, /*resident_chunks=*/false);
  if (!model.ok()) return model.status();
  rt.model = *std::move(model);
  absl::StatusOr<std::unique_ptr<OffloadState>> offload = OffloadState::create(
      rt.backend.get(), config, rt.placement, rt.plan, layouts, rt.actors.get());
  if (!offload.ok()) return offload.status();
  rt.offload = *std::move(offload);
  rt.model->set_chunk_source(rt.offload.get());
  return absl::OkStatus();
}

}  // namespace

absl::Status check_resident_budget(const Config& config, bool with_optimizer) {
  const int micro_batch = static_cast<int>(config.train_micro_batch_size_per_gpu);
  size_t needed = GPT2::device_bytes_needed(config.model, micro_batch);
  if (with_optimizer) needed += Optimizer::device_bytes_needed(GPT2::make_layouts(config.model));
  const uint64_t budget = config.memory.device_budget_bytes;
  if (budget != 0 && needed > budget) {
    return absl::InvalidArgumentError(absl::StrCat(
        config.source_path, ": memory.device_budget_bytes: ", budget, " is below the ", needed,
        " bytes this run needs with every tensor in device memory (raise it to at least ", needed,
        ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Runtime> make_runtime(const Config& config, bool with_optimizer) {
  Runtime rt;
  rt.loss_scaler = LossScaler(config);
  rt.actors = std::make_unique<actors::ActorSystem>();
  rt.placement = place(config);
  if (!rt.placement.all_on_device()) {
    if (absl::Status s = make_offload_runtime(config, rt); !s.ok()) return s;
    return rt;
  }
  if (absl::Status s = check_resident_budget(config, with_optimizer); !s.ok()) return s;
  const int micro_batch = static_cast<int>(config.train_micro_batch_size_per_gpu);
  if (absl::Status s = attach_backend(config, rt); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<GPT2>> model =
      GPT2::create(rt.backend.get(), config.model, micro_batch);
  if (!model.ok()) return model.status();
  rt.model = *std::move(model);
  if (with_optimizer) {
    absl::StatusOr<std::unique_ptr<Optimizer>> optimizer =
        Optimizer::create(rt.backend.get(), rt.model->layouts(), config.optimizer);
    if (!optimizer.ok()) return optimizer.status();
    rt.optimizer = *std::move(optimizer);
  }
  rt.resident_state = resident_checkpoint_state(*rt.model, rt.optimizer.get());
  return rt;
}

}  // namespace dsinf::trainer
