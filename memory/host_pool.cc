#include "memory/host_pool.h"

#include <sys/mman.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "memory/util/check.h"

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
    : name_(std::move(name)),
      base_(base),
      budget_bytes_(budget_bytes),
      region_(budget_bytes, kChunkAlignment, Region::Fit::kFirst) {}

HostPool::~HostPool() {
  // munmap also drops the lock of a pinned region.
  munmap(base_, budget_bytes_);
}

absl::StatusOr<std::byte*> HostPool::allocate(size_t bytes) {
  // Compare before rounding so a huge request cannot overflow align_up.
  const size_t rounded = bytes <= budget_bytes_ ? region_.rounded(bytes) : bytes;
  std::lock_guard<std::mutex> lock(mu_);
  // First fit by address keeps live blocks packed toward the start.
  absl::StatusOr<size_t> offset = region_.allocate(bytes);
  if (offset.ok()) return base_ + *offset;
  return absl::ResourceExhaustedError(absl::StrCat(
      name_, " host pool exhausted: ", bytes, " bytes requested (", rounded,
      " after rounding to pages) with ", region_.stats().in_use_bytes, " of ", budget_bytes_,
      " bytes in use; largest free block ", region_.largest_free(), " bytes"));
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
  const bool released = region_.release(offset).has_value();
  DSINF_CHECK_MSG(released,
                  "release of a pointer this host pool did not hand out, or a double release");
}

ArenaStats HostPool::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return region_.stats();
}

size_t HostPool::largest_free_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return region_.largest_free();
}

}  // namespace dsinf::memory
