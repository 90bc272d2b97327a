#include "actors/runtime/partition.h"

#include <algorithm>
#include <cstdint>

namespace dsinf::actors {

// Chunk c goes to the rank whose share of the trainable bytes holds c's
// midpoint: contiguous ranges, each within one chunk of total / world.
std::vector<int> chunk_owners(const std::vector<memory::ChunkLayout>& layouts, int world) {
  std::vector<int> owners(layouts.size(), -1);
  long double total = 0;
  for (const memory::ChunkLayout& l : layouts) total += l.trainable() ? l.bytes() : 0;
  long double before = 0;
  for (size_t c = 0; c < layouts.size(); ++c) {
    if (!layouts[c].trainable()) continue;
    const long double bytes = layouts[c].bytes();
    const long double mid = before + bytes / 2;
    const int owner = static_cast<int>(mid * world / total);
    owners[c] = std::clamp(owner, 0, world - 1);
    before += bytes;
  }
  return owners;
}

RemoteSlots remote_slots(const std::vector<memory::ChunkLayout>& layouts, bool streamed) {
  RemoteSlots slots;
  bool own_slot = false;
  for (const memory::ChunkLayout& l : layouts) {
    if (!l.remote()) continue;
    slots.bytes = std::max(slots.bytes, l.bytes());
    own_slot |= l.own_slot();
  }
  if (slots.bytes == 0) return slots;
  slots.count = streamed ? (own_slot ? 2 : 1) : kRemoteSlots;
  return slots;
}

std::vector<memory::ChunkLayout> rank_layouts(std::vector<memory::ChunkLayout> layouts, int rank,
                                              int world, int stage, bool partition_params) {
  if (world <= 1 || stage < 1) return layouts;
  const std::vector<int> owners = chunk_owners(layouts, world);
  for (size_t c = 0; c < layouts.size(); ++c) {
    if (owners[c] < 0 || owners[c] == rank) continue;
    layouts[c].set_trainable(false);
    layouts[c].set_remote(partition_params && stage == 3);
  }
  return layouts;
}

}  // namespace dsinf::actors
