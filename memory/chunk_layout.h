// The layout of one chunk: named tensors packed into one flat buffer. A chunk
// is the unit that moves between tiers, so its tensors are views at fixed
// offsets, each aligned for vector loads, and the whole chunk is a multiple of
// the page size. A chunk is trainable (it gets gradients, master weights and
// Adam state) or frozen (its working parameters only: read, never written back).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dsinf::memory {

inline constexpr size_t kTensorAlignment = 64;

struct TensorSlot {
  std::string name;            // e.g. "h.3.attn.c_attn.weight" (dsinf layout)
  std::vector<int64_t> shape;  // row-major
  size_t numel = 0;
  size_t offset_elems = 0;  // from the start of the chunk, in elements
};

class ChunkLayout {
 public:
  explicit ChunkLayout(size_t elem_bytes) : elem_bytes_(elem_bytes) {}

  // Appends a tensor and returns its index in tensors().
  size_t add(std::string name, std::vector<int64_t> shape);

  const std::vector<TensorSlot>& tensors() const { return tensors_; }
  const TensorSlot* find(const std::string& name) const;
  size_t elem_bytes() const { return elem_bytes_; }
  // Elements covered by tensors and the padding between them.
  size_t numel_padded() const { return numel_padded_; }
  // Bytes a buffer for this chunk needs (page-aligned).
  size_t bytes() const;
  // ... with its elements stored in `elem_bytes` each instead (a bf16 copy).
  size_t bytes_as(size_t elem_bytes) const;
  bool trainable() const { return trainable_; }
  void set_trainable(bool trainable) { trainable_ = trainable; }
  // A chunk the model holds together with another streamed chunk (LoRA's
  // adapters beside their layer's base) keeps a device slot of its own when
  // parameters are streamed, so that one shared slot always suffices.
  bool own_slot() const { return own_slot_; }
  void set_own_slot(bool own) { own_slot_ = own; }
  // A chunk another data-parallel rank holds (ZeRO stage 3): no home here;
  // its parameters come from their owner each time they are used.
  bool remote() const { return remote_; }
  void set_remote(bool remote) { remote_ = remote; }

 private:
  size_t elem_bytes_;
  size_t numel_padded_ = 0;
  bool trainable_ = true;
  bool own_slot_ = false;
  bool remote_ = false;
  std::vector<TensorSlot> tensors_;
};

}  // namespace dsinf::memory
