#include "trainer/train/save.h"

#include <ostream>
#include <utility>

namespace dsinf::trainer {

Saver::Saver(const Config& config, const std::vector<memory::ChunkLayout>& layouts,
             CheckpointState& chunks, int pace_ms, std::ostream& log, SaveRanks ranks)
    : config_(config),
      layouts_(layouts),
      chunks_(chunks),
      pace_ms_(pace_ms),
      log_(log),
      ranks_(std::move(ranks)) {}

absl::Status Saver::finish() {
  if (!background_.busy()) return absl::OkStatus();
  absl::StatusOr<std::string> saved = background_.finish();
  if (!saved.ok()) return saved.status();
  log_ << "saved checkpoint " << *saved << "\n";
  return absl::OkStatus();
}

absl::Status Saver::after_step(const TrainState& state, bool last, bool interrupted) {
  const int64_t interval = config_.train.save_interval;
  const bool due = interval > 0 && state.step % interval == 0;
  if (background_.ended()) {
    if (absl::Status s = finish(); !s.ok()) return s;
  }
  if (!due && !last && !interrupted) return absl::OkStatus();
  // One save at a time: the previous one ends before the next snapshot.
  if (absl::Status s = finish(); !s.ok()) return s;
  if (chunks_.saves_in_background() && !last && !interrupted) {
    background_.start(config_.train.output_dir, config_.model, layouts_, chunks_, state, pace_ms_);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> saved =
      ranks_.comm != nullptr && ranks_.comm->size() > 1
          ? save_partitioned(config_.train.output_dir, config_.model, ranks_.model_layouts,
                             ranks_.owners, *ranks_.comm, chunks_, state)
          : save_checkpoint(config_.train.output_dir, config_.model, layouts_, chunks_, state);
  if (!saved.ok()) return saved.status();
  log_ << "saved checkpoint " << *saved << "\n";
  return absl::OkStatus();
}

}  // namespace dsinf::trainer
