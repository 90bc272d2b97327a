// The trainer actor: a detached CAF actor (it blocks in the model's fetches
// and in the optimizer's gates, so it has a thread of its own) that drives
// forward, backward and step. Each (step, index) message runs one training
// step; the session sends them one at a time and logs, evaluates and saves in
// between.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/statusor.h"

namespace dsinf::actors {

class ActorSystem;

class TrainerActor {
 public:
  using StepFn = std::function<absl::Status(int64_t index)>;
  // Spawns the actor in `system`, which outlives it; `step` runs on its thread.
  static std::unique_ptr<TrainerActor> create(ActorSystem& system, StepFn step);
  ~TrainerActor();
  TrainerActor(const TrainerActor&) = delete;
  TrainerActor& operator=(const TrainerActor&) = delete;

  // Runs step `index` on the trainer and waits for its outcome.
  absl::Status step(int64_t index);

  struct Impl;

 private:
  explicit TrainerActor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsinf::actors
