// The optimizer actor: Adam over every trainable chunk, in one loop whatever
// the placement -- the fused CPU Adam on host state, the backend's Adam on
// device state, or the CPU Adam on state it streams from NVMe through staging
// sets -- and the new weights to the working copy's home.
//
// It owns its pipeline: for state on NVMe it reads each chunk's m, v and
// master weights ahead into the staging sets (from `preload`, as the step's
// last micro-batch begins, since reading needs no gradient), runs Adam on a
// chunk as soon as its reads are in, and writes a set back only when that set
// is wanted for a later chunk or every chunk is updated. Every swap request is
// a message to the nvme_swap actor and every completion a reply: nothing
// waits. Each chunk's update is reported to the runtime's gates (the next
// step's per-chunk gate) and to the param_shard (its home is current).
//
// Detached: Adam itself is long compute, kept off the scheduler threads the
// event-based actors share. Commands run one at a time in the order sent; a
// command is over (ChunkGates::command_done) once its I/O has drained.
#pragma once

#include "actors/messages.h"
#include "actors/runtime/chunk_gates.h"
#include "actors/runtime/chunk_store.h"
#include "actors/runtime/spec.h"
#include "kernels/backend.h"

namespace dsinf::actors {

class ActorSystem;

struct OptimizerSetup {
  kernels::Backend* backend = nullptr;
  ChunkStore* store = nullptr;
  ChunkGates* gates = nullptr;
  nvme_swap_actor swap;     // null when nothing lives on NVMe
  param_shard_actor shard;  // null when the parameters stay on the device
  AdamSpec adam;
};

// The store, the gates and the backend outlive the actor.
optimizer_actor spawn_optimizer(ActorSystem& system, OptimizerSetup setup);

}  // namespace dsinf::actors
