// One optimizer step, as the trainer actor runs it for `dsinf train` and
// `dsinf bench step`: the gradients reset, forward and backward over the
// micro-batches (the last one starts the optimizer's read-ahead of its NVMe
// state), the global norm, and the update (which, with offloaded optimizer
// state, runs on in the optimizer actor while the next step begins).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "trainer/config.h"
#include "trainer/runtime.h"

namespace dsinf::trainer {

// Fills a micro-batch's B x T inputs and targets.
using NextBatch = std::function<void(int32_t* inputs, int32_t* targets)>;

struct StepOutcome {
  double loss = 0;        // mean over the micro-batches
  double norm = 0;        // the global gradient norm before clipping (loss scale divided out)
  double loss_scale = 1;  // fp16's scale the step ran with
  bool skipped = false;   // fp16 overflow: no update (overflow_message says why)
  std::string overflow_message;
  double forward_s = 0, backward_s = 0, update_s = 0;
};

// The gradients reset, then forward and backward over the step's
// micro-batches (the last one starts the optimizer's read-ahead): a step up to
// its norm. Fills loss, forward_s and backward_s.
absl::StatusOr<StepOutcome> forward_backward(Runtime& rt, const Config& config,
                                             const NextBatch& next_batch);

// forward_backward, the norm and the update. `index` is the 0-based step (for
// messages); `lr` its learning rate. With fp16 the loss is scaled by
// rt.loss_scaler and an overflow skips the update (the outcome says so);
// otherwise a non-finite norm is an error that names output_dir's last
// checkpoint.
absl::StatusOr<StepOutcome> train_step(Runtime& rt, const Config& config, int64_t index, double lr,
                                       const NextBatch& next_batch);

}  // namespace dsinf::trainer
