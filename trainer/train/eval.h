// Evaluation: the mean token cross-entropy over every complete window of a
// token stream, in order.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "actors/runtime/model.h"

namespace dsinf::trainer {

struct EvalResult {
  double loss = 0;
  int64_t windows = 0;
  int64_t tokens = 0;
};

// Windows of T tokens in micro-batches of up to max_batch.
absl::StatusOr<EvalResult> evaluate(actors::LayerProgram& model, const std::vector<int32_t>& tokens,
                                    int T, int max_batch);

}  // namespace dsinf::trainer
