// The model thread's side of parameter streaming: acquire() asks the
// param_shard actor for a chunk and blocks (the model thread's per-chunk
// gate) only when it is not on the device yet; every access goes on to the
// prefetch actor, which keeps the next chunks loading. The streamer spawns
// the param_shard, prefetch and uploader actors and stops them when it goes;
// swap reads go through the runtime's nvme_swap actor (or one of its own).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "actors/messages.h"
#include "actors/param_shard.h"
#include "kernels/backend.h"

namespace dsinf::actors {

class ActorSystem;

struct StreamerSetup {
  ActorSystem* system = nullptr;  // where the actors live (null: a system of their own)
  kernels::Backend* backend = nullptr;
  nvme_swap_actor swap;  // null: the streamer spawns its own
  std::vector<ChunkHome> chunks;
  std::vector<float*> slots;        // shared device slots, each at least the largest
                                    // chunk without a slot of its own (none: every chunk has one)
  std::vector<std::byte*> staging;  // one host staging buffer per slot (NVMe reads)
  // The type the homes hold working parameters in; with bf16/fp16, each slot
  // (and each own slot, ChunkHome::own_area) has a device area uploads land in
  // before they are widened into it.
  kernels::DType working_dtype = kernels::DType::kF32;
  std::vector<void*> areas;  // per shared slot (empty with fp32)
  // zero_optimization.stage3_prefetch_bucket_size: the prefetcher asks ahead for
  // chunks only while the elements of those asked ahead and not yet used stay
  // within this many, but always for the next one; and for no more chunks than
  // the shared slots but one. Chunks with a slot of their own count in neither.
  uint64_t prefetch_bucket_elements = UINT64_MAX;
};

struct StreamerStats {
  uint64_t fetches = 0;       // chunks the model asked for
  uint64_t waits = 0;         // of those, not yet on the device when asked
  uint64_t loads = 0;         // chunks brought to a slot (demand or prefetch)
  uint64_t prefetches = 0;    // prefetch requests sent ahead of the model
  uint64_t order_length = 0;  // accesses per step in the learned order
  uint64_t relearned = 0;     // times the order changed and was relearned
  uint64_t acquire_ns = 0;    // the model's thread inside acquire(), waiting for loads included
  uint64_t hits = 0;          // acquires of chunks already on the device
  uint64_t taken = 0;         // of those, taken from the ready board: no round trip
  uint64_t hit_ns = 0;        // in the other hits: each round trip is pure messaging (the
                              // actors' cost per request)
  // The most chunks, and elements, the prefetcher had asked ahead of the model at
  // once (distinct chunks after the one in use; chunks with own slots not counted).
  uint64_t max_ahead_chunks = 0;
  uint64_t max_ahead_elements = 0;
};

class ParamStreamer {
 public:
  static absl::StatusOr<std::unique_ptr<ParamStreamer>> create(StreamerSetup setup);
  ~ParamStreamer();  // stops the actors; in-flight reads complete first
  ParamStreamer(const ParamStreamer&) = delete;
  ParamStreamer& operator=(const ParamStreamer&) = delete;

  // The device address of chunk c's parameters, valid until release(c).
  absl::StatusOr<const float*> acquire(size_t c);
  // Another rank's chunk c (ChunkHome::remote): a shared slot for the caller
  // to fill, held until release(c). The prefetcher is not told of it.
  absl::StatusOr<float*> acquire_remote(size_t c);
  void release(size_t c);
  // A training step begins (the prefetcher's order is per step).
  void begin_step();
  // Before the homes change: waits until no load is in flight, forgets every
  // chunk on the device, and loads nothing until an `updated` message says
  // chunk c's home is current again (a fetch of such a chunk waits for that by
  // itself). With mark_stale false the chunks stay loadable (homes rewritten
  // between steps, e.g. by a checkpoint load, each followed by updated()).
  void invalidate(bool mark_stale = true);
  // Chunk c's home is current; with `cached`, its host cache holds it too.
  void updated(size_t c, bool cached);
  // The shard, for actors that tell it of updates themselves (the optimizer).
  const param_shard_actor& shard() const;
  StreamerStats stats();

  struct Impl;

 private:
  explicit ParamStreamer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsinf::actors
