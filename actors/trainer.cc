#include "actors/trainer.h"

#include <chrono>
#include <cmath>

#include "absl/strings/str_format.h"
#include "actors/runtime/runtime.h"
#include "actors/system.h"
#include "memory/util/check.h"

namespace dsinf::actors {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The gradients reset, then forward and backward over the step's
// micro-batches: a step up to its norm. Fills loss, forward_s and backward_s.
absl::Status forward_backward(Runtime& rt, const StepRequest& request, StepOutcome& out) {
  const StepSpec& spec = rt.spec().step;
  const int B = spec.micro_batch;
  const int64_t gas = spec.gradient_accumulation;
  const size_t window = request.inputs.size() / static_cast<size_t>(gas);
  DSINF_CHECK(request.inputs.size() == request.targets.size() &&
              window * gas == request.inputs.size());
  const int64_t T = static_cast<int64_t>(window) / B;
  // The loss is the mean over the step's positions that carry one (a
  // negative target is masked, as Hugging Face's -100 labels).
  int64_t counted = 0;
  for (int32_t t : request.targets) counted += t >= 0 ? 1 : 0;
  const bool masked = counted != static_cast<int64_t>(request.targets.size());
  rt.begin_step();
  double loss_sum = 0, token_loss_sum = 0;
  for (int64_t micro = 0; micro < gas; ++micro) {
    if (micro == gas - 1 && request.update) rt.last_micro_batch();
    auto t0 = Clock::now();
    // The step's index and the micro-batch: the same masks on a resumed run.
    rt.model().set_dropout_key(static_cast<uint64_t>(request.index) * static_cast<uint64_t>(gas) +
                               static_cast<uint64_t>(micro));
    absl::StatusOr<float> loss = rt.model().forward(request.inputs.data() + micro * window,
                                                    request.targets.data() + micro * window, B);
    if (!loss.ok()) return loss.status();
    out.forward_s += seconds_since(t0);
    t0 = Clock::now();
    // Mean over the counted tokens of every micro-batch of the step, times
    // fp16's loss scale. (A power-of-two scale multiplies exactly: without
    // fp16 or masks this is 1/(B*T*gas) as ever.) No counted token: no gradient.
    const float dloss = counted == 0 ? 0.0f
                                     : 1.0f / static_cast<float>(masked ? counted : B * T * gas) *
                                           static_cast<float>(rt.loss_scaler().scale());
    absl::Status backward = rt.model().backward(dloss);
    rt.model().set_dropout_key(std::nullopt);
    if (!backward.ok()) return backward;
    out.backward_s += seconds_since(t0);
    loss_sum += *loss;
    token_loss_sum += rt.model().last_loss_sum();
  }
  out.loss = !masked     ? loss_sum / static_cast<double>(gas)
             : counted > 0 ? token_loss_sum / static_cast<double>(counted)
                           : 0.0;
  return absl::OkStatus();
}

// The norm, fp16's overflow check, and the update or its skip. With fp16 an
// overflow skips the update (the outcome says so); otherwise a non-finite
// norm is an error that names the last checkpoint's directory.
absl::Status norm_and_update(Runtime& rt, const StepRequest& request, StepOutcome& out) {
  const StepSpec& spec = rt.spec().step;
  const auto t0 = Clock::now();
  absl::StatusOr<double> scaled_norm = rt.grad_norm();
  if (!scaled_norm.ok()) return scaled_norm.status();
  const bool overflow = !std::isfinite(*scaled_norm);
  LossScaler& scaler = rt.loss_scaler();
  if (overflow && !scaler.enabled()) {
    return absl::InternalError(absl::StrFormat(
        "step %d: the gradient norm is %f: training diverged (lower optimizer.params.lr or "
        "raise warmup); the last checkpoint in %s is intact",
        request.index + 1, *scaled_norm, spec.checkpoint_dir));
  }
  const double scale = scaler.scale();
  absl::StatusOr<LossScaler::Outcome> scaled = scaler.update(overflow);
  if (!scaled.ok()) {
    // Like divergence, a failure of the run, not of its input.
    return absl::InternalError(absl::StrFormat("step %d: %s; the last checkpoint in %s is intact",
                                               request.index + 1, scaled.status().message(),
                                               spec.checkpoint_dir));
  }
  out.loss_scale = scale;
  out.norm = *scaled_norm / scale;
  if (scaled->skip) {
    if (absl::Status s = rt.skip_update(); !s.ok()) return s;
    out.skipped = true;
    out.overflow_message = scaled->message;
    out.update_s = seconds_since(t0);
    return absl::OkStatus();
  }
  // The loss scale is divided out with the clip coefficient, in Adam's first multiply.
  const double grad_scale = clip_coefficient(out.norm, spec.gradient_clipping) / scale;
  if (absl::Status s = rt.update(request.lr, static_cast<float>(grad_scale)); !s.ok()) return s;
  out.update_s = seconds_since(t0);
  return absl::OkStatus();
}

trainer_actor::behavior_type trainer(trainer_actor::pointer self, Runtime* rt) {
  (void)self;
  return {[rt](step_atom, const StepRequest& request) -> caf::result<StepOutcome, absl::Status> {
    StepOutcome out;
    absl::Status status = forward_backward(*rt, request, out);
    if (status.ok() && request.update) status = norm_and_update(*rt, request, out);
    return {out, status};
  }};
}

}  // namespace

trainer_actor spawn_trainer(ActorSystem& system, Runtime* runtime) {
  return system.get().spawn<caf::detached>(trainer, runtime);
}

}  // namespace dsinf::actors
