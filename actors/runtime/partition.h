// ZeRO's partition of a model over data-parallel ranks: each rank owns a
// contiguous range of the trainable chunks, balanced by bytes. At stage 1 and
// above a rank keeps the optimizer state (master weights, m, v) and the
// gradient accumulator of the chunks it owns only; the other trainable chunks
// it holds as it holds a frozen chunk -- working parameters, no state -- and
// it receives their new weights from their owner after each update. At
// stage 3 it holds no copy at all (on the device, host or NVMe), nor of the
// frozen chunks (LoRA's base) other ranks hold: the holder sends a chunk's
// parameters each time the model uses it. At
// stage 0 every rank keeps everything and the owner only leads the
// reduction. One implementation, used by the runtime, the plan and checkpoints.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "memory/chunk_layout.h"

namespace dsinf::actors {

// Stage 3: the device buffers a rank receives other ranks' chunks into, each
// the size of the largest of them. With the parameters on the device the
// model may hold this many at once (a layer, the embedding beside the head,
// and one more).
inline constexpr size_t kRemoteSlots = 3;

struct RemoteSlots {
  size_t count = 0;  // 0: the rank holds every chunk
  size_t bytes = 0;  // each
};

// The remote slots of a rank holding `layouts`. With `streamed` parameters
// another rank's chunk borrows one of the streamer's shared slots while the
// model uses it (the plan sizes them for it), except a chunk with a slot of
// its own (LoRA's adapter, used beside its layer's chunk): one remote slot,
// the size of the largest such chunk, when there is one.
RemoteSlots remote_slots(const std::vector<memory::ChunkLayout>& layouts, bool streamed);

// How a rank's gradient visits reach their owners (zero_optimization's
// overlap_comm and reduce_bucket_size): without overlap the model thread sends
// each visit, or receives and adds the others', before it goes on; with it
// the visits go while the backward computes the next layers, up to the
// bucket's elements in flight, and the owner adds them in rank order as they
// complete (runtime_ranks.cc).
struct ExchangeSpec {
  bool overlap = false;
  int64_t bucket_elements = 500000000;
};

// The host staging of a rank's exchanges, from the host pool: buffers of the
// largest chunk (fp32), for what it sends and receives, the earlier visits of
// a chunk visited several times a micro-batch (a tied embedding), and with
// overlap_comm the visits in flight -- as many as the bucket holds, at least
// one owner's (a buffer per rank), at most every chunk's.
// With the gradient accumulators on the device, one device area of the
// largest chunk too, which a received part is uploaded into and added from.
struct ExchangeStaging {
  size_t buffer_bytes = 0;
  size_t fixed = 0;      // send, receive and held visits
  size_t in_flight = 0;  // overlap_comm
  size_t device_bytes = 0;
  size_t bytes() const { return buffer_bytes * (fixed + in_flight); }
};
// `all`: the model's layouts; `visits`: each chunk's gradient visits a
// micro-batch (ModelDef::grad_visits). Nothing with one rank or no training.
ExchangeStaging exchange_staging(const std::vector<memory::ChunkLayout>& all,
                                 const std::vector<int>& visits, int world, bool training,
                                 bool grads_on_device, const ExchangeSpec& spec);

// The owner of each chunk among `world` ranks (-1 for a frozen chunk). The
// same on every rank: a function of the layouts and the world size alone.
std::vector<int> chunk_owners(const std::vector<memory::ChunkLayout>& layouts, int world);
// Stage 3: the rank that holds each chunk's parameters -- its owner, and for a
// frozen chunk (LoRA's base) a rank chosen the same way among the frozen
// chunks alone, so each rank holds 1/N of the base too.
std::vector<int> param_holders(const std::vector<memory::ChunkLayout>& layouts, int world);

// The layouts as rank `rank` holds them: at stage >= 1 with several ranks, a
// trainable chunk another rank owns is held frozen; with `partition_params`
// (stage 3) a chunk another rank holds (param_holders) is not held at all
// (remote), frozen chunks included.
std::vector<memory::ChunkLayout> rank_layouts(std::vector<memory::ChunkLayout> layouts, int rank,
                                              int world, int stage, bool partition_params);

}  // namespace dsinf::actors
