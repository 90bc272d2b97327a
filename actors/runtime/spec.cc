#include "actors/runtime/spec.h"

namespace dsinf::actors {

kernels::AdamHyper adam_hyper(const AdamSpec& adam, double lr, int64_t step, float grad_scale) {
  kernels::AdamHyper hyper;
  hyper.lr = static_cast<float>(lr);
  hyper.beta1 = static_cast<float>(adam.beta1);
  hyper.beta2 = static_cast<float>(adam.beta2);
  hyper.eps = static_cast<float>(adam.eps);
  hyper.weight_decay = static_cast<float>(adam.weight_decay);
  hyper.adam_w_mode = adam.adam_w_mode;
  hyper.bias_correction = adam.bias_correction;
  hyper.step = step;
  hyper.grad_scale = grad_scale;
  return hyper;
}

float clip_coefficient(double grad_norm, double clip) {
  if (clip <= 0) return 1.0f;
  const double coef = clip / (grad_norm + 1e-6);
  return coef < 1.0 ? static_cast<float>(coef) : 1.0f;
}

}  // namespace dsinf::actors
