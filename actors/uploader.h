// The uploader actor: copies a chunk from host memory into its device slot (a
// DMA on a GPU backend, a memcpy on the CPU one) for the param_shard, which
// stays free to answer fetches meanwhile. Detached: a copy blocks its thread
// for the chunk's bytes (and its widening into fp32, when stored in 16 bits).
#pragma once

#include "actors/messages.h"
#include "kernels/backend.h"

namespace dsinf::actors {

class ActorSystem;

// `working`: the type working parameters are stored in off the device; other
// than fp32 they are widened into the slot after the copy.
uploader_actor spawn_uploader(ActorSystem& system, kernels::Backend* backend,
                              kernels::DType working);

// The actor's work on one job: the copy, the widening of 16-bit working
// weights, then a wait (the slot is complete when it returns). `dsinf bench
// step` times it alone.
absl::Status upload_chunk(kernels::Backend* backend, kernels::DType working, const UploadJob& job);

}  // namespace dsinf::actors
