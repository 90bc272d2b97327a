// Where each tensor class lives, and the bytes that placement needs on each
// tier. Classes per chunk:
//   working parameters  what forward and backward read; home: offload_param
//                       (stage 3) or the device
//   gradients           the step's accumulators; on the host when the optimizer
//                       is offloaded (ZeRO-Offload sends gradients to the CPU
//                       Adam), else on the device
//   master, m, v        the fp32 weights Adam updates and its moments; home:
//                       offload_optimizer or the device
// A frozen chunk (ChunkLayout::trainable false) has working parameters only.
// With bf16 or fp16 on, the working parameters are the master weights rounded
// to that type: stored so off the device (offload_param's homes, the host
// cache, every upload), and as fp32 holding those values on the device, where
// the ops read them; gradient visits leave the device rounded the same way.
// With fp32 they equal the master weights bit for bit, so when both homes are
// the same tier they are one copy.
// trainer/ derives a Placement from a config with DeepSpeed's meaning.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "actors/runtime/partition.h"
#include "kernels/device.h"
#include "memory/chunk_layout.h"

namespace dsinf::actors {

enum class Tier { kDevice, kHost, kNvme };
const char* tier_name(Tier tier);

struct Placement {
  Tier params = Tier::kDevice;
  Tier grads = Tier::kDevice;
  Tier optimizer = Tier::kDevice;
  std::vector<std::string> param_paths;      // offload_param.nvme_path
  std::vector<std::string> optimizer_paths;  // offload_optimizer.nvme_path
  bool pin_memory = true;
  int64_t param_buffer_count = 5;  // offload_param.buffer_count: device slots for streamed chunks
  // offload_optimizer.buffer_count: host staging buffers (one chunk of one
  // state each) for optimizer state on NVMe.
  int64_t optimizer_buffer_count = 4;
  int64_t param_max_in_cpu = 1000000000;  // offload_param.max_in_cpu: elements cached on the host
  // zero_optimization.stage3_*, in elements, at the granularity of chunks:
  int64_t param_prefetch_bucket = 50000000;  // chunks asked ahead of the model (always one)
  int64_t param_max_live = 1000000000;       // shared slots x the largest streamed chunk
  int64_t param_persistence_threshold = 0;   // smaller chunks stay on the device once loaded

  // fp32, or bf16/fp16: the type of the working parameters off the device and
  // of gradient visits (master weights and Adam state are fp32 either way).
  kernels::DType working_dtype = kernels::DType::kF32;

  bool all_on_device() const {
    return params == Tier::kDevice && grads == Tier::kDevice && optimizer == Tier::kDevice;
  }
  bool reduced() const { return working_dtype != kernels::DType::kF32; }
  bool master_is_working_copy() const { return params == optimizer && !reduced(); }
  // Bytes of a chunk's working parameters off the device (page-aligned).
  size_t working_bytes(const memory::ChunkLayout& layout) const {
    return layout.bytes_as(kernels::dtype_bytes(working_dtype));
  }
  // ... at their home: fp32 on the device, the working dtype elsewhere.
  size_t param_home_bytes(const memory::ChunkLayout& layout) const {
    return params == Tier::kDevice ? layout.bytes() : working_bytes(layout);
  }
  // New weights from an Adam off the device reach device-resident working
  // parameters through a host staging buffer in the working dtype.
  bool stages_device_params() const {
    return reduced() && params == Tier::kDevice && optimizer != Tier::kDevice;
  }
  // The key that says whether the host pool is pinned.
  const char* pin_memory_key() const;
};

// The hard limits of memory.device_budget_bytes and memory.host_budget_bytes (0: none).
struct MemoryBudgets {
  uint64_t device_bytes = 0;
  uint64_t host_bytes = 0;
};

// Bytes per tier for a model of `layouts` trained in micro-batches whose
// activations take `activation_bytes` on the device, by a rank whose
// exchanges with the others take `exchange` (partition.h; none with one rank).
struct MemoryPlan {
  size_t activation_bytes = 0;  // device: activations and the gradient visit buffer
  // device, with bf16/fp16 working weights: two areas of the largest chunk in
  // that type, one rounding gradient visits, one the working copy of new weights.
  size_t convert_bytes = 0;
  size_t resident_bytes = 0;  // device: chunk classes whose home is the device
  // device, ZeRO stage 3: the slots chunks other ranks hold come into at use
  // (remote_slots, partition.h; 0 when this rank holds every chunk).
  size_t remote_bytes = 0;
  // device, several ranks with the gradient accumulators on the device: the
  // area a part received from another rank is added from (exchange_staging).
  size_t exchange_device_bytes = 0;
  size_t slot_bytes = 0;       // device: one shared slot for a streamed parameter chunk
  size_t slot_area_bytes = 0;  // ... of which its upload area at the end (16-bit working weights)
  size_t slot_elements = 0;    // ... the elements of the largest chunk it holds
  size_t slots = 0;            // shared device slots for streamed parameters (0: none)
  // Streamed chunks with fewer elements than stage3_param_persistence_threshold:
  // each has a device slot of its own (its bytes) and stays there once loaded.
  std::vector<bool> persistent;  // per chunk (empty when nothing is streamed)
  size_t persistent_chunks = 0;
  size_t persistent_bytes = 0;    // device
  size_t device_bytes = 0;  // activation + convert + resident + persistent + remote + exchange
                            // + slots * slot
  size_t device_min_bytes = 0;    // the least device budget that trains (one shared slot)
  size_t host_class_bytes = 0;    // host: chunk classes whose home is the host
  size_t host_staging_bytes = 0;  // host: staging buffers for NVMe and gradients
  size_t host_cache_bytes = 0;    // host: parameter chunks on NVMe also kept on the host
  // host, several ranks: the exchanges' staging (exchange_staging, partition.h),
  // part of host_staging_bytes.
  size_t exchange_bytes = 0;
  size_t cached_chunks = 0;       // ... the first this many chunks it holds (max_in_cpu)
  size_t host_bytes = 0;          // the host pool: classes + staging + cache
  // Optimizer state on NVMe: chunks staged at once (read ahead, computing,
  // writing back) and buffers per chunk (m and v, and the master weights
  // unless the host cache of the working copy holds them).
  size_t optimizer_sets = 0;
  size_t optimizer_set_buffers = 0;
  size_t nvme_bytes = 0;  // swap space, page-padded chunks
};

// kInvalidArgument naming memory.device_budget_bytes (or host_budget_bytes)
// and the least budget that works when the budget is too small, or naming
// zero_optimization.stage3_max_live_parameters and the least value that works
// when it cannot hold one shared slot.
absl::StatusOr<MemoryPlan> plan_memory(const Placement& placement, const MemoryBudgets& budgets,
                                       const std::vector<memory::ChunkLayout>& layouts,
                                       size_t activation_bytes,
                                       const ExchangeStaging& exchange = {});

}  // namespace dsinf::actors
