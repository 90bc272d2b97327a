// The trainer actor: runs each training step -- the gradients reset, forward
// and backward over the step's micro-batches (the last one starts the
// optimizer's read-ahead of its NVMe state), the global norm, fp16's overflow
// check and loss scale, the clip coefficient, and the hand-off of the update
// to the optimizer actor -- and replies with what the step did. Detached: it
// is the model thread, which blocks in its per-chunk gates and fetches.
#pragma once

#include "actors/messages.h"

namespace dsinf::actors {

class ActorSystem;
class Runtime;

// `runtime` outlives the actor.
trainer_actor spawn_trainer(ActorSystem& system, Runtime* runtime);

}  // namespace dsinf::actors
