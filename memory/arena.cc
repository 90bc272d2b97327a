#include "memory/arena.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "memory/util/check.h"

namespace dsinf::memory {

Arena::~Arena() = default;

absl::StatusOr<std::byte*> Arena::allocate(size_t bytes) {
  const size_t rounded = align_up(std::max<size_t>(bytes, 1), kChunkAlignment);
  std::lock_guard<std::mutex> lock(mu_);
  if (budget_bytes_ != 0 && in_use_bytes_ + rounded > budget_bytes_) {
    return absl::ResourceExhaustedError(absl::StrCat(tier_name_, " budget exceeded: ", rounded,
                                                     " more bytes requested with ", in_use_bytes_,
                                                     " of ", budget_bytes_, " in use"));
  }
  absl::StatusOr<AlignedBuffer> buffer = AlignedBuffer::allocate(rounded);
  if (!buffer.ok()) return buffer.status();
  std::byte* ptr = buffer->data();
  live_.emplace(ptr, *std::move(buffer));
  in_use_bytes_ += rounded;
  peak_bytes_ = std::max(peak_bytes_, in_use_bytes_);
  return ptr;
}

void Arena::release(std::byte* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  DSINF_CHECK_MSG(it != live_.end(), "release of a pointer this arena did not allocate");
  in_use_bytes_ -= align_up(std::max<size_t>(it->second.size(), 1), kChunkAlignment);
  live_.erase(it);
}

ArenaStats Arena::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ArenaStats{in_use_bytes_, peak_bytes_, budget_bytes_};
}

}  // namespace dsinf::memory
