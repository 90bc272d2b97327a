#include "actors/prefetch.h"

#include <algorithm>
#include <iostream>

#include "actors/system.h"

namespace dsinf::actors {
namespace {

constexpr size_t kMaxOrderLength = size_t{1} << 16;

struct PrefetchState {
  PrefetchState() = default;
  param_shard_actor shard;
  size_t ahead = 0;                // at most this many accesses asked ahead (shared slots but one)
  uint64_t bucket = UINT64_MAX;    // ... and, past the first, this many elements
  std::vector<uint64_t> elements;  // per chunk
  std::vector<bool> own;           // per chunk: has a slot of its own
  std::shared_ptr<PrefetchProbe> probe;
  std::vector<chunk_index> order;  // the learned order of one step
  std::vector<chunk_index> seen;   // this step's accesses so far
  bool learning = true;
  size_t position = 0;
  uint64_t prefetches = 0, relearned = 0;
};

using PrefetchPointer = prefetch_actor::stateful_pointer<PrefetchState>;

// Asks the shard for the chunks after the model's position in the learned
// order (the shard ignores those already on the device or loading): at most
// `ahead` accesses, and past the first chunk only while the distinct chunks
// asked ahead hold no more than `bucket` elements. Chunks with a slot of their
// own are asked for too but take no shared slot, so they count in neither.
void ask_ahead(PrefetchPointer self) {
  PrefetchState& st = self->state;
  size_t counted = 0;
  uint64_t elements = 0;
  std::vector<chunk_index> window;  // distinct chunks counted
  for (size_t k = st.position; k < st.order.size() && counted < st.ahead; ++k) {
    const chunk_index c = st.order[k];
    if (!st.own[c]) {
      if (std::find(window.begin(), window.end(), c) == window.end()) {
        if (!window.empty() &&
            (st.elements[c] > st.bucket || elements > st.bucket - st.elements[c])) {
          break;
        }
        elements += st.elements[c];
        window.push_back(c);
      }
      ++counted;
    }
    self->send(st.shard, prefetch_atom::value, c);
    ++st.prefetches;
  }
  PrefetchProbe& probe = *st.probe;
  if (window.size() > probe.max_chunks.load(std::memory_order_relaxed)) {
    probe.max_chunks.store(window.size(), std::memory_order_relaxed);
  }
  if (elements > probe.max_elements.load(std::memory_order_relaxed)) {
    probe.max_elements.store(elements, std::memory_order_relaxed);
  }
}

prefetch_actor::behavior_type prefetcher(PrefetchPointer self, param_shard_actor shard,
                                         size_t ahead, uint64_t bucket,
                                         std::vector<uint64_t> elements, std::vector<bool> own,
                                         std::shared_ptr<PrefetchProbe> probe) {
  self->state.shard = std::move(shard);
  self->state.ahead = ahead;
  self->state.bucket = bucket;
  self->state.elements = std::move(elements);
  self->state.own = std::move(own);
  self->state.probe = std::move(probe);
  return {[=](access_atom, chunk_index c) {
            PrefetchState& st = self->state;
            // Bounded: a "step" longer than this (evaluation never begins one) is not learned.
            if (st.seen.size() < kMaxOrderLength) st.seen.push_back(c);
            if (st.learning || st.ahead == 0) return;
            if (st.position >= st.order.size() || st.order[st.position] != c) {
              // The model no longer follows the learned order: say so, learn it again
              // from this step, and prefetch nothing stale meanwhile.
              std::cerr << "dsinf: prefetch: the model's chunk order changed at access "
                        << st.position << "; relearning it this step\n";
              ++st.relearned;
              st.learning = true;
              return;
            }
            ++st.position;
            ask_ahead(self);
          },
          [=](step_atom) {
            PrefetchState& st = self->state;
            if (st.learning && !st.seen.empty()) {
              st.order = st.seen;
              st.learning = false;
            }
            st.seen.clear();
            st.position = 0;
            // The first chunks of the step, before the model asks for them.
            if (!st.learning && st.ahead > 0) ask_ahead(self);
          },
          [=](stats_atom) -> caf::result<uint64_t, uint64_t, uint64_t> {
            PrefetchState& st = self->state;
            return {st.prefetches, static_cast<uint64_t>(st.order.size()), st.relearned};
          }};
}

}  // namespace

prefetch_actor spawn_prefetch(ActorSystem& system, param_shard_actor shard, size_t ahead,
                              uint64_t bucket, std::vector<uint64_t> elements,
                              std::vector<bool> own, std::shared_ptr<PrefetchProbe> probe) {
  return system.get().spawn(prefetcher, std::move(shard), ahead, bucket, std::move(elements),
                            std::move(own), std::move(probe));
}

}  // namespace dsinf::actors
