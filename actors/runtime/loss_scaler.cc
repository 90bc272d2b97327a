#include "actors/runtime/loss_scaler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace dsinf::actors {

LossScaler::LossScaler(const LossScaleSpec& spec)
    : enabled_(spec.enabled),
      dynamic_(spec.enabled && spec.loss_scale == 0),
      min_scale_(spec.min_loss_scale),
      window_(spec.loss_scale_window),
      delayed_shift_(spec.hysteresis),
      consecutive_hysteresis_(spec.consecutive_hysteresis) {
  state_.hysteresis = delayed_shift_;
  if (!enabled_) {
    state_.scale = 1;
  } else if (dynamic_) {
    state_.scale = std::ldexp(1.0, spec.initial_scale_power);
  } else {
    state_.scale = spec.loss_scale;
  }
}

absl::StatusOr<LossScaler::Outcome> LossScaler::update(bool overflow) {
  Outcome out;
  out.attempted = out.next = state_.scale;
  if (!enabled_) return out;
  out.skip = overflow;
  if (!dynamic_) {
    if (overflow) {
      out.message = absl::StrFormat(
          "OVERFLOW! Skipping step. Loss scale: %.0f (static: fp16.loss_scale)", state_.scale);
    }
    ++state_.iter;
    return out;
  }
  if (overflow) {
    if (delayed_shift_ == 1 || state_.hysteresis == 1) {
      if (state_.scale == min_scale_) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "the fp16 gradients overflowed at the minimum loss scale %g (fp16.min_loss_scale): "
            "cannot lower the scale any more (lower optimizer.params.lr, or use bf16)",
            min_scale_));
      }
      out.next = std::max(state_.scale / 2, min_scale_);
      out.message =
          absl::StrFormat("OVERFLOW! Skipping step. Attempted loss scale: %.0f, reducing to %.0f",
                          state_.scale, out.next);
      state_.scale = out.next;
    } else {
      out.message = absl::StrFormat(
          "OVERFLOW! Skipping step. Attempted loss scale: %.0f, but hysteresis is %d. Reducing "
          "hysteresis to %d",
          state_.scale, state_.hysteresis, state_.hysteresis - 1);
      --state_.hysteresis;
    }
    state_.last_overflow_iter = state_.iter;
  } else {
    if (consecutive_hysteresis_) state_.hysteresis = delayed_shift_;
    if ((state_.iter - state_.last_overflow_iter) % window_ == 0) {
      if (!consecutive_hysteresis_) state_.hysteresis = delayed_shift_;
      state_.scale *= 2;
      out.next = state_.scale;
    }
  }
  ++state_.iter;
  return out;
}

}  // namespace dsinf::actors
