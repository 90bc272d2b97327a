// fp16 loss scaling with DeepSpeed's semantics (runtime/fp16/loss_scaler.py):
// the loss gradient is multiplied by the scale before backward so small fp16
// gradients survive, and the update divides it out again. A step whose
// gradients hold an inf or NaN (an overflow) is skipped: no update, no
// learning-rate step, and
//   - dynamic scaling (fp16.loss_scale 0): after `hysteresis` overflows the
//     scale is halved (never below min_loss_scale; an overflow at the minimum
//     ends the run, as DeepSpeed raises), and after `loss_scale_window` steps
//     without an overflow it is doubled; consecutive_hysteresis restores the
//     hysteresis after every clean step instead of only when the scale grows;
//   - a static scale (fp16.loss_scale > 0) never changes.
// Without fp16 the scale is 1 and nothing is ever skipped: a non-finite
// gradient is divergence, reported as an error by the caller.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace dsinf::actors {

// DeepSpeed's fp16 block, as the scaler needs it.
struct LossScaleSpec {
  bool enabled = false;     // fp16.enabled
  double loss_scale = 0.0;  // 0: dynamic
  int initial_scale_power = 16;
  int64_t loss_scale_window = 1000;
  int hysteresis = 2;
  bool consecutive_hysteresis = false;
  double min_loss_scale = 1.0;
};

// What a checkpoint keeps of the scaler, so a resumed run continues its scale.
struct LossScalerState {
  double scale = 1;
  int64_t iter = 0;  // steps seen (applied and skipped)
  int64_t last_overflow_iter = -1;
  int64_t hysteresis = 1;  // overflows left before the next halving
};

class LossScaler {
 public:
  LossScaler() = default;  // fp16 off
  explicit LossScaler(const LossScaleSpec& spec);

  bool enabled() const { return enabled_; }  // fp16
  bool dynamic() const { return dynamic_; }
  double scale() const { return state_.scale; }
  const LossScalerState& state() const { return state_; }
  void restore(const LossScalerState& state) { state_ = state; }

  struct Outcome {
    bool skip = false;     // the step's update must not be applied
    double attempted = 1;  // the scale the step ran with
    double next = 1;       // the scale of the next step
    std::string message;   // the log line for an overflow, else empty
  };
  // Records the step's gradient check (overflow: an inf or NaN). With fp16 off
  // an overflow is not handled here (skip stays false). kFailedPrecondition
  // when a dynamic scale is already at fp16.min_loss_scale and overflows again.
  absl::StatusOr<Outcome> update(bool overflow);

 private:
  bool enabled_ = false;
  bool dynamic_ = false;
  double min_scale_ = 1;
  int64_t window_ = 1000;
  int64_t delayed_shift_ = 1;
  bool consecutive_hysteresis_ = false;
  LossScalerState state_;
};

}  // namespace dsinf::actors
