// Host buffers aligned for O_DIRECT and DMA. Every chunk and every staging
// buffer in dsinf is one of these; the alignment is the page size so a buffer
// can later be registered with io_uring or pinned for device copies as is.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"

namespace dsinf::memory {

inline constexpr size_t kChunkAlignment = 4096;

constexpr size_t align_up(size_t n, size_t alignment) {
  return (n + alignment - 1) / alignment * alignment;
}

// Owns `bytes` of zero-filled memory aligned to kChunkAlignment.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  static absl::StatusOr<AlignedBuffer> allocate(size_t bytes);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& other) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  std::byte* data() { return data_; }
  const std::byte* data() const { return data_; }
  size_t size() const { return bytes_; }
  bool empty() const { return bytes_ == 0; }

 private:
  std::byte* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace dsinf::memory
