// ZeRO's partition of a model over data-parallel ranks: each rank owns a
// contiguous range of the trainable chunks, balanced by bytes. At stage 1 and
// above a rank keeps the optimizer state (master weights, m, v) and the
// gradient accumulator of the chunks it owns only; the other trainable chunks
// it holds as it holds a frozen chunk -- working parameters, no state -- and
// it receives their new weights from their owner after each update. At
// stage 3 (parameters on the device) it holds no copy at all: the owner sends
// a chunk's parameters each time the model uses it. At
// stage 0 every rank keeps everything and the owner only leads the
// reduction. One implementation, used by the runtime, the plan and checkpoints.
#pragma once

#include <cstddef>
#include <vector>

#include "memory/chunk_layout.h"

namespace dsinf::actors {

// Stage 3 with the parameters partitioned: the device buffers a rank receives
// other ranks' chunks into (the model holds at most this many at once: a
// layer, the embedding beside the head, and one more).
inline constexpr size_t kRemoteSlots = 3;

// The owner of each chunk among `world` ranks (-1 for a frozen chunk). The
// same on every rank: a function of the layouts and the world size alone.
std::vector<int> chunk_owners(const std::vector<memory::ChunkLayout>& layouts, int world);

// The layouts as rank `rank` holds them: at stage >= 1 with several ranks, a
// trainable chunk another rank owns is held frozen; with `partition_params`
// (stage 3) it is not held at all (remote).
std::vector<memory::ChunkLayout> rank_layouts(std::vector<memory::ChunkLayout> layouts, int rank,
                                              int world, int stage, bool partition_params);

}  // namespace dsinf::actors
