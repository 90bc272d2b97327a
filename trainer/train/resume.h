// Where a training run starts: the newest checkpoint in train.output_dir
// (model, optimizer, loss scale and data position, bit-identical to a run
// that never stopped), else model.init_from, else the seeded initialisation.
#pragma once

#include <iosfwd>

#include "absl/status/statusor.h"
#include "trainer/config/config.h"
#include "trainer/data/windows.h"
#include "trainer/train/checkpoint.h"
#include "trainer/train/session.h"

namespace dsinf::trainer {

// The state to continue from, with the sampler placed where it left off.
// `data_tokens` is the size of the training data (a warning when it changed).
absl::StatusOr<TrainState> resume_or_start(const Config& config, Session& session,
                                           WindowSampler& sampler, size_t data_tokens,
                                           std::ostream& log);

}  // namespace dsinf::trainer
