#include "trainer/train/save.h"

#include <algorithm>
#include <cstdint>
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

absl::StatusOr<bool> Saver::background_ended() {
  if (!background_.busy()) return false;
  if (!several_ranks()) return background_.ended();
  const int32_t mine = background_.ended() ? 1 : 0;
  std::vector<int32_t> all(static_cast<size_t>(ranks_.comm->size()));
  if (absl::Status s =
          kernels::comm::wait(ranks_.comm->all_gather_bytes(&mine, sizeof(mine), all.data()));
      !s.ok()) {
    return s;
  }
  return std::all_of(all.begin(), all.end(), [](int32_t ended) { return ended == 1; });
}

absl::Status Saver::finish() {
  if (!background_.busy()) return absl::OkStatus();
  absl::StatusOr<std::string> saved = background_.finish();
  if (several_ranks()) {
    saved = commit_partitioned(config_.train.output_dir, background_step_, saved, *ranks_.comm);
  }
  if (!saved.ok()) return saved.status();
  log_ << "saved checkpoint " << *saved << "\n";
  return absl::OkStatus();
}

absl::Status Saver::after_step(const TrainState& state, bool last, bool interrupted) {
  const int64_t interval = config_.train.save_interval;
  const bool due = interval > 0 && state.step % interval == 0;
  absl::StatusOr<bool> ended = background_ended();
  if (!ended.ok()) return ended.status();
  if (*ended) {
    if (absl::Status s = finish(); !s.ok()) return s;
  }
  if (!due && !last && !interrupted) return absl::OkStatus();
  // One save at a time: the previous one ends before the next snapshot.
  if (absl::Status s = finish(); !s.ok()) return s;
  if (chunks_.saves_in_background() && !last && !interrupted) {
    if (several_ranks()) {
      const PartOf part{ranks_.owners, ranks_.comm->rank(), ranks_.comm->size()};
      background_.start(config_.train.output_dir, config_.model, ranks_.model_layouts, chunks_,
                        state, pace_ms_, &part);
    } else {
      background_.start(config_.train.output_dir, config_.model, layouts_, chunks_, state,
                        pace_ms_);
    }
    background_step_ = state.step;
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> saved =
      several_ranks()
          ? save_partitioned(config_.train.output_dir, config_.model, ranks_.model_layouts,
                             ranks_.owners, *ranks_.comm, chunks_, state)
          : save_checkpoint(config_.train.output_dir, config_.model, layouts_, chunks_, state);
  if (!saved.ok()) return saved.status();
  log_ << "saved checkpoint " << *saved << "\n";
  return absl::OkStatus();
}

}  // namespace dsinf::trainer
