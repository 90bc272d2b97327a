// What every family's layer program does the same way: its device buffers
// (one list sizes and allocates them), the upload of a batch, the download
// of the per-token losses, and a gradient visit of one chunk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "actors/runtime/model.h"
#include "kernels/backend.h"
#include "memory/chunk_layout.h"

namespace dsinf::trainer {

// Device buffers declared one by one, then allocated together (or only
// sized), and released together.
class ProgramBuffers {
 public:
  explicit ProgramBuffers(kernels::Device* device) : device_(device) {}
  ~ProgramBuffers();
  ProgramBuffers(const ProgramBuffers&) = delete;
  ProgramBuffers& operator=(const ProgramBuffers&) = delete;

  // Declares a buffer of `bytes` whose device pointer allocate() stores in `slot`.
  template <typename T>
  void add(T*& slot, size_t bytes) {
    list_.push_back({reinterpret_cast<void**>(&slot), bytes});
  }
  // Bytes the declared buffers take in the arena (each page aligned).
  size_t total_bytes() const;
  // Allocates every declared buffer (kResourceExhausted when the budget is too small).
  absl::Status allocate();

 private:
  struct Entry {
    void** slot;
    size_t bytes;
  };
  kernels::Device* device_;
  std::vector<Entry> list_;
  std::vector<void*> owned_;
};

// The largest trainable chunk of `layouts` in bytes: a gradient visit
// buffer's size (a frozen chunk gets no visit).
size_t largest_chunk_bytes(const std::vector<memory::ChunkLayout>& layouts);

// Copies B*T input and target ids to the device (upload stream) and makes the
// compute stream wait for them. Every id must be < V.
absl::Status upload_batch(kernels::Device& device, int32_t* inputs_dev, int32_t* targets_dev,
                          const int32_t* inputs, const int32_t* targets, size_t count, int V);

// Downloads `count` per-token losses after the compute stream's work and
// returns their sum in double, in index order.
absl::StatusOr<double> download_loss_sum(kernels::Device& device, const float* losses_dev,
                                         size_t count);

// Zeroes `visit` (chunk c's size), runs body(visit), which adds chunk c's
// gradient into it, and hands the visit to the source.
template <typename Body>
absl::Status grad_visit(kernels::Device& device, actors::ChunkSource& source,
                        const std::vector<memory::ChunkLayout>& layouts, float* visit, size_t c,
                        Body&& body) {
  if (absl::Status s = device.fill_zero(visit, layouts[c].bytes(), kernels::Stream::kCompute);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = body(visit); !s.ok()) return s;
  return source.accumulate_grads(c, visit);
}

}  // namespace dsinf::trainer
