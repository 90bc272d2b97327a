// The memory of every tensor class of every chunk at its home tier -- the
// device arena, the host pool, the NVMe swap stores -- and the buffers that
// move chunks between tiers: device slots for streamed parameters, host
// staging for NVMe reads and gradient visits, the optimizer's staging sets,
// and the host cache of NVMe parameters (offload_param.max_in_cpu). All of it
// is reserved at start-up from the memory plan; nothing grows afterwards.
// The store holds memory only: the runtime and its actors decide when bytes
// move.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "actors/messages.h"
#include "actors/param_shard.h"
#include "actors/runtime/placement.h"
#include "actors/runtime/spec.h"
#include "kernels/backend.h"
#include "memory/chunk_layout.h"
#include "memory/host_pool.h"
#include "nvme/engine.h"
#include "nvme/swap_store.h"

namespace dsinf::actors {

// The chunks of one tensor class at one tier. A frozen chunk has no gradient,
// master or moments: its entries are null.
struct ClassHome {
  Tier tier = Tier::kDevice;
  std::vector<float*> device;       // kDevice: arena buffers
  std::vector<std::byte*> host;     // kHost: host pool blocks
  nvme::SwapStore* swap = nullptr;  // kNvme: chunk c is swap chunk first_id + c
  uint32_t first_id = 0;

  SwapChunk swap_chunk(size_t c) const { return {swap, first_id + static_cast<uint32_t>(c)}; }
};

// One chunk's optimizer state on its way between NVMe and Adam: host buffers
// of the largest chunk's size.
struct StagingBuffers {
  std::byte* master = nullptr;  // null when every master comes from the host cache
  std::byte* m = nullptr;
  std::byte* v = nullptr;
};

class ChunkStore {
 public:
  static absl::StatusOr<std::unique_ptr<ChunkStore>> create(
      kernels::Backend* backend, const RuntimeSpec& spec, const MemoryPlan& plan,
      const std::vector<memory::ChunkLayout>& layouts);
  ~ChunkStore();  // releases device memory and unregisters the pool; swap I/O must be over
  ChunkStore(const ChunkStore&) = delete;
  ChunkStore& operator=(const ChunkStore&) = delete;

  const std::vector<memory::ChunkLayout>& layouts() const { return layouts_; }
  size_t chunks() const { return layouts_.size(); }
  size_t bytes(size_t c) const { return layouts_[c].bytes(); }  // fp32
  // The working parameters' type off the device, and chunk c's bytes in it.
  kernels::DType working_dtype() const { return placement_.working_dtype; }
  bool reduced() const { return placement_.reduced(); }
  size_t working_bytes(size_t c) const { return placement_.working_bytes(layouts_[c]); }
  size_t numel(size_t c) const { return layouts_[c].numel_padded(); }
  bool trainable(size_t c) const { return layouts_[c].trainable(); }
  const Placement& placement() const { return placement_; }

  ClassHome& params() { return params_; }
  ClassHome& grads() { return grads_; }
  ClassHome& m() { return m_; }
  ClassHome& v() { return v_; }
  // The fp32 weights Adam updates: the working copy when both share a tier.
  ClassHome& master() { return master_shared_ ? params_ : master_; }
  bool master_is_params() const { return master_shared_; }

  // offload_param.max_in_cpu: chunk c's host copy of its NVMe parameters, or null.
  std::byte* cache(size_t c) const { return c < cache_.size() ? cache_[c] : nullptr; }
  // That copy holds the chunk's current weights (its NVMe copy may be older).
  bool cache_current(size_t c) const { return cache(c) != nullptr && cache_current_[c] != 0; }
  void set_cache_current(size_t c) { cache_current_[c] = 1; }
  // Chunk c's master weights are its working copy's host cache.
  bool master_in_cache(size_t c) const { return master_shared_ && cache_current(c); }

  // Host staging, in the working dtype: a gradient visit on its way to a host
  // accumulator, and new weights on their way to an NVMe working copy (or,
  // bf16/fp16, to device-resident ones) (null when not needed).
  std::byte* visit_staging() const { return visit_staging_; }
  std::byte* param_staging() const { return param_staging_; }
  // bf16/fp16: device areas of the largest chunk in that type, where gradient
  // visits (the model's thread) and new working weights (the optimizer, or a
  // load) are rounded; null with fp32.
  void* visit_area() const { return visit_area_; }
  void* param_area() const { return param_area_; }
  // The optimizer's staging sets for state on NVMe (plan.optimizer_sets).
  const std::vector<StagingBuffers>& optimizer_sets() const { return sets_; }
  // Chunk homes and device slots for the parameter streamer (params off the device).
  ShardSetup shard_setup() const;

  memory::HostPool* pool() const { return pool_.get(); }
  // A block of the host pool, for staging the plan counted (the ranks' exchanges).
  absl::StatusOr<std::byte*> host_block(size_t bytes);
  nvme::IoEngine* engine() const { return engine_.get(); }
  // Bytes held in the swap stores.
  size_t nvme_bytes() const;
  // Moments on NVMe start at zero: the swap chunks (still unwritten) to zero
  // before the first read, and a host buffer of zeros to write them from.
  std::vector<SwapChunk> unwritten_moments() const;
  std::byte* zeros() const;

 private:
  ChunkStore(kernels::Backend* backend, const RuntimeSpec& spec,
             const std::vector<memory::ChunkLayout>& layouts);
  absl::Status reserve_host_pool(const MemoryPlan& plan, uint64_t budget_bytes);
  absl::Status reserve_staging(const MemoryPlan& plan);
  absl::Status open_swap(const RuntimeSpec& spec);
  absl::Status reserve_homes();
  absl::StatusOr<ClassHome> make_home(Tier tier, nvme::SwapStore* swap, uint32_t first_id,
                                      bool all_chunks);
  absl::Status reserve_slots(const MemoryPlan& plan);
  size_t largest_bytes() const;
  size_t largest_working_bytes() const;
  absl::StatusOr<void*> device_block(size_t bytes);

  kernels::Backend* backend_;
  Placement placement_;
  std::vector<memory::ChunkLayout> layouts_;
  bool any_trainable_ = false;
  bool master_shared_ = false;  // the master weights are the working copy
  std::unique_ptr<memory::HostPool> pool_;
  bool pool_registered_ = false;  // with the backend, for DMA
  std::unique_ptr<nvme::IoEngine> engine_;
  std::unique_ptr<nvme::SwapStore> param_swap_, optimizer_swap_;
  ClassHome params_, grads_, master_, m_, v_;
  std::byte* visit_staging_ = nullptr;
  std::byte* param_staging_ = nullptr;
  void* visit_area_ = nullptr;
  void* param_area_ = nullptr;
  std::vector<StagingBuffers> sets_;
  std::vector<float*> device_blocks_;     // every arena block of the store, for release
  std::vector<float*> slots_;             // shared device slots for streamed parameter chunks
  std::vector<std::byte*> slot_staging_;  // one per slot: NVMe reads of parameter chunks
  std::vector<void*> slot_areas_;         // one per slot: 16-bit uploads (empty with fp32)
  std::vector<void*> own_areas_;          // per chunk: ... of its own slot, or null
  std::vector<float*> own_slots_;         // per chunk: its own slot (persistent), or null
  std::vector<std::byte*> own_staging_;   // ... and its NVMe read buffer, or null
  std::vector<std::byte*> cache_;         // per chunk: host copy of an NVMe parameter chunk
  std::vector<uint8_t> cache_current_;    // per chunk: that copy holds the current weights
};

}  // namespace dsinf::actors
