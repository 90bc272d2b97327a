#include "trainer/runtime.h"

#include "absl/strings/str_cat.h"

namespace dsinf::trainer {
namespace {

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
  rt.backend =
      kernels::make_cpu_backend({.device_budget_bytes = config.memory.device_budget_bytes});
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
  rt.actors = std::make_unique<actors::ActorSystem>();
  rt.placement = place(config);
  if (!rt.placement.all_on_device()) {
    if (absl::Status s = make_offload_runtime(config, rt); !s.ok()) return s;
    return rt;
  }
  if (absl::Status s = check_resident_budget(config, with_optimizer); !s.ok()) return s;
  const int micro_batch = static_cast<int>(config.train_micro_batch_size_per_gpu);
  const uint64_t budget = config.memory.device_budget_bytes;
  rt.backend = kernels::make_cpu_backend({.device_budget_bytes = budget});
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
