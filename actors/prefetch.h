// The prefetch actor: learns the order in which the model touches chunks in
// the first step and then keeps the next ones moving ahead of the model,
// asking the param_shard for at most `ahead` accesses (the shared slots but
// one) and, past the first, only while the chunks asked ahead hold no more
// than `bucket` elements (stage3_prefetch_bucket_size). When the model leaves
// the learned order it says so and learns it again; it never prefetches a
// stale order. Event-based.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "actors/messages.h"

namespace dsinf::actors {

class ActorSystem;

// The prefetcher's depth, written by the actor and read by the streamer's
// stats(): a probe beside the typed protocol.
struct PrefetchProbe {
  std::atomic<uint64_t> max_chunks{0}, max_elements{0};
};

// `elements` and `own` are per chunk: its elements, and whether it has a slot
// of its own (such chunks are asked for but count in neither bound).
prefetch_actor spawn_prefetch(ActorSystem& system, param_shard_actor shard, size_t ahead,
                              uint64_t bucket, std::vector<uint64_t> elements,
                              std::vector<bool> own, std::shared_ptr<PrefetchProbe> probe);

}  // namespace dsinf::actors
