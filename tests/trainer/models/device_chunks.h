// A chunk source for model tests: every chunk's parameters and gradient
// accumulator resident in the backend's arena, the gradients added with the
// backend's own addition (as the runtime does for gradients on the device).
#pragma once

#include <vector>

#include "actors/runtime/model.h"
#include "kernels/backend.h"
#include "memory/chunk_layout.h"

namespace dsinf::testing {

class DeviceChunks final : public actors::ChunkSource {
 public:
  DeviceChunks(kernels::Backend* backend, std::vector<memory::ChunkLayout> layouts)
      : backend_(backend), layouts_(std::move(layouts)) {
    for (const memory::ChunkLayout& l : layouts_) {
      params_.push_back(static_cast<float*>(*backend_->allocate(l.bytes())));
      grads_.push_back(static_cast<float*>(*backend_->allocate(l.bytes())));
    }
  }
  ~DeviceChunks() override {
    for (float* p : params_) backend_->release(p);
    for (float* p : grads_) backend_->release(p);
  }
  absl::StatusOr<const float*> acquire_params(size_t c) override { return params_[c]; }
  absl::Status release_params(size_t) override { return absl::OkStatus(); }
  absl::Status accumulate_grads(size_t c, const float* visit) override {
    backend_->residual_forward(grads_[c], grads_[c], visit, layouts_[c].numel_padded());
    return absl::OkStatus();
  }
  absl::Status write_params(size_t c, const float* host) override {
    if (absl::Status s = backend_->copy_to_device(params_[c], host, floats(c) * sizeof(float),
                                                  kernels::Stream::kUpload);
        !s.ok()) {
      return s;
    }
    return backend_->synchronize(kernels::Stream::kUpload);
  }
  absl::Status read_chunk(size_t c, bool gradients, float* host) override {
    if (absl::Status s =
            backend_->copy_to_host(host, gradients ? grads_[c] : params_[c],
                                   floats(c) * sizeof(float), kernels::Stream::kDownload);
        !s.ok()) {
      return s;
    }
    return backend_->synchronize(kernels::Stream::kDownload);
  }
  // Every accumulator back to zero.
  absl::Status zero_grads() {
    for (size_t c = 0; c < layouts_.size(); ++c) {
      if (absl::Status s =
              backend_->fill_zero(grads_[c], layouts_[c].bytes(), kernels::Stream::kCompute);
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }
  const float* grad_chunk(size_t c) const { return grads_[c]; }
  size_t chunks() const { return layouts_.size(); }

 private:
  size_t floats(size_t c) const { return layouts_[c].numel_padded(); }
  kernels::Backend* backend_;
  std::vector<memory::ChunkLayout> layouts_;
  std::vector<float*> params_, grads_;
};

}  // namespace dsinf::testing
