// The nvme_swap actor: the one owner of swap I/O. A read or write request is
// submitted to the swap store's engine; the engine's completion thread posts
// the outcome back as a message, which answers the request. Detached:
// submitting blocks while the engine's queue depth is reached.
#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "actors/messages.h"

namespace dsinf::actors {

class ActorSystem;

nvme_swap_actor spawn_nvme_swap(ActorSystem& system);

// For threads outside the actors (the session, a background save): one
// request, waited for. A checksum mismatch on read is kDataLoss.
absl::Status swap_read_blocking(ActorSystem& system, const nvme_swap_actor& swap, SwapChunk chunk,
                                std::byte* dst);
absl::Status swap_write_blocking(ActorSystem& system, const nvme_swap_actor& swap, SwapChunk chunk,
                                 const std::byte* src);

}  // namespace dsinf::actors
