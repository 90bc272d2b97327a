// The optimizer actor: a detached CAF actor (its handlers wait on swap I/O, so
// it has a thread of its own) that runs the optimizer's work beside the
// trainer. Messages are handled one at a time in the order sent, so a preload
// sent while the previous step's run is still going starts when that ends.
//
// The work itself lives with the state it updates (trainer/offload.h); the
// actor owns the thread, the mailbox and the count of messages not yet done,
// which the trainer waits on before it reads or rewrites optimizer state.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "absl/status/statusor.h"

namespace dsinf::actors {

class ActorSystem;

class OptimizerWork {
 public:
  virtual ~OptimizerWork() = default;
  // Start reading optimizer state ahead of the step (no gradient needed yet).
  virtual void preload() = 0;
  // Adam over every chunk with these scalars; errors are the work's to keep.
  virtual void run(double lr, int64_t step, float grad_scale) = 0;
  // Drop what preload read; nothing is in flight when this returns.
  virtual void cancel() = 0;
};

class OptimizerActor {
 public:
  // Spawns the actor in `system` (null: a system of its own); `work` and the
  // system outlive it.
  static absl::StatusOr<std::unique_ptr<OptimizerActor>> create(OptimizerWork* work,
                                                                ActorSystem* system);
  ~OptimizerActor();  // every message sent is handled, then the actor stops
  OptimizerActor(const OptimizerActor&) = delete;
  OptimizerActor& operator=(const OptimizerActor&) = delete;

  void preload();
  void step(double lr, int64_t step, float grad_scale);
  void cancel();
  // Blocks until every message sent so far has been handled.
  void wait_idle();

  struct Impl;

 private:
  explicit OptimizerActor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsinf::actors
