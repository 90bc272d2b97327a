// Bookkeeping for sub-allocating one address range: which offsets are free,
// which are handed out, and how many bytes that makes. A Region never touches
// the memory it describes -- it deals in offsets only -- so the same code
// carves the host pool (memory/host_pool.h) and the CUDA backend's device
// arena (kernels/cuda/cuda_backend.cc).
//
// Blocks are multiples of the alignment and start at multiples of it; freed
// neighbours are merged at once, so free space is never split more than the
// live blocks force. Not thread-safe: the owner serialises calls (its lock
// also covers the memory the offsets stand for).
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "memory/arena.h"

namespace dsinf::memory {

class Region {
 public:
  enum class Fit {
    kFirst,  // the lowest-offset free range that fits: keeps live blocks packed at the start
    kBest,   // the smallest free range that fits (lowest offset among equals)
  };

  // `size` bytes starting at offset 0. `alignment` is a power of two and
  // `size` a multiple of it (checked: both are programmer errors).
  Region(size_t size, size_t alignment, Fit fit = Fit::kFirst);
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  // What a request of `bytes` occupies: rounded up to the alignment, 0 taking
  // one unit. Only meaningful for bytes <= size().
  size_t rounded(size_t bytes) const;

  // The offset of a block of rounded(bytes). kResourceExhausted when no free
  // range is large enough (including any request larger than the region);
  // the stats are then unchanged.
  absl::StatusOr<size_t> allocate(size_t bytes);
  // Returns the block at `offset` to the free space and its size;
  // std::nullopt (and no change) if no block starts there -- a foreign
  // offset or a double release, which the owner reports.
  std::optional<size_t> release(size_t offset);

  // in_use / peak count rounded blocks; budget_bytes is size().
  ArenaStats stats() const { return ArenaStats{in_use_bytes_, peak_bytes_, size_}; }
  // The largest block allocate() could return now.
  size_t largest_free() const;
  // Free ranges and live blocks, for tests of the merging.
  size_t free_ranges() const { return free_by_offset_.size(); }
  size_t live_blocks() const { return live_by_offset_.size(); }
  size_t size() const { return size_; }
  size_t alignment() const { return alignment_; }

 private:
  const size_t size_;
  const size_t alignment_;
  const Fit fit_;
  // Free ranges by offset, never adjacent: release() merges neighbours.
  std::map<size_t, size_t> free_by_offset_;
  std::unordered_map<size_t, size_t> live_by_offset_;
  size_t in_use_bytes_ = 0;
  size_t peak_bytes_ = 0;
};

}  // namespace dsinf::memory
