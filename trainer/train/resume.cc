#include "trainer/train/resume.h"

#include <optional>
#include <ostream>

#include "absl/strings/str_cat.h"

namespace dsinf::trainer {
namespace {

absl::StatusOr<TrainState> restore(const Config& config, Session& session, const std::string& path,
                                   size_t data_tokens, std::ostream& log) {
  actors::Runtime& rt = *session.runtime;
  absl::StatusOr<TrainState> state = load_session_checkpoint(config, session, path);
  if (!state.ok()) return state.status();
  // The scale continues where the saved run left it (a run saved without
  // fp16, or before dsinf kept it, starts the configured scale afresh).
  if (rt.loss_scaler().enabled() && state->loss_scaler.has_value()) {
    rt.loss_scaler().restore(*state->loss_scaler);
  }
  // A save interrupted by a crash left its temporary; it can never complete.
  for (const std::string& name : remove_stale_temporaries(config.train.output_dir)) {
    log << "removed " << name << ", the unfinished save of a process that is gone\n";
  }
  if (state->data_tokens != data_tokens) {
    log << "warning: data.path now holds " << data_tokens << " tokens, the checkpoint was "
        << "trained on " << state->data_tokens << "; the data order after resume differs\n";
  }
  return state;
}

}  // namespace

absl::StatusOr<TrainState> resume_or_start(const Config& config, Session& session,
                                           WindowSampler& sampler, size_t data_tokens,
                                           std::ostream& log) {
  absl::StatusOr<std::optional<std::string>> latest =
      find_latest_checkpoint(config.train.output_dir);
  if (!latest.ok()) return latest.status();
  if (!latest->has_value()) {
    if (absl::Status s = load_start_weights(config, session); !s.ok()) return s;
    TrainState fresh;
    fresh.base_fingerprint = session.base_fingerprint;
    return fresh;
  }
  absl::StatusOr<TrainState> state = restore(config, session, **latest, data_tokens, log);
  if (!state.ok()) return state.status();
  if (absl::Status s = sampler.restore(state->sampler); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(**latest, ": ", s.message()));
  }
  return state;
}

}  // namespace dsinf::trainer
