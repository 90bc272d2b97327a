// Streams parameter chunks to the device ahead of the model, with three
// actors (messages.h): nvme_swap owns the swap I/O and turns completions into
// replies; param_shard owns the device slots and each chunk's residency and
// serves fetch/release; prefetch learns the order in which the model touches
// chunks in the first step and then keeps the next ones moving within the slot
// budget and the prefetch bucket, relearning (and saying so) when the order
// changes. A chunk with a slot of its own stays on the device once loaded.
//
// The model's thread calls acquire()/release() and blocks in acquire() only
// when the chunk is not on the device yet; no actor blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "nvme/swap_store.h"

namespace dsinf::actors {

// Where one chunk's parameters live between uses: a host block, or a swap chunk.
struct ChunkHome {
  const std::byte* host = nullptr;  // when not null
  nvme::SwapStore* swap = nullptr;  // else: chunk `swap_id` of this store
  uint32_t swap_id = 0;
  // With a swap home: a host copy kept between uses (offload_param.max_in_cpu),
  // filled by the first read or by the optimizer; null when not cached.
  std::byte* cache = nullptr;
  size_t bytes = 0;  // page-padded chunk size
  // The chunk's elements (its tensors and the padding between them): what the
  // prefetch bucket counts.
  uint64_t elements = 0;
  // A device slot of its own (zero_optimization.stage3_param_persistence_threshold),
  // at least `bytes`: once loaded the chunk stays there, never evicted; when its
  // home changes (invalidate) it is uploaded again as soon as updated() says the
  // home is current. Null: the chunk is streamed through the shared slots.
  float* own_slot = nullptr;
  // Its NVMe read buffer (`bytes`) when the home is a swap chunk without a cache.
  std::byte* own_staging = nullptr;
};

class ActorSystem;

struct StreamerSetup {
  ActorSystem* system = nullptr;  // where the actors live (null: a system of their own)
  kernels::Backend* backend = nullptr;
  std::vector<ChunkHome> chunks;
  std::vector<float*> slots;        // shared device slots, each at least the largest
                                    // chunk without a slot of its own (none: every chunk has one)
  std::vector<std::byte*> staging;  // one host staging buffer per slot (NVMe reads)
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
  uint64_t hit_ns = 0;        // of that, in acquires of chunks already on the device: the
  uint64_t hits = 0;          // round trip is pure messaging (the actors' cost per request)
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
  void release(size_t c);
  // A training step begins (the prefetcher's order is per step).
  void begin_step();
  // Before the homes change: waits until no load is in flight, forgets every
  // chunk on the device, and loads nothing until updated(c) says chunk c's home
  // is current again (a fetch of such a chunk must wait for that by itself).
  // With mark_stale false the chunks stay loadable (homes rewritten between
  // steps, e.g. by a checkpoint load, each followed by updated()).
  void invalidate(bool mark_stale = true);
  // Chunk c's home is current; with `cached`, its host cache holds it too.
  void updated(size_t c, bool cached);
  StreamerStats stats();

  struct Impl;

 private:
  explicit ParamStreamer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsinf::actors
