// What a training run tells its user: the opening lines (device, model,
// placement, data), a progress line every steps_per_print steps, fp16
// overflows, evaluations and the final summary -- as text, and under --json
// as JSON Lines on stdout -- and the same series to the monitors.
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "actors/messages.h"
#include "trainer/config/config.h"
#include "trainer/train/checkpoint.h"
#include "trainer/train/eval.h"
#include "trainer/train/monitor.h"
#include "trainer/train/session.h"

namespace dsinf::trainer {

class Progress {
 public:
  // `host_bytes`: the job's own host memory (token data and batches).
  Progress(const Config& config, bool json, Session& session, size_t host_bytes);

  std::ostream& log() const;
  void opening(size_t tokens, int64_t windows) const;
  // The monitors of the config, created (the run writes from here on).
  absl::Status open_monitors();
  // The run starts at `state` (a resumed run continues its counts).
  void start(const TrainState& state);
  // Step `state.step` is done with `outcome` at learning rate `lr`.
  absl::Status step(const TrainState& state, const actors::StepOutcome& outcome, double lr);
  absl::Status eval(const TrainState& state, const EvalResult& eval);
  // The run ends at `state`; with `ran` false nothing was left to train.
  absl::Status finish(const TrainState& state, bool interrupted);
  void nothing_to_train(const TrainState& state) const;

 private:
  void print_step(const TrainState& state, const actors::StepOutcome& outcome, double lr);
  nlohmann::json peak_bytes() const;
  absl::StatusOr<nlohmann::json> per_rank() const;
  nlohmann::json streaming(double elapsed) const;

  using Clock = std::chrono::steady_clock;
  const Config& config_;
  bool json_;
  Session& session_;
  size_t host_bytes_;
  std::vector<std::unique_ptr<Monitor>> monitors_;
  int64_t first_step_ = 0;
  nvme::EngineStats swap_at_start_;  // the swap's counters once the weights were in
  Clock::time_point run_start_, window_start_;
  int64_t window_tokens_ = 0;
  double time_fwd_ = 0, time_bwd_ = 0, time_step_ = 0;
};

}  // namespace dsinf::trainer
