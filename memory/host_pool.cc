#include "memory/host_pool.h"

#include <sys/mman.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>

#include "absl/strings/str_cat.h"
#include "memory/check.h"

namespace dsinf::memory {
namespace {

std::string memlock_limit_text() {
  rlimit limit{};
  if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0) return "unknown";
  if (limit.rlim_cur == RLIM_INFINITY) return "unlimited";
  return absl::StrCat(limit.rlim_cur, " bytes");
}

}  // namespace

absl::StatusOr<std::unique_ptr<HostPool>> HostPool::create(std::string name, size_t budget_bytes,
                                                           bool pin) {
  if (budget_bytes == 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": host pool budget must be > 0 bytes"));
  }
  if (budget_bytes > std::numeric_limits<size_t>::max() - kChunkAlignment) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": host pool budget of ", budget_bytes, " bytes is too large"));
  }
  const size_t rounded = align_up(budget_bytes, kChunkAlignment);
  // mmap returns whole pages (>= 4 KiB) and never grows; untouched pages are
  // only committed on first use unless the region is pinned.
  void* region = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrCat(name, ": cannot map a host pool of ", rounded,
                                                     " bytes: ", std::strerror(errno)));
  }
  DSINF_CHECK(reinterpret_cast<uintptr_t>(region) % kChunkAlignment == 0);
  std::unique_ptr<HostPool> pool(
      new HostPool(std::move(name), static_cast<std::byte*>(region), rounded));
  if (pin) {
    if (mlock(region, rounded) == 0) {
      pool->pinned_ = true;
    } else {
      // Not fatal: unpinned memory is slower to copy to a device, not wrong.
      const int err = errno;
      pool->pin_failure_ =
          absl::StrCat(pool->name_, ": mlock of ", rounded, " bytes refused (", std::strerror(err),
                       "; RLIMIT_MEMLOCK ", memlock_limit_text(), "); host pool is not pinned");
    }
  }
  return pool;
}

HostPool::HostPool(std::string name, std::byte* base, size_t budget_bytes)
    : name_(std::move(name)), base_(base), budget_bytes_(budget_bytes) {
  free_bytes_by_offset_.emplace(0, budget_bytes);
}

HostPool::~HostPool() {
  // munmap also drops the lock of a pinned region.
  munmap(base_, budget_bytes_);
}

absl::StatusOr<std::byte*> HostPool::allocate(size_t bytes) {
  // Compare before rounding so a huge request cannot overflow align_up.
  const bool can_fit = bytes <= budget_bytes_;
  const size_t rounded = can_fit ? align_up(std::max<size_t>(bytes, 1), kChunkAlignment) : bytes;
  std::lock_guard<std::mutex> lock(mu_);
  if (can_fit) {
    // First fit by address keeps live blocks packed toward the start.
    for (auto it = free_bytes_by_offset_.begin(); it != free_bytes_by_offset_.end(); ++it) {
      if (it->second < rounded) continue;
      const size_t offset = it->first;
      const size_t rest_bytes = it->second - rounded;
      free_bytes_by_offset_.erase(it);
      if (rest_bytes > 0) free_bytes_by_offset_.emplace(offset + rounded, rest_bytes);
      live_bytes_by_offset_.emplace(offset, rounded);
      in_use_bytes_ += rounded;
      peak_bytes_ = std::max(peak_bytes_, in_use_bytes_);
      return base_ + offset;
    }
  }
  return absl::ResourceExhaustedError(
      absl::StrCat(name_, " host pool exhausted: ", bytes, " bytes requested (", rounded,
                   " after rounding to pages) with ", in_use_bytes_, " of ", budget_bytes_,
                   " bytes in use; largest free block ", largest_free_locked(), " bytes"));
}

absl::StatusOr<std::byte*> HostPool::allocate_zeroed(size_t bytes) {
  absl::StatusOr<std::byte*> ptr = allocate(bytes);
  if (ptr.ok()) std::memset(*ptr, 0, align_up(std::max<size_t>(bytes, 1), kChunkAlignment));
  return ptr;
}

void HostPool::release(std::byte* ptr) {
  if (ptr == nullptr) return;
  DSINF_CHECK_MSG(ptr >= base_ && ptr < base_ + budget_bytes_,
                  "release of a pointer outside this host pool");
  const size_t offset = static_cast<size_t>(ptr - base_);
  std::lock_guard<std::mutex> lock(mu_);
  auto live = live_bytes_by_offset_.find(offset);
  DSINF_CHECK_MSG(live != live_bytes_by_offset_.end(),
                  "release of a pointer this host pool did not hand out, or a double release");
  size_t start = offset;
  size_t bytes = live->second;
  live_bytes_by_offset_.erase(live);
  in_use_bytes_ -= bytes;

  // Merge with the free neighbours so free space never stays split.
  auto next = free_bytes_by_offset_.lower_bound(offset);
  if (next != free_bytes_by_offset_.end() && next->first == offset + bytes) {
    bytes += next->second;
    next = free_bytes_by_offset_.erase(next);
  }
  if (next != free_bytes_by_offset_.begin()) {
    auto prev = std::prev(next);
    DSINF_CHECK(prev->first + prev->second <= start);
    if (prev->first + prev->second == start) {
      start = prev->first;
      bytes += prev->second;
      free_bytes_by_offset_.erase(prev);
    }
  }
  free_bytes_by_offset_.emplace(start, bytes);
}

ArenaStats HostPool::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ArenaStats{in_use_bytes_, peak_bytes_, budget_bytes_};
}

size_t HostPool::largest_free_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return largest_free_locked();
}

size_t HostPool::largest_free_locked() const {
  size_t largest = 0;
  for (const auto& [offset, bytes] : free_bytes_by_offset_) largest = std::max(largest, bytes);
  return largest;
}

}  // namespace dsinf::memory
