#include "trainer/models/program_buffers.h"

#include <algorithm>

#include "memory/util/check.h"

namespace dsinf::trainer {

using kernels::Stream;

ProgramBuffers::~ProgramBuffers() {
  for (void* p : owned_) device_->release(p);
}

size_t ProgramBuffers::total_bytes() const {
  size_t total = 0;
  for (const Entry& e : list_) total += memory::align_up(e.bytes, memory::kChunkAlignment);
  return total;
}

absl::Status ProgramBuffers::allocate() {
  for (const Entry& e : list_) {
    absl::StatusOr<void*> p = device_->allocate(e.bytes);
    if (!p.ok()) return p.status();
    owned_.push_back(*p);
    *e.slot = *p;
  }
  return absl::OkStatus();
}

size_t largest_chunk_bytes(const std::vector<memory::ChunkLayout>& layouts) {
  size_t largest = 0;
  for (const memory::ChunkLayout& layout : layouts) {
    if (layout.trainable()) largest = std::max(largest, layout.bytes());
  }
  return largest;
}

absl::Status upload_batch(kernels::Device& device, int32_t* inputs_dev, int32_t* targets_dev,
                          const int32_t* inputs, const int32_t* targets, size_t count, int V) {
  for (size_t i = 0; i < count; ++i) {
    // A negative target is masked (kernels::kIgnoreTarget): no loss there.
    DSINF_CHECK(inputs[i] >= 0 && inputs[i] < V && targets[i] < V);
  }
  const size_t bytes = count * sizeof(int32_t);
  if (absl::Status s = device.copy_to_device(inputs_dev, inputs, bytes, Stream::kUpload); !s.ok()) {
    return s;
  }
  if (absl::Status s = device.copy_to_device(targets_dev, targets, bytes, Stream::kUpload);
      !s.ok()) {
    return s;
  }
  device.stream_wait(Stream::kCompute, device.record(Stream::kUpload));
  return absl::OkStatus();
}

absl::StatusOr<double> download_loss_sum(kernels::Device& device, const float* losses_dev,
                                         size_t count) {
  std::vector<float> losses(count);
  device.stream_wait(Stream::kDownload, device.record(Stream::kCompute));
  if (absl::Status s =
          device.copy_to_host(losses.data(), losses_dev, count * sizeof(float), Stream::kDownload);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = device.synchronize(Stream::kDownload); !s.ok()) return s;
  double sum = 0;
  for (float x : losses) sum += x;
  return sum;
}

}  // namespace dsinf::trainer
