#include "memory/region.h"

#include <algorithm>
#include <iterator>
#include <limits>

#include "absl/strings/str_cat.h"
#include "memory/aligned_buffer.h"
#include "memory/util/check.h"

namespace dsinf::memory {

Region::Region(size_t size, size_t alignment, Fit fit)
    : size_(size), alignment_(alignment), fit_(fit) {
  DSINF_CHECK_MSG(alignment > 0 && (alignment & (alignment - 1)) == 0,
                  "region alignment must be a power of two");
  DSINF_CHECK_MSG(size % alignment == 0, "region size must be a multiple of its alignment");
  // Rounding a request <= size up to the alignment then cannot overflow.
  DSINF_CHECK_MSG(size <= std::numeric_limits<size_t>::max() - alignment, "region too large");
  if (size > 0) free_by_offset_.emplace(0, size);
}

size_t Region::rounded(size_t bytes) const {
  return align_up(std::max<size_t>(bytes, 1), alignment_);
}

absl::StatusOr<size_t> Region::allocate(size_t bytes) {
  // Compare before rounding so a huge request cannot overflow align_up.
  if (bytes <= size_) {
    const size_t need = rounded(bytes);
    auto chosen = free_by_offset_.end();
    for (auto it = free_by_offset_.begin(); it != free_by_offset_.end(); ++it) {
      if (it->second < need) continue;
      if (chosen == free_by_offset_.end() || it->second < chosen->second) chosen = it;
      if (fit_ == Fit::kFirst || it->second == need) break;  // an exact fit is the best one
    }
    if (chosen != free_by_offset_.end()) {
      const size_t offset = chosen->first;
      const size_t rest = chosen->second - need;
      free_by_offset_.erase(chosen);
      if (rest > 0) free_by_offset_.emplace(offset + need, rest);
      live_by_offset_.emplace(offset, need);
      in_use_bytes_ += need;
      peak_bytes_ = std::max(peak_bytes_, in_use_bytes_);
      return offset;
    }
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "region exhausted: ", bytes, " bytes requested (", bytes <= size_ ? rounded(bytes) : bytes,
      " after rounding to ", alignment_, ") with ", in_use_bytes_, " of ", size_,
      " bytes in use; largest free block ", largest_free(), " bytes"));
}

std::optional<size_t> Region::release(size_t offset) {
  auto live = live_by_offset_.find(offset);
  if (live == live_by_offset_.end()) return std::nullopt;
  const size_t block = live->second;
  live_by_offset_.erase(live);
  in_use_bytes_ -= block;

  // Merge with the free neighbours so free space never stays split.
  size_t start = offset;
  size_t bytes = block;
  auto next = free_by_offset_.lower_bound(offset);
  if (next != free_by_offset_.end() && next->first == offset + bytes) {
    bytes += next->second;
    next = free_by_offset_.erase(next);
  }
  if (next != free_by_offset_.begin()) {
    auto prev = std::prev(next);
    DSINF_CHECK(prev->first + prev->second <= start);
    if (prev->first + prev->second == start) {
      start = prev->first;
      bytes += prev->second;
      free_by_offset_.erase(prev);
    }
  }
  free_by_offset_.emplace(start, bytes);
  return block;
}

size_t Region::largest_free() const {
  size_t largest = 0;
  for (const auto& [offset, bytes] : free_by_offset_) largest = std::max(largest, bytes);
  return largest;
}

}  // namespace dsinf::memory
