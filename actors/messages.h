// Every message of the runtime's actors, and the actors' typed interfaces: a
// protocol change is a compile error, never a runtime surprise. Buffers travel
// as typed handles (the actors hand them around without owning them), outcomes
// as absl::Status; all of it stays in this process, so none of it needs CAF
// serialization.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "caf/all.hpp"

namespace dsinf::nvme {
class SwapStore;
}  // namespace dsinf::nvme

namespace dsinf::actors {

// ---- typed handles ----

// A chunk index of the model (ChunkLayout order).
using chunk_index = uint64_t;

// Host memory an actor reads or writes (a host pool block, a staging buffer).
struct HostBuffer {
  std::byte* data = nullptr;
};
// Device memory from the backend's arena (a parameter slot).
struct DeviceBuffer {
  float* data = nullptr;
};
// An upload of one chunk's working parameters into its device slot: `bytes`
// from host `src` straight into `slot`, or, when they are stored in bf16/fp16,
// into the slot's `area` first and widened from there into `slot` (fp32,
// `elements` of them).
struct UploadJob {
  DeviceBuffer slot;
  void* area = nullptr;
  HostBuffer src;
  uint64_t bytes = 0;
  uint64_t elements = 0;
};
// One chunk of a swap store.
struct SwapChunk {
  nvme::SwapStore* store = nullptr;
  uint32_t id = 0;
};
// A device slot and whether the chunk was already there when asked (the
// fetch's round trip was messaging only), or why the chunk cannot be had.
struct Fetched {
  absl::Status status;
  DeviceBuffer slot;
  bool was_ready = false;
};
// The scalars of one optimizer step.
struct UpdateScalars {
  double lr = 0;
  int64_t step = 0;         // 1-based optimizer step
  float grad_scale = 1.0f;  // clip coefficient / loss scale
};
// One training step as the session asks for it: its index, learning rate and
// the tokens of its micro-batches (gradient_accumulation_steps x B x T each).
struct StepRequest {
  int64_t index = 0;  // 0-based, for messages
  double lr = 0;
  std::vector<int32_t> inputs, targets;
  bool update = true;  // false: forward and backward alone (no norm, no update)
};
// What a step did.
struct StepOutcome {
  double loss = 0;        // mean over the micro-batches
  double norm = 0;        // the global gradient norm before clipping (loss scale divided out)
  double loss_scale = 1;  // fp16's scale the step ran with
  bool skipped = false;   // fp16 overflow: no update (overflow_message says why)
  std::string overflow_message;
  double forward_s = 0, backward_s = 0, update_s = 0;
};

// ---- atoms ----
using fetch_atom = caf::atom_constant<caf::atom("fetch")>;        // a chunk, wanted now
using prefetch_atom = caf::atom_constant<caf::atom("prefetch")>;  // a chunk, wanted soon
using release_atom = caf::atom_constant<caf::atom("release")>;    // done with a chunk
using taken_atom = caf::atom_constant<caf::atom("taken")>;  // a chunk taken from the ready board
using access_atom = caf::atom_constant<caf::atom("access")>;      // the model touched a chunk
using step_atom = caf::atom_constant<caf::atom("step")>;          // a training step (begins)
using read_atom = caf::atom_constant<caf::atom("read")>;          // NVMe -> host
using write_atom = caf::atom_constant<caf::atom("write")>;        // host -> NVMe
using io_done_atom = caf::atom_constant<caf::atom("iodone")>;     // an NVMe request completed
using stats_atom = caf::atom_constant<caf::atom("stats")>;
using invalidate_atom = caf::atom_constant<caf::atom("invalid")>;  // homes are about to change
using updated_atom = caf::atom_constant<caf::atom("updated")>;     // a chunk's home is current
using preload_atom = caf::atom_constant<caf::atom("preload")>;     // read optimizer state ahead
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;       // drop what was read ahead
using upload_atom = caf::atom_constant<caf::atom("upload")>;       // host -> device slot
using resume_atom = caf::atom_constant<caf::atom("resume")>;  // a gate the actor waits on opened

// ---- interfaces ----

// nvme_swap: owns the swap stores' I/O; turns completions into replies.
//   (read, chunk, destination) -> status; (write, chunk, source) -> status
using nvme_swap_actor =
    caf::typed_actor<caf::replies_to<read_atom, SwapChunk, HostBuffer>::with<absl::Status>,
                     caf::replies_to<write_atom, SwapChunk, HostBuffer>::with<absl::Status>,
                     caf::reacts_to<io_done_atom, uint64_t, absl::Status>>;

// uploader: copies a chunk from host memory into its device slot (a DMA on a
// GPU backend, a memcpy on the CPU one), off the shard, which stays free to
// answer fetches meanwhile.
//   (upload, chunk, job) -> status
using uploader_actor =
    caf::typed_actor<caf::replies_to<upload_atom, chunk_index, UploadJob>::with<absl::Status>>;

// param_shard: owns the device slots of streamed parameter chunks and their
// residency. fetch replies once the chunk is in its slot; taken confirms a
// take from its ReadyBoard (actors/ready_board.h), which counts as a fetch.
using param_shard_actor =
    caf::typed_actor<caf::replies_to<fetch_atom, chunk_index>::with<Fetched>,
                     caf::reacts_to<prefetch_atom, chunk_index>,
                     caf::reacts_to<release_atom, chunk_index>,
                     caf::reacts_to<taken_atom, chunk_index>,
                     caf::replies_to<invalidate_atom, bool>::with<absl::Status>,
                     caf::reacts_to<updated_atom, chunk_index, bool>, caf::reacts_to<step_atom>,
                     caf::replies_to<stats_atom>::with<uint64_t, uint64_t, uint64_t>>;

// prefetch: learns the order in which the model touches chunks during the
// first step and then keeps the next chunks moving ahead of the model.
using prefetch_actor =
    caf::typed_actor<caf::reacts_to<access_atom, chunk_index>, caf::reacts_to<step_atom>,
                     caf::replies_to<stats_atom>::with<uint64_t, uint64_t, uint64_t>>;

// optimizer: Adam over every trainable chunk, wherever its state lives.
//   preload: start reading the next step's optimizer state (it needs no gradient)
//   (step, scalars): update every chunk; the runtime's gates say when each is done
//   cancel: drop the state read ahead (no step follows)
//   resume: a background save has read a chunk the step waits for
using optimizer_actor =
    caf::typed_actor<caf::reacts_to<preload_atom>, caf::reacts_to<step_atom, UpdateScalars>,
                     caf::reacts_to<cancel_atom>, caf::reacts_to<resume_atom>>;

// trainer: runs one training step (micro-batches, norm, update, the hand-off
// to the optimizer) and replies with what it did.
using trainer_actor =
    caf::typed_actor<caf::replies_to<step_atom, StepRequest>::with<StepOutcome, absl::Status>>;

}  // namespace dsinf::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(absl::Status)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsinf::actors::HostBuffer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsinf::actors::DeviceBuffer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsinf::actors::SwapChunk)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsinf::actors::UploadJob)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsinf::actors::Fetched)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsinf::actors::UpdateScalars)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsinf::actors::StepRequest)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsinf::actors::StepOutcome)
