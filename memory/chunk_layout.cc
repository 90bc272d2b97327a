#include "memory/chunk_layout.h"

#include "memory/aligned_buffer.h"
#include "memory/util/check.h"

namespace dsinf::memory {

size_t ChunkLayout::add(std::string name, std::vector<int64_t> shape) {
  DSINF_CHECK(kTensorAlignment % elem_bytes_ == 0);
  size_t numel = 1;
  for (int64_t d : shape) {
    DSINF_CHECK(d > 0);
    numel *= static_cast<size_t>(d);
  }
  const size_t align_elems = kTensorAlignment / elem_bytes_;
  const size_t offset = align_up(numel_padded_, align_elems);
  tensors_.push_back(TensorSlot{std::move(name), std::move(shape), numel, offset});
  numel_padded_ = offset + numel;
  return tensors_.size() - 1;
}

const TensorSlot* ChunkLayout::find(const std::string& name) const {
  for (const TensorSlot& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

size_t ChunkLayout::bytes() const { return bytes_as(elem_bytes_); }

size_t ChunkLayout::bytes_as(size_t elem_bytes) const {
  return align_up(numel_padded_ * elem_bytes, kChunkAlignment);
}

}  // namespace dsinf::memory
