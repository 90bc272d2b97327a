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

// The global count of tokens that carry a loss (a negative target is
// masked, as Hugging Face's -100 labels), over every rank's micro-batches.
absl::StatusOr<int64_t> counted_tokens(Runtime& rt, const std::vector<int32_t>& targets) {
  int64_t counted = 0;
  for (int32_t t : targets) counted += t >= 0 ? 1 : 0;
  absl::StatusOr<std::vector<double>> all = rt.gather_values({static_cast<double>(counted)});
  if (!all.ok()) return all.status();
  counted = 0;
  for (double c : *all) counted += static_cast<int64_t>(c);
  return counted;
}

// The step's loss from every rank's per-micro-batch losses, summed in the
// order of the global micro-batches (micro-batch k of rank r is k * N + r).
absl::StatusOr<double> loss_sum(Runtime& rt, const std::vector<double>& mine) {
  absl::StatusOr<std::vector<double>> all = rt.gather_values(mine);
  if (!all.ok()) return all.status();
  const size_t gas = mine.size(), N = static_cast<size_t>(rt.ranks());
  double sum = 0;
  for (size_t k = 0; k < gas; ++k) {
    for (size_t r = 0; r < N; ++r) sum += (*all)[r * gas + k];
  }
  return sum;
}

// The gradients reset, then forward and backward over this rank's
// micro-batches of the step: a step up to its norm. Fills loss, forward_s
// and backward_s.
absl::Status forward_backward(Runtime& rt, const StepRequest& request, StepOutcome& out) {
  const StepSpec& spec = rt.spec().step;
  const int B = spec.micro_batch;
  const int64_t gas = spec.gradient_accumulation;
  const int64_t N = rt.ranks();
  const size_t window = request.inputs.size() / static_cast<size_t>(gas);
  DSINF_CHECK(request.inputs.size() == request.targets.size() &&
              window * gas == request.inputs.size());
  const int64_t T = static_cast<int64_t>(window) / B;
  // The loss is the mean over the step's positions that carry one.
  absl::StatusOr<int64_t> counted = counted_tokens(rt, request.targets);
  if (!counted.ok()) return counted.status();
  const int64_t positions = B * T * gas * N;
  const bool masked = *counted != positions;
  rt.begin_step();
  std::vector<double> losses(gas), token_losses(gas);
  for (int64_t micro = 0; micro < gas; ++micro) {
    if (micro == gas - 1 && request.update) rt.last_micro_batch();
    auto t0 = Clock::now();
    // The step's index and the global micro-batch: the same masks on a
    // resumed run, and on any number of ranks.
    const int64_t global_micro = micro * N + rt.rank();
    rt.model().set_dropout_key(static_cast<uint64_t>(request.index) *
                                   static_cast<uint64_t>(gas * N) +
                               static_cast<uint64_t>(global_micro));
    absl::StatusOr<float> loss = rt.model().forward(request.inputs.data() + micro * window,
                                                    request.targets.data() + micro * window, B);
    if (!loss.ok()) return loss.status();
    out.forward_s += seconds_since(t0);
    t0 = Clock::now();
    // Mean over the counted tokens of every micro-batch of the step, times
    // fp16's loss scale. (A power-of-two scale multiplies exactly: without
    // fp16 or masks this is 1/(B*T*gas*N) as ever.) No counted token: no gradient.
    const float dloss = *counted == 0 ? 0.0f
                                      : 1.0f / static_cast<float>(masked ? *counted : positions) *
                                            static_cast<float>(rt.loss_scaler().scale());
    absl::Status backward = rt.model().backward(dloss);
    rt.model().set_dropout_key(std::nullopt);
    if (!backward.ok()) return backward;
    rt.end_micro_batch();
    out.backward_s += seconds_since(t0);
    losses[micro] = *loss;
    token_losses[micro] = rt.model().last_loss_sum();
  }
  absl::StatusOr<double> sum = loss_sum(rt, masked ? token_losses : losses);
  if (!sum.ok()) return sum.status();
  out.loss = !masked       ? *sum / static_cast<double>(gas * N)
             : *counted > 0 ? *sum / static_cast<double>(*counted)
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
