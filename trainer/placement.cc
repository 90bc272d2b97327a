#include "trainer/placement.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "memory/util/format.h"

namespace dsinf::trainer {
namespace {

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

Placement place(const Config& config) {
  const ZeroConfig& z = config.zero;
  Placement p;
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
  return p;
}

absl::StatusOr<MemoryPlan> plan_memory(const Config& config, const Placement& p,
                                       const std::vector<memory::ChunkLayout>& layouts,
                                       size_t activation_bytes) {
  size_t total = 0, largest = 0;
  for (const memory::ChunkLayout& layout : layouts) {
    total += layout.bytes();
    largest = std::max(largest, layout.bytes());
  }
  MemoryPlan plan;
  plan.activation_bytes = activation_bytes;
  // Bytes of every class on each tier; the master weights are the working copy
  // when both homes are the same tier.
  size_t on[3] = {0, 0, 0};
  auto add = [&](Tier t, size_t bytes) { on[static_cast<int>(t)] += bytes; };
  add(p.params, total);
  add(p.grads, total);
  if (!p.master_is_working_copy()) add(p.optimizer, total);
  add(p.optimizer, 2 * total);  // m, v
  plan.resident_bytes = on[static_cast<int>(Tier::kDevice)];
  plan.host_class_bytes = on[static_cast<int>(Tier::kHost)];
  plan.nvme_bytes = on[static_cast<int>(Tier::kNvme)];

  // Staging in host memory: one for a gradient visit on its way to the host
  // accumulators, (below) one per parameter slot, and the optimizer's.
  if (p.grads == Tier::kHost) plan.host_staging_bytes += largest;
  plan.host_bytes = plan.host_class_bytes + plan.host_staging_bytes;

  // Streamed parameters: chunks below stage3_param_persistence_threshold
  // elements get a device slot of their own; the others share the slots, each
  // the size of the largest of them.
  const bool streamed = p.params != Tier::kDevice;
  size_t shared_chunks = 0;
  if (streamed) {
    const uint64_t threshold =
        static_cast<uint64_t>(std::max<int64_t>(p.param_persistence_threshold, 0));
    plan.persistent.assign(layouts.size(), false);
    for (size_t c = 0; c < layouts.size(); ++c) {
      if (layouts[c].numel_padded() < threshold) {
        plan.persistent[c] = true;
        ++plan.persistent_chunks;
        plan.persistent_bytes += layouts[c].bytes();
      } else {
        ++shared_chunks;
        plan.slot_bytes = std::max(plan.slot_bytes, layouts[c].bytes());
        plan.slot_elements = std::max(plan.slot_elements, layouts[c].numel_padded());
      }
    }
  }
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
  const size_t kept = plan.resident_bytes + plan.persistent_bytes;
  plan.device_min_bytes = activation_bytes + kept + plan.slot_bytes;
  const uint64_t budget = config.memory.device_budget_bytes;
  if (budget > 0 && plan.device_min_bytes > budget) {
    return absl::InvalidArgumentError(absl::StrCat(
        "memory.device_budget_bytes: ", util::format_bytes_exact(budget),
        " cannot hold what one layer needs: ", util::format_bytes_exact(activation_bytes), " of activations, ",
        util::format_bytes_exact(plan.resident_bytes), " of chunks kept on the device",
        plan.persistent_chunks > 0
            ? absl::StrCat(", ", util::format_bytes_exact(plan.persistent_bytes), " of ", plan.persistent_chunks,
                           " parameter chunks below zero_optimization."
                           "stage3_param_persistence_threshold")
            : "",
        shared_chunks > 0 ? absl::StrCat(" and one ", util::format_bytes_exact(plan.slot_bytes), " parameter slot") : "",
        "; the least budget that trains this config is ", plan.device_min_bytes));
  }
  plan.slots = 0;
  if (shared_chunks > 0) {
    const size_t wanted =
        std::clamp<size_t>(static_cast<size_t>(p.param_buffer_count), 1, shared_chunks);
    const size_t live = static_cast<size_t>(max_live / plan.slot_elements);
    const size_t room = budget > 0 ? (budget - activation_bytes - kept) / plan.slot_bytes : wanted;
    plan.slots = std::min({wanted, live, room});
  }
  plan.device_bytes = activation_bytes + kept + plan.slots * plan.slot_bytes;
  // Parameter chunks read from NVMe: one staging buffer per shared device slot
  // (reads in flight ahead of the model), one per chunk with a slot of its own,
  // and one for writing new weights back.
  if (p.params == Tier::kNvme) {
    plan.host_staging_bytes += (plan.slots + 1) * largest + plan.persistent_bytes;
    plan.host_bytes = plan.host_class_bytes + plan.host_staging_bytes;
  }

  // The optimizer on NVMe stages offload_optimizer.buffer_count buffers, a
  // chunk of one state each: m and v per chunk, and its master weights unless
  // the working copy's host cache holds them (every chunk cached, below). At
  // least two chunks are staged, so reads, Adam and writes overlap.
  const size_t fixed_staging = plan.host_staging_bytes;
  const uint64_t host_budget = config.memory.host_budget_bytes;
  auto finish = [&](size_t set_buffers) -> absl::Status {
    plan.optimizer_set_buffers = 0;
    plan.optimizer_sets = 0;
    plan.host_staging_bytes = fixed_staging;
    if (p.optimizer == Tier::kNvme) {
      plan.optimizer_set_buffers = set_buffers;
      const size_t sets =
          static_cast<size_t>(std::max<int64_t>(p.optimizer_buffer_count, 0)) / set_buffers;
      plan.optimizer_sets = std::max<size_t>(2, std::min(sets, layouts.size()));
      plan.host_staging_bytes += plan.optimizer_sets * set_buffers * largest;
    }
    plan.host_bytes = plan.host_class_bytes + plan.host_staging_bytes;
    if (host_budget > 0 && plan.host_bytes > host_budget) {
      return absl::InvalidArgumentError(absl::StrCat(
          "memory.host_budget_bytes: ", util::format_bytes_exact(host_budget), " cannot hold ",
          util::format_bytes_exact(plan.host_class_bytes), " of chunks kept on the host and ",
          util::format_bytes_exact(plan.host_staging_bytes),
          " of staging buffers; the least budget that trains this config is ", plan.host_bytes));
    }
    plan.host_cache_bytes = 0;
    plan.cached_chunks = 0;
    if (p.params == Tier::kNvme) {
      // DeepSpeed's max_in_cpu: up to that many parameter elements also stay on
      // the host (whole chunks, in the model's order, within the host budget), so
      // repeated visits in a step, and the step after the optimizer refreshed
      // them, read no NVMe.
      const uint64_t room = host_budget > 0 ? host_budget - plan.host_bytes : UINT64_MAX;
      uint64_t elements = 0;
      for (const memory::ChunkLayout& layout : layouts) {
        elements += layout.numel_padded();
        if (elements > static_cast<uint64_t>(std::max<int64_t>(p.param_max_in_cpu, 0)) ||
            plan.host_cache_bytes + layout.bytes() > room) {
          break;
        }
        plan.host_cache_bytes += layout.bytes();
        ++plan.cached_chunks;
      }
      plan.host_bytes += plan.host_cache_bytes;
    }
    return absl::OkStatus();
  };
  const bool master_in_cache_possible = p.master_is_working_copy() && p.params == Tier::kNvme;
  if (absl::Status s = finish(master_in_cache_possible ? 2 : 3); !s.ok()) return s;
  if (master_in_cache_possible && plan.cached_chunks < layouts.size()) {
    if (absl::Status s = finish(3); !s.ok()) return s;
  }
  return plan;
}

}  // namespace dsinf::trainer
