// The uploader actor: copies a chunk from host memory into its device slot (a
// DMA on a GPU backend, a memcpy on the CPU one) for the param_shard, which
// stays free to answer fetches meanwhile. Detached: a copy blocks its thread
// for the chunk's bytes.
#pragma once

#include "actors/messages.h"
#include "kernels/backend.h"

namespace dsinf::actors {

class ActorSystem;

uploader_actor spawn_uploader(ActorSystem& system, kernels::Backend* backend);

}  // namespace dsinf::actors
