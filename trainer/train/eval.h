// Evaluation: the mean token cross-entropy over every window of the data, in
// order -- over the positions that carry a loss (masked ones, such as SFT
// prompts and padding, count in no mean).
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "actors/runtime/model.h"
#include "trainer/data/windows.h"

namespace dsinf::trainer {

struct EvalResult {
  double loss = 0;
  int64_t windows = 0;
  int64_t tokens = 0;  // positions with a loss
};

// In micro-batches of up to max_batch windows.
absl::StatusOr<EvalResult> evaluate(actors::LayerProgram& model, const Windows& windows,
                                    int max_batch);

}  // namespace dsinf::trainer
