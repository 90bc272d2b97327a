#include "actors/runtime/partition.h"

#include <algorithm>
#include <cstdint>

namespace dsinf::actors {

namespace {

// Chunk c (of those with trainable() == `trainable`) goes to the rank whose
// share of their bytes holds c's midpoint: contiguous ranges, each within one
// chunk of total / world; -1 for the others.
std::vector<int> balanced(const std::vector<memory::ChunkLayout>& layouts, int world,
                          bool trainable) {
  std::vector<int> owners(layouts.size(), -1);
  long double total = 0;
  for (const memory::ChunkLayout& l : layouts) total += l.trainable() == trainable ? l.bytes() : 0;
  long double before = 0;
  for (size_t c = 0; c < layouts.size(); ++c) {
    if (layouts[c].trainable() != trainable) continue;
    const long double bytes = layouts[c].bytes();
    const long double mid = before + bytes / 2;
    const int owner = static_cast<int>(mid * world / total);
    owners[c] = std::clamp(owner, 0, world - 1);
    before += bytes;
  }
  return owners;
}

}  // namespace

std::vector<int> chunk_owners(const std::vector<memory::ChunkLayout>& layouts, int world) {
  return balanced(layouts, world, /*trainable=*/true);
}

std::vector<int> param_holders(const std::vector<memory::ChunkLayout>& layouts, int world) {
  std::vector<int> holders = chunk_owners(layouts, world);
  const std::vector<int> frozen = balanced(layouts, world, /*trainable=*/false);
  for (size_t c = 0; c < holders.size(); ++c) {
    if (holders[c] < 0) holders[c] = frozen[c];
  }
  return holders;
}

RemoteSlots remote_slots(const std::vector<memory::ChunkLayout>& layouts, bool streamed) {
  RemoteSlots slots;
  for (const memory::ChunkLayout& l : layouts) {
    if (!l.remote() || (streamed && !l.own_slot())) continue;
    slots.bytes = std::max(slots.bytes, l.bytes());
  }
  if (slots.bytes > 0) slots.count = streamed ? 1 : kRemoteSlots;
  return slots;
}

ExchangeStaging exchange_staging(const std::vector<memory::ChunkLayout>& all,
                                 const std::vector<int>& visits, int world, bool training,
                                 bool grads_on_device, const ExchangeSpec& spec) {
  ExchangeStaging s;
  if (world <= 1 || !training) return s;
  int most_visits = 1;
  size_t trainable = 0;
  for (size_t c = 0; c < all.size(); ++c) {
    s.buffer_bytes = std::max(s.buffer_bytes, all[c].bytes());
    if (!all[c].trainable()) continue;
    ++trainable;
    most_visits = std::max(most_visits, visits[c]);
  }
  s.fixed = 2 + static_cast<size_t>(most_visits - 1);
  if (grads_on_device && trainable > 0) s.device_bytes = s.buffer_bytes;
  if (!spec.overlap || trainable == 0) return s;
  const size_t ranks = static_cast<size_t>(world);
  const size_t buffer_elements = s.buffer_bytes / sizeof(float);
  const size_t bucket = static_cast<size_t>(std::max<int64_t>(spec.bucket_elements, 0));
  s.in_flight = std::clamp(bucket / buffer_elements, ranks, ranks * trainable);
  return s;
}

std::vector<memory::ChunkLayout> rank_layouts(std::vector<memory::ChunkLayout> layouts, int rank,
                                              int world, int stage, bool partition_params) {
  if (world <= 1 || stage < 1) return layouts;
  const std::vector<int> owners = chunk_owners(layouts, world);
  const bool remote = partition_params && stage == 3;
  const std::vector<int> holders = remote ? param_holders(layouts, world) : owners;
  for (size_t c = 0; c < layouts.size(); ++c) {
    if (owners[c] >= 0 && owners[c] != rank) layouts[c].set_trainable(false);
    if (remote && holders[c] != rank) layouts[c].set_remote(true);
  }
  return layouts;
}

}  // namespace dsinf::actors
