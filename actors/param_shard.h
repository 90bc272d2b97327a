// The param_shard actor: owns the device slots of streamed parameter chunks
// and each chunk's residency (checked transitions: on NVMe -> reading -> on
// host -> uploading -> on device). It serves the model's fetches -- at once
// when the chunk is on the device, else once a load (an NVMe read through
// nvme_swap, then an upload through the uploader) has brought it into a slot
// -- and the prefetcher's requests ahead of the model. A chunk with a slot of
// its own stays on the device once loaded. Another rank's chunk (stage 3)
// borrows a shared slot from its fetch to its release. A chunk on the device
// is also posted on the setup's ReadyBoard, and withdrawn before its slot is
// reused or its home changes. Event-based: it only routes messages and starts I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "actors/messages.h"
#include "actors/ready_board.h"

namespace dsinf::actors {

class ActorSystem;

// Where one chunk's parameters live between uses: a host block, or a swap
// chunk, in the working dtype (fp32, or bf16/fp16 widened on upload).
struct ChunkHome {
  const std::byte* host = nullptr;  // when not null
  SwapChunk swap;                   // else this swap chunk
  // With a swap home: a host copy kept between uses (offload_param.max_in_cpu),
  // filled by the first read or by the optimizer; null when not cached.
  std::byte* cache = nullptr;
  size_t bytes = 0;  // page-padded chunk size in the working dtype
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
  // With 16-bit working weights: the device area of its own slot the upload
  // lands in before it is widened into the slot.
  void* own_area = nullptr;
  // Another rank holds it (ZeRO stage 3): no home here. A fetch gives it a
  // shared slot at once, for the caller to fill (the holder's broadcast);
  // its release frees the slot. Never prefetched, never stale.
  bool remote = false;
};

struct ShardSetup {
  std::vector<ChunkHome> chunks;
  std::vector<float*> slots;        // shared device slots, each at least the largest
                                    // chunk without a slot of its own (none: every chunk has one)
  std::vector<std::byte*> staging;  // one host staging buffer per slot (NVMe reads)
  // With 16-bit working weights: per slot, the device area uploads land in
  // before they are widened into the slot (empty with fp32).
  std::vector<void*> areas;
  // Where chunks on the device are posted for takes without a round trip
  // (null: every fetch is a message). Another rank's chunk is never posted.
  std::shared_ptr<ReadyBoard> board;
};

param_shard_actor spawn_param_shard(ActorSystem& system, ShardSetup setup, nvme_swap_actor swap,
                                    uploader_actor uploader);

}  // namespace dsinf::actors
