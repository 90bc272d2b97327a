// When and how a training run saves: every train.save_interval steps, at the
// end and when interrupted. With the optimizer state off the device a save
// runs in the background beside the next steps (a snapshot the optimizer
// respects chunk by chunk); the last one, and every save of a run whose state
// stays on the device, is written at once. One save at a time.
//
// Several ranks: each writes its part in the background, and the manifest is
// committed (a collective) after the first step at which every rank's part
// has ended. The ranks agree on that step by a collective each step while a
// save is in flight; they started it at the same step, so they run it at the
// same steps.
#pragma once

#include <iosfwd>
#include <vector>

#include "absl/status/status.h"
#include "memory/chunk_layout.h"
#include "trainer/config/config.h"
#include "trainer/train/checkpoint.h"

namespace dsinf::trainer {

// Several ranks: who they are and what each owns (save_partitioned).
struct SaveRanks {
  kernels::comm::Communicator* comm = nullptr;  // null: one rank
  std::vector<int> owners;
  std::vector<memory::ChunkLayout> model_layouts;
};

class Saver {
 public:
  // `pace_ms`: a test hook slowing background saves down (RunEnvironment).
  Saver(const Config& config, const std::vector<memory::ChunkLayout>& layouts,
        CheckpointState& chunks, int pace_ms, std::ostream& log, SaveRanks ranks = {});
  // After step `state.step`: saves when it is due; a background save that has
  // ended is reported.
  absl::Status after_step(const TrainState& state, bool last, bool interrupted);
  // Waits for the save in progress, if any.
  absl::Status finish();

 private:
  bool several_ranks() const { return ranks_.comm != nullptr && ranks_.comm->size() > 1; }
  // Whether the save in flight has ended (on every rank).
  absl::StatusOr<bool> background_ended();

  const Config& config_;
  const std::vector<memory::ChunkLayout>& layouts_;
  CheckpointState& chunks_;
  int pace_ms_;
  std::ostream& log_;
  SaveRanks ranks_;
  BackgroundSave background_;
  int64_t background_step_ = 0;  // the step of the save in flight
};

}  // namespace dsinf::trainer
