// A byte-budgeted arena: every allocation of a tier goes through one of these,
// so the tier's use and peak are known exactly and a budget is a hard limit.
#pragma once

#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "memory/aligned_buffer.h"

namespace dsinf::memory {

struct ArenaStats {
  size_t in_use_bytes = 0;
  size_t peak_bytes = 0;
  size_t budget_bytes = 0;  // 0: no budget
};

// Host-backed arena (the CPU backend's "device memory", and host staging).
// Allocations are page-aligned and zero-filled; sizes are counted rounded up
// to the page, which is what they really occupy.
class Arena {
 public:
  Arena(std::string tier_name, size_t budget_bytes)
      : tier_name_(std::move(tier_name)), budget_bytes_(budget_bytes) {}
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // kResourceExhausted names the tier, the request and the budget when the
  // allocation would pass the budget.
  absl::StatusOr<std::byte*> allocate(size_t bytes);
  void release(std::byte* ptr);
  ArenaStats stats() const;
  const std::string& tier_name() const { return tier_name_; }

 private:
  std::string tier_name_;
  size_t budget_bytes_;
  mutable std::mutex mu_;
  size_t in_use_bytes_ = 0;
  size_t peak_bytes_ = 0;
  std::unordered_map<std::byte*, AlignedBuffer> live_;
};

}  // namespace dsinf::memory
