#include "trainer/placement.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

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

// "815104 bytes (796.0 KiB)": exact for the config, readable for people.
std::string mib(size_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  return absl::StrCat(bytes, " bytes (", absl::StrFormat("%.1f %s", value, units[unit]), ")");
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

  // Staging in host memory: for an optimizer on NVMe, one for a gradient visit
  // on its way to the host accumulators, and (below) one per parameter slot.
  // Master, m and v of two chunks for an optimizer on NVMe (one computing, one in flight).
  if (p.optimizer == Tier::kNvme) plan.host_staging_bytes += 6 * largest;
  if (p.grads == Tier::kHost) plan.host_staging_bytes += largest;
  plan.host_bytes = plan.host_class_bytes + plan.host_staging_bytes;

  const bool streamed = p.params != Tier::kDevice;
  plan.slot_bytes = streamed ? largest : 0;
  plan.device_min_bytes = activation_bytes + plan.resident_bytes + plan.slot_bytes;
  const uint64_t budget = config.memory.device_budget_bytes;
  if (budget > 0 && plan.device_min_bytes > budget) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory.device_budget_bytes: ", mib(budget),
                     " cannot hold what one layer needs: ", mib(activation_bytes),
                     " of activations, ", mib(plan.resident_bytes), " of chunks kept on the device",
                     streamed ? absl::StrCat(" and one ", mib(largest), " parameter slot") : "",
                     "; the least budget that trains this config is ", plan.device_min_bytes));
  }
  plan.slots = 0;
  if (streamed) {
    const size_t wanted =
        std::clamp<size_t>(static_cast<size_t>(p.param_buffer_count), 1, layouts.size());
    const size_t room =
        budget > 0 ? (budget - activation_bytes - plan.resident_bytes) / largest : wanted;
    plan.slots = std::min(wanted, room);
  }
  plan.device_bytes = activation_bytes + plan.resident_bytes + plan.slots * plan.slot_bytes;
  // Parameter chunks read from NVMe: one staging buffer per device slot (reads
  // in flight ahead of the model), and one for writing new weights back.
  if (p.params == Tier::kNvme) {
    plan.host_staging_bytes += (plan.slots + 1) * largest;
    plan.host_bytes = plan.host_class_bytes + plan.host_staging_bytes;
  }

  const uint64_t host_budget = config.memory.host_budget_bytes;
  if (host_budget > 0 && plan.host_bytes > host_budget) {
    return absl::InvalidArgumentError(absl::StrCat(
        "memory.host_budget_bytes: ", mib(host_budget), " cannot hold ", mib(plan.host_class_bytes),
        " of chunks kept on the host and ", mib(plan.host_staging_bytes),
        " of staging buffers; the least budget that trains this config is ", plan.host_bytes));
  }
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
  return plan;
}

}  // namespace dsinf::trainer
