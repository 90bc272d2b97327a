// Adam/AdamW over the model's chunks with DeepSpeed's semantics, global-norm
// gradient clipping, and the state a checkpoint must carry (m, v, step count).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "memory/chunk_layout.h"
#include "trainer/config.h"

namespace dsinf::trainer {

class GPT2;

class Optimizer {
 public:
  // m and v chunks (same layouts as the parameters) in the backend's arena.
  static absl::StatusOr<std::unique_ptr<Optimizer>> create(
      kernels::Backend* backend, const std::vector<memory::ChunkLayout>& layouts,
      const OptimizerConfig& config);
  ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  static size_t device_bytes_needed(const std::vector<memory::ChunkLayout>& layouts);

  // L2 norm of all gradients, summed chunk by chunk in a fixed order.
  double grad_norm(GPT2& model);
  // One optimizer step: gradients times grad_scale (clipping), then Adam with `lr`.
  void step(GPT2& model, double lr, float grad_scale);

  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t n) { step_count_ = n; }
  float* m_chunk(size_t i) { return m_[i]; }
  float* v_chunk(size_t i) { return v_[i]; }

 private:
  Optimizer(kernels::Backend* backend, const std::vector<memory::ChunkLayout>& layouts,
            const OptimizerConfig& config)
      : backend_(backend), layouts_(layouts), config_(config) {}
  kernels::Backend* backend_;
  std::vector<memory::ChunkLayout> layouts_;
  OptimizerConfig config_;
  std::vector<float*> m_;
  std::vector<float*> v_;
  int64_t step_count_ = 0;
};

// The kernels' hyperparameters for optimizer step `step` (1-based) with
// learning rate `lr` and gradients multiplied by `grad_scale`: every optimizer
// (resident or offloaded) steps with exactly these values.
kernels::AdamHyper adam_hyper(const OptimizerConfig& config, double lr, int64_t step,
                              float grad_scale);

// The clip coefficient DeepSpeed applies: clip / (norm + 1e-6) when that is
// below 1, else 1 (also 1 when clipping is off, clip == 0).
float clip_coefficient(double grad_norm, double clip);

}  // namespace dsinf::trainer
