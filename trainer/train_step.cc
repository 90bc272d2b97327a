#include "trainer/train_step.h"

#include <chrono>
#include <cmath>
#include <vector>

#include "absl/strings/str_format.h"
#include "trainer/optimizer.h"

namespace dsinf::trainer {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

absl::StatusOr<StepOutcome> forward_backward(Runtime& rt, const Config& config,
                                             const NextBatch& next_batch) {
  const int B = static_cast<int>(config.train_micro_batch_size_per_gpu);
  const int64_t T = config.model.n_positions;
  const int64_t gas = config.gradient_accumulation_steps;
  std::vector<int32_t> inputs(static_cast<size_t>(B * T)), targets(inputs.size());
  StepOutcome out;
  if (absl::Status s = rt.zero_grad(); !s.ok()) return s;
  double loss_sum = 0;
  for (int64_t micro = 0; micro < gas; ++micro) {
    if (micro == gas - 1) rt.last_micro_batch();
    next_batch(inputs.data(), targets.data());
    auto t0 = Clock::now();
    absl::StatusOr<float> loss = rt.model->forward(inputs.data(), targets.data(), B);
    if (!loss.ok()) return loss.status();
    out.forward_s += seconds_since(t0);
    t0 = Clock::now();
    // Mean over the tokens of every micro-batch of the step, times fp16's loss scale.
    // (A power-of-two scale multiplies exactly: without fp16 this is 1/(B*T*gas) as ever.)
    const float dloss =
        1.0f / static_cast<float>(B * T * gas) * static_cast<float>(rt.loss_scaler.scale());
    if (absl::Status s = rt.model->backward(dloss); !s.ok()) return s;
    out.backward_s += seconds_since(t0);
    loss_sum += *loss;
  }
  out.loss = loss_sum / static_cast<double>(gas);
  return out;
}

absl::StatusOr<StepOutcome> train_step(Runtime& rt, const Config& config, int64_t index, double lr,
                                       const NextBatch& next_batch) {
  absl::StatusOr<StepOutcome> passes = forward_backward(rt, config, next_batch);
  if (!passes.ok()) return passes.status();
  StepOutcome out = *passes;
  const auto t0 = Clock::now();
  absl::StatusOr<double> scaled_norm = rt.grad_norm();
  if (!scaled_norm.ok()) return scaled_norm.status();
  const bool overflow = !std::isfinite(*scaled_norm);
  if (overflow && !rt.loss_scaler.enabled()) {
    return absl::InternalError(absl::StrFormat(
        "step %d: the gradient norm is %f: training diverged (lower optimizer.params.lr or "
        "raise warmup); the last checkpoint in %s is intact",
        index + 1, *scaled_norm, config.train.output_dir));
  }
  const double scale = rt.loss_scaler.scale();
  absl::StatusOr<LossScaler::Outcome> scaled = rt.loss_scaler.update(overflow);
  if (!scaled.ok()) {
    // Like divergence, a failure of the run, not of its input.
    return absl::InternalError(absl::StrFormat("step %d: %s; the last checkpoint in %s is intact",
                                               index + 1, scaled.status().message(),
                                               config.train.output_dir));
  }
  out.loss_scale = scale;
  out.norm = *scaled_norm / scale;
  if (scaled->skip) {
    if (absl::Status s = rt.skip_step(); !s.ok()) return s;
    out.skipped = true;
    out.overflow_message = scaled->message;
    out.update_s = seconds_since(t0);
    return out;
  }
  // The loss scale is divided out with the clip coefficient, in Adam's first multiply.
  const double grad_scale = clip_coefficient(out.norm, config.gradient_clipping) / scale;
  if (absl::Status s = rt.step(lr, static_cast<float>(grad_scale)); !s.ok()) return s;
  out.update_s = seconds_since(t0);
  return out;
}

}  // namespace dsinf::trainer
