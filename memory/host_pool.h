// The bounded host pool of the offload runtime: one region of the whole host
// budget, mapped once at start-up and sub-allocated into page-aligned blocks,
// so host memory use is fixed before training starts and never grows.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "memory/aligned_buffer.h"
#include "memory/arena.h"
#include "memory/region.h"

namespace dsinf::memory {

class HostPool {
 public:
  // Maps `budget_bytes` (rounded up to kChunkAlignment) at once. With `pin`
  // (DeepSpeed's pin_memory) the region is mlock'ed; when the OS refuses
  // (RLIMIT_MEMLOCK), creation still succeeds with pinned() == false and
  // pin_failure() saying why, for the caller to log once.
  // kInvalidArgument for a zero budget, kResourceExhausted if the mapping fails.
  static absl::StatusOr<std::unique_ptr<HostPool>> create(std::string name, size_t budget_bytes,
                                                          bool pin);
  ~HostPool();
  HostPool(const HostPool&) = delete;
  HostPool& operator=(const HostPool&) = delete;

  // A block of at least `bytes` (rounded up to kChunkAlignment; 0 takes one
  // page), aligned to kChunkAlignment. The contents are NOT zeroed: a block
  // may hold whatever its previous owner left (first use of a page reads 0,
  // but do not rely on it). kResourceExhausted names the pool, the request,
  // the bytes in use, the budget and the largest free block.
  absl::StatusOr<std::byte*> allocate(size_t bytes);
  // As allocate, then zero-fills the rounded block (outside the lock).
  absl::StatusOr<std::byte*> allocate_zeroed(size_t bytes);
  // Aborts (DSINF_CHECK) on a pointer this pool did not hand out, or one
  // already released. nullptr is a no-op.
  void release(std::byte* ptr);

  ArenaStats stats() const;
  // The largest block allocate() could return now: budget minus in-use bytes
  // when the free space is one piece, less when it is fragmented.
  size_t largest_free_bytes() const;

  bool pinned() const { return pinned_; }
  // Empty unless pinning was asked for and refused.
  const std::string& pin_failure() const { return pin_failure_; }
  const std::string& name() const { return name_; }
  // The whole region: the seam for a device backend to register it for DMA
  // (cudaHostRegister) once, right after create().
  void* base() const { return base_; }
  size_t size() const { return budget_bytes_; }

 private:
  HostPool(std::string name, std::byte* base, size_t budget_bytes);

  const std::string name_;
  std::byte* const base_;
  const size_t budget_bytes_;
  bool pinned_ = false;
  std::string pin_failure_;

  mutable std::mutex mu_;
  // The bookkeeping of the blocks (first fit, kChunkAlignment), under mu_.
  Region region_;
};

}  // namespace dsinf::memory
