// Every message of the offload runtime's actors, and the actors' typed
// interfaces: a protocol change is a compile error, never a runtime surprise.
// Messages carry plain values only (chunk indices, addresses as integers,
// status codes and texts), so none needs CAF serialization.
#pragma once

#include <cstdint>
#include <string>

#include "caf/all.hpp"

namespace dsinf::actors {

// ---- atoms ----
using fetch_atom = caf::atom_constant<caf::atom("fetch")>;        // a chunk, wanted now
using prefetch_atom = caf::atom_constant<caf::atom("prefetch")>;  // a chunk, wanted soon
using release_atom = caf::atom_constant<caf::atom("release")>;    // done with a chunk
using access_atom = caf::atom_constant<caf::atom("access")>;      // the model touched a chunk
using step_atom = caf::atom_constant<caf::atom("step")>;          // a training step begins
using read_atom = caf::atom_constant<caf::atom("read")>;          // NVMe -> host
using io_done_atom = caf::atom_constant<caf::atom("iodone")>;     // an NVMe request completed
using stats_atom = caf::atom_constant<caf::atom("stats")>;
using invalidate_atom = caf::atom_constant<caf::atom("invalid")>;  // homes are about to change
using updated_atom = caf::atom_constant<caf::atom("updated")>;     // a chunk's home is current
using preload_atom = caf::atom_constant<caf::atom("preload")>;     // read optimizer state ahead
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;       // drop what was read ahead
using upload_atom = caf::atom_constant<caf::atom("upload")>;       // host -> device slot

// A chunk index of the model (ChunkLayout order).
using chunk_index = uint64_t;
// A host or device address, as an integer: the actors hand buffers around
// without owning them.
using address = uint64_t;

// Outcomes travel as (code, message): absl::StatusCode as an int (0 ok) and its text.

// ---- interfaces ----

// nvme_swap: owns the swap stores' I/O; turns completions into replies.
//   (read, store, swap chunk id, destination) -> (code, message)
using nvme_swap_actor = caf::typed_actor<
    caf::replies_to<read_atom, uint64_t, uint64_t, address>::with<int, std::string>,
    caf::reacts_to<io_done_atom, uint64_t, int, std::string>>;

// uploader: copies a chunk from host memory into its device slot (a DMA on a
// GPU backend, a memcpy on the CPU one), off the shard, which stays free to
// answer fetches meanwhile.
//   (upload, chunk, device destination, host source, bytes) -> (code, message)
using uploader_actor = caf::typed_actor<
    caf::replies_to<upload_atom, chunk_index, address, address, uint64_t>::with<int, std::string>>;

// param_shard: owns the device slots of streamed parameter chunks and their
// residency. fetch replies with the slot's address once the chunk is there,
// and whether it already was when asked (the round trip was messaging only).
using param_shard_actor = caf::typed_actor<
    caf::replies_to<fetch_atom, chunk_index>::with<address, int, std::string, bool>,
    caf::reacts_to<prefetch_atom, chunk_index>, caf::reacts_to<release_atom, chunk_index>,
    caf::replies_to<invalidate_atom, bool>::with<address, int, std::string, bool>,
    caf::reacts_to<updated_atom, chunk_index, bool>, caf::reacts_to<step_atom>,
    caf::replies_to<stats_atom>::with<uint64_t, uint64_t, uint64_t>>;

// prefetch: learns the order in which the model touches chunks during the
// first step and then keeps the next chunks moving ahead of the model.
using prefetch_actor =
    caf::typed_actor<caf::reacts_to<access_atom, chunk_index>, caf::reacts_to<step_atom>,
                     caf::replies_to<stats_atom>::with<uint64_t, uint64_t, uint64_t>>;

// optimizer: runs the optimizer's work, one message at a time, in order.
//   preload: start reading the next step's optimizer state (it needs no gradient)
//   (step, lr, optimizer step, gradient scale): Adam over every chunk
//   cancel: drop the state read ahead (no step follows)
using optimizer_actor = caf::typed_actor<caf::reacts_to<preload_atom>,
                                         caf::reacts_to<step_atom, double, int64_t, float>,
                                         caf::reacts_to<cancel_atom>>;

// trainer: runs training step `index` (forward, backward, norm, update).
using trainer_actor = caf::typed_actor<caf::replies_to<step_atom, int64_t>::with<int, std::string>>;

}  // namespace dsinf::actors
