#include "trainer/optimizer.h"

#include <cmath>

#include "trainer/gpt2.h"

namespace dsinf::trainer {

absl::StatusOr<std::unique_ptr<Optimizer>> Optimizer::create(
    kernels::Backend* backend, const std::vector<memory::ChunkLayout>& layouts,
    const OptimizerConfig& config) {
  std::unique_ptr<Optimizer> opt(new Optimizer(backend, layouts, config));
  for (const memory::ChunkLayout& layout : layouts) {
    for (std::vector<float*>* state : {&opt->m_, &opt->v_}) {
      absl::StatusOr<void*> p = backend->allocate(layout.bytes());
      if (!p.ok()) return p.status();
      state->push_back(static_cast<float*>(*p));
    }
  }
  return opt;
}

Optimizer::~Optimizer() {
  for (float* p : m_) backend_->release(p);
  for (float* p : v_) backend_->release(p);
}

size_t Optimizer::device_bytes_needed(const std::vector<memory::ChunkLayout>& layouts) {
  size_t total = 0;
  for (const memory::ChunkLayout& layout : layouts) total += 2 * layout.bytes();
  return total;
}

double Optimizer::grad_norm(GPT2& model) {
  double sum = 0;
  for (size_t c = 0; c < layouts_.size(); ++c) {
    sum += backend_->sum_squares(model.grad_chunk(c), layouts_[c].numel_padded());
  }
  return std::sqrt(sum);
}

void Optimizer::step(GPT2& model, double lr, float grad_scale) {
  ++step_count_;
  const kernels::AdamHyper hyper = adam_hyper(config_, lr, step_count_, grad_scale);
  // Padding between tensors holds zeros in params, grads, m and v, and stays zero.
  for (size_t c = 0; c < layouts_.size(); ++c) {
    backend_->adam_step(model.param_chunk(c), model.grad_chunk(c), m_[c], v_[c],
                        layouts_[c].numel_padded(), hyper);
  }
}

kernels::AdamHyper adam_hyper(const OptimizerConfig& config, double lr, int64_t step,
                              float grad_scale) {
  kernels::AdamHyper hyper;
  hyper.lr = static_cast<float>(lr);
  hyper.beta1 = static_cast<float>(config.beta1);
  hyper.beta2 = static_cast<float>(config.beta2);
  hyper.eps = static_cast<float>(config.eps);
  hyper.weight_decay = static_cast<float>(config.weight_decay);
  hyper.adam_w_mode = config.adam_w_mode;
  hyper.bias_correction = config.bias_correction;
  hyper.step = step;
  hyper.grad_scale = grad_scale;
  return hyper;
}

float clip_coefficient(double grad_norm, double clip) {
  if (clip <= 0) return 1.0f;
  const double coef = clip / (grad_norm + 1e-6);
  return coef < 1.0 ? static_cast<float>(coef) : 1.0f;
}

}  // namespace dsinf::trainer
