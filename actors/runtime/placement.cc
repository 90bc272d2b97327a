#include "actors/runtime/placement.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "actors/runtime/partition.h"
#include "memory/util/format.h"

namespace dsinf::actors {
namespace {

using util::format_bytes_exact;

struct ChunkBytes {
  size_t all = 0;        // every chunk, fp32
  size_t trainable = 0;  // the chunks that get gradients and optimizer state
  size_t largest = 0;
  size_t param_home = 0;       // every chunk's working parameters at their home
  size_t working_largest = 0;  // the largest chunk in the working dtype
};

ChunkBytes chunk_bytes(const Placement& p, const std::vector<memory::ChunkLayout>& layouts) {
  ChunkBytes b;
  for (const memory::ChunkLayout& layout : layouts) {
    b.all += layout.bytes();
    if (layout.trainable()) b.trainable += layout.bytes();
    b.largest = std::max(b.largest, layout.bytes());
    if (!layout.remote()) b.param_home += p.param_home_bytes(layout);
    b.working_largest = std::max(b.working_largest, p.working_bytes(layout));
  }
  return b;
}

// Bytes of every class on each tier; the master weights are the working copy
// when both homes are the same tier.
void place_classes(const Placement& p, const ChunkBytes& b, MemoryPlan& plan) {
  size_t on[3] = {0, 0, 0};
  auto add = [&](Tier t, size_t bytes) { on[static_cast<int>(t)] += bytes; };
  add(p.params, b.param_home);
  add(p.grads, b.trainable);
  if (!p.master_is_working_copy()) add(p.optimizer, b.trainable);
  add(p.optimizer, 2 * b.trainable);  // m, v
  plan.resident_bytes = on[static_cast<int>(Tier::kDevice)];
  plan.host_class_bytes = on[static_cast<int>(Tier::kHost)];
  plan.nvme_bytes = on[static_cast<int>(Tier::kNvme)];
  // Staging in host memory: one for a gradient visit on its way to the host
  // accumulators (in the working dtype), then (plan_slots) one per parameter
  // slot, and the optimizer's.
  if (p.grads == Tier::kHost && b.trainable > 0) plan.host_staging_bytes += b.working_largest;
  if (p.stages_device_params() && b.trainable > 0) plan.host_staging_bytes += b.working_largest;
  // The device areas that round to the working dtype: gradient visits, and
  // new weights on their way into the working copy.
  if (p.reduced()) plan.convert_bytes = 2 * b.working_largest;
  plan.host_bytes = plan.host_class_bytes + plan.host_staging_bytes;
}

// Streamed parameters: chunks below stage3_param_persistence_threshold
// elements get a device slot of their own; the others share the slots, each
// the size of the largest of them. Returns the number of shared chunks.
// Chunks the model marks own_slot (LoRA's adapters, used at once with their
// layer's base chunk) get slots of their own too.
size_t sort_streamed_chunks(const Placement& p, const std::vector<memory::ChunkLayout>& layouts,
                            MemoryPlan& plan) {
  if (p.params == Tier::kDevice) return 0;
  const uint64_t threshold =
      static_cast<uint64_t>(std::max<int64_t>(p.param_persistence_threshold, 0));
  size_t shared_chunks = 0;
  plan.persistent.assign(layouts.size(), false);
  // A slot holds fp32; with 16-bit working weights an area after it takes the upload.
  auto area = [&](const memory::ChunkLayout& layout) {
    return p.reduced() ? p.working_bytes(layout) : size_t{0};
  };
  size_t fp32_part = 0;
  for (size_t c = 0; c < layouts.size(); ++c) {
    if (layouts[c].remote()) {
      // Another rank's chunk comes (fp32, from its holder) into a shared slot
      // while the model uses it -- or, with a slot of its own (an adapter),
      // into a remote slot (remote_slots).
      if (layouts[c].own_slot()) continue;
      ++shared_chunks;
      fp32_part = std::max(fp32_part, layouts[c].bytes());
      plan.slot_elements = std::max(plan.slot_elements, layouts[c].numel_padded());
      continue;
    }
    if (layouts[c].numel_padded() < threshold || layouts[c].own_slot()) {
      plan.persistent[c] = true;
      ++plan.persistent_chunks;
      plan.persistent_bytes += layouts[c].bytes() + area(layouts[c]);
    } else {
      ++shared_chunks;
      fp32_part = std::max(fp32_part, layouts[c].bytes());
      plan.slot_area_bytes = std::max(plan.slot_area_bytes, area(layouts[c]));
      plan.slot_elements = std::max(plan.slot_elements, layouts[c].numel_padded());
    }
  }
  plan.slot_bytes = shared_chunks > 0 ? fp32_part + plan.slot_area_bytes : 0;
  return shared_chunks;
}

absl::Status device_budget_error(uint64_t budget, size_t shared_chunks, const MemoryPlan& plan) {
  return absl::InvalidArgumentError(absl::StrCat(
      "memory.device_budget_bytes: ", format_bytes_exact(budget),
      " cannot hold what one layer needs: ", format_bytes_exact(plan.activation_bytes),
      " of activations, ", format_bytes_exact(plan.resident_bytes), " of chunks kept on the device",
      plan.convert_bytes > 0
          ? absl::StrCat(", ", format_bytes_exact(plan.convert_bytes), " of conversion areas")
          : "",
      plan.remote_bytes > 0
          ? absl::StrCat(", ", format_bytes_exact(plan.remote_bytes),
                         " of slots for the chunks other ranks hold (ZeRO stage 3)")
          : "",
      plan.exchange_device_bytes > 0
          ? absl::StrCat(", ", format_bytes_exact(plan.exchange_device_bytes),
                         " for gradient parts from other ranks")
          : "",
      plan.persistent_chunks > 0 ? absl::StrCat(", ", format_bytes_exact(plan.persistent_bytes),
                                                " of ", plan.persistent_chunks,
                                                " parameter chunks kept on the device (below "
                                                "zero_optimization.stage3_param_persistence_"
                                                "threshold, or LoRA adapters)")
                                 : "",
      shared_chunks > 0
          ? absl::StrCat(" and one ", format_bytes_exact(plan.slot_bytes), " parameter slot")
          : "",
      "; the least budget that trains this config is ", plan.device_min_bytes));
}

// The device: activations, chunks kept there, persistent chunks and as many
// shared slots as offload_param.buffer_count, stage3_max_live_parameters and
// the budget allow (at least one).
absl::Status plan_device(const Placement& p, uint64_t budget,
                         const std::vector<memory::ChunkLayout>& layouts, MemoryPlan& plan) {
  const size_t shared_chunks = sort_streamed_chunks(p, layouts, plan);
  // DeepSpeed's max_live_parameters: the elements in the shared slots at once.
  const uint64_t max_live = static_cast<uint64_t>(std::max<int64_t>(p.param_max_live, 0));
  if (shared_chunks > 0 && max_live < plan.slot_elements) {
    return absl::InvalidArgumentError(absl::StrCat(
        "zero_optimization.stage3_max_live_parameters: ", max_live,
        " elements cannot hold one streamed parameter chunk of ", plan.slot_elements,
        " elements (the largest; a chunk is one layer's parameters); the least value that trains "
        "this config is ",
        plan.slot_elements));
  }
  const RemoteSlots remote = remote_slots(layouts, p.params != Tier::kDevice);
  plan.remote_bytes = remote.count * remote.bytes;
  const size_t kept = plan.resident_bytes + plan.persistent_bytes + plan.convert_bytes +
                      plan.remote_bytes + plan.exchange_device_bytes;
  plan.device_min_bytes = plan.activation_bytes + kept + plan.slot_bytes;
  if (budget > 0 && plan.device_min_bytes > budget) {
    return device_budget_error(budget, shared_chunks, plan);
  }
  plan.slots = 0;
  if (shared_chunks > 0) {
    const size_t wanted =
        std::clamp<size_t>(static_cast<size_t>(p.param_buffer_count), 1, shared_chunks);
    const size_t live = static_cast<size_t>(max_live / plan.slot_elements);
    const size_t room =
        budget > 0 ? (budget - plan.activation_bytes - kept) / plan.slot_bytes : wanted;
    plan.slots = std::min({wanted, live, room});
  }
  plan.device_bytes = plan.activation_bytes + kept + plan.slots * plan.slot_bytes;
  return absl::OkStatus();
}

// DeepSpeed's max_in_cpu: up to that many parameter elements on NVMe also stay
// on the host (whole chunks, in the model's order, within the host budget), so
// repeated visits in a step, and the step after the optimizer refreshed them,
// read no NVMe. Only the chunks this rank holds count (ZeRO stage 3).
void plan_param_cache(const Placement& p, uint64_t host_budget,
                      const std::vector<memory::ChunkLayout>& layouts, MemoryPlan& plan) {
  plan.host_cache_bytes = 0;
  plan.cached_chunks = 0;
  if (p.params != Tier::kNvme) return;
  const uint64_t room = host_budget > 0 ? host_budget - plan.host_bytes : UINT64_MAX;
  const uint64_t max_in_cpu = static_cast<uint64_t>(std::max<int64_t>(p.param_max_in_cpu, 0));
  uint64_t elements = 0;
  for (const memory::ChunkLayout& layout : layouts) {
    if (layout.remote()) continue;
    elements += layout.numel_padded();
    const size_t bytes = p.working_bytes(layout);
    if (elements > max_in_cpu || plan.host_cache_bytes + bytes > room) break;
    plan.host_cache_bytes += bytes;
    ++plan.cached_chunks;
  }
  plan.host_bytes += plan.host_cache_bytes;
}

// The host pool with the optimizer's staging of `set_buffers` buffers a chunk:
// offload_optimizer.buffer_count buffers, a chunk of one state each, and at
// least two chunks staged, so reads, Adam and writes overlap.
absl::Status plan_host(const Placement& p, uint64_t host_budget, size_t fixed_staging,
                       size_t set_buffers, const std::vector<memory::ChunkLayout>& layouts,
                       const ChunkBytes& b, MemoryPlan& plan) {
  plan.optimizer_set_buffers = 0;
  plan.optimizer_sets = 0;
  plan.host_staging_bytes = fixed_staging;
  if (p.optimizer == Tier::kNvme && b.trainable > 0) {
    plan.optimizer_set_buffers = set_buffers;
    const size_t sets =
        static_cast<size_t>(std::max<int64_t>(p.optimizer_buffer_count, 0)) / set_buffers;
    plan.optimizer_sets = std::max<size_t>(2, std::min(sets, layouts.size()));
    plan.host_staging_bytes += plan.optimizer_sets * set_buffers * b.largest;
  }
  plan.host_bytes = plan.host_class_bytes + plan.host_staging_bytes;
  if (host_budget > 0 && plan.host_bytes > host_budget) {
    return absl::InvalidArgumentError(absl::StrCat(
        "memory.host_budget_bytes: ", format_bytes_exact(host_budget), " cannot hold ",
        format_bytes_exact(plan.host_class_bytes), " of chunks kept on the host and ",
        format_bytes_exact(plan.host_staging_bytes),
        " of staging buffers; the least budget that trains this config is ", plan.host_bytes));
  }
  plan_param_cache(p, host_budget, layouts, plan);
  return absl::OkStatus();
}

}  // namespace

const char* tier_name(Tier tier) {
  switch (tier) {
    case Tier::kDevice:
      return "device";
    case Tier::kHost:
      return "host";
    case Tier::kNvme:
      return "nvme";
  }
  return "?";
}

const char* Placement::pin_memory_key() const {
  return optimizer != Tier::kDevice ? "zero_optimization.offload_optimizer.pin_memory"
                                    : "zero_optimization.offload_param.pin_memory";
}

absl::StatusOr<MemoryPlan> plan_memory(const Placement& p, const MemoryBudgets& budgets,
                                       const std::vector<memory::ChunkLayout>& layouts,
                                       size_t activation_bytes, const ExchangeStaging& exchange) {
  const ChunkBytes b = chunk_bytes(p, layouts);
  MemoryPlan plan;
  plan.activation_bytes = activation_bytes;
  place_classes(p, b, plan);
  plan.exchange_bytes = exchange.bytes();
  plan.exchange_device_bytes = exchange.device_bytes;
  plan.host_staging_bytes += plan.exchange_bytes;
  plan.host_bytes = plan.host_class_bytes + plan.host_staging_bytes;
  if (absl::Status s = plan_device(p, budgets.device_bytes, layouts, plan); !s.ok()) return s;
  // Parameter chunks read from NVMe: one staging buffer per shared device slot
  // (reads in flight ahead of the model), one per chunk with a slot of its own,
  // and one for writing new weights back.
  if (p.params == Tier::kNvme) {
    size_t own_staging = 0;
    for (size_t c = 0; c < layouts.size(); ++c) {
      if (plan.persistent[c]) own_staging += p.working_bytes(layouts[c]);
    }
    plan.host_staging_bytes += (plan.slots + 1) * b.working_largest + own_staging;
    plan.host_bytes = plan.host_class_bytes + plan.host_staging_bytes;
  }
  // The optimizer's staging holds m and v of a chunk, and its master weights
  // unless the working copy's host cache holds every chunk's.
  const size_t fixed_staging = plan.host_staging_bytes;
  const bool master_in_cache_possible = p.master_is_working_copy() && p.params == Tier::kNvme;
  if (absl::Status s = plan_host(p, budgets.host_bytes, fixed_staging,
                                 master_in_cache_possible ? 2 : 3, layouts, b, plan);
      !s.ok()) {
    return s;
  }
  const size_t held = static_cast<size_t>(std::count_if(
      layouts.begin(), layouts.end(), [](const memory::ChunkLayout& l) { return !l.remote(); }));
  if (master_in_cache_possible && plan.cached_chunks < held) {
    if (absl::Status s = plan_host(p, budgets.host_bytes, fixed_staging, 3, layouts, b, plan);
        !s.ok()) {
      return s;
    }
  }
  return plan;
}

}  // namespace dsinf::actors
