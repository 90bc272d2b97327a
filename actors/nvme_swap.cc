#include "actors/nvme_swap.h"

#include <unordered_map>

#include "actors/system.h"
#include "memory/util/check.h"
#include "memory/util/trace.h"
#include "nvme/swap_store.h"

namespace dsinf::actors {
namespace {

// Actor states declare a constructor: as C++20 aggregates CAF would try to
// build them from the actor's self pointer.
struct SwapState {
  SwapState() = default;
  uint64_t next_request = 0;
  std::unordered_map<uint64_t, caf::typed_response_promise<absl::Status>> pending;
};

using SwapPointer = nvme_swap_actor::stateful_pointer<SwapState>;

// Submits one request; the completion comes back as an io_done message.
caf::typed_response_promise<absl::Status> submit(SwapPointer self, SwapChunk chunk,
                                                 HostBuffer buffer, bool write) {
  const uint64_t request = self->state.next_request++;
  auto promise = self->make_response_promise<absl::Status>();
  self->state.pending.emplace(request, promise);
  nvme_swap_actor handle = self;
  const int64_t submitted_ns = trace::now_ns();
  const trace::Lane lane = write ? trace::Lane::kNvmeWrite : trace::Lane::kNvmeRead;
  auto done = [handle, request, chunk, lane, write, submitted_ns](const nvme::IoResult& r) {
    trace::record(lane, write ? "swap write" : "swap read", chunk.id, submitted_ns,
                  trace::now_ns());
    caf::anon_send(handle, io_done_atom::value, request, r.status);
  };
  const absl::Status submitted = write ? chunk.store->write(chunk.id, buffer.data, std::move(done))
                                       : chunk.store->read(chunk.id, buffer.data, std::move(done));
  if (!submitted.ok()) {
    self->state.pending.erase(request);
    promise.deliver(submitted);
  }
  return promise;
}

nvme_swap_actor::behavior_type nvme_swap(SwapPointer self) {
  return {[=](read_atom, SwapChunk chunk, HostBuffer dst) -> caf::result<absl::Status> {
            return submit(self, chunk, dst, /*write=*/false);
          },
          [=](write_atom, SwapChunk chunk, HostBuffer src) -> caf::result<absl::Status> {
            return submit(self, chunk, src, /*write=*/true);
          },
          [=](io_done_atom, uint64_t request, absl::Status status) {
            auto it = self->state.pending.find(request);
            DSINF_CHECK_MSG(it != self->state.pending.end(),
                            "completion of an unknown swap request");
            it->second.deliver(std::move(status));
            self->state.pending.erase(it);
          }};
}

absl::Status blocking(ActorSystem& system, const nvme_swap_actor& swap, SwapChunk chunk,
                      std::byte* buffer, bool write) {
  caf::scoped_actor self(system.get());
  absl::Status status;
  auto reply =
      write ? self->request(swap, caf::infinite, write_atom::value, chunk, HostBuffer{buffer})
            : self->request(swap, caf::infinite, read_atom::value, chunk, HostBuffer{buffer});
  std::move(reply).receive(
      [&](absl::Status s) { status = std::move(s); },
      [&](caf::error& e) { status = absl::InternalError("nvme_swap: " + caf::to_string(e)); });
  return status;
}

}  // namespace

nvme_swap_actor spawn_nvme_swap(ActorSystem& system) {
  return system.get().spawn<caf::detached>(nvme_swap);
}

absl::Status swap_read_blocking(ActorSystem& system, const nvme_swap_actor& swap, SwapChunk chunk,
                                std::byte* dst) {
  trace::Scope span(trace::Lane::kNvmeRead, "swap read (waited)", chunk.id);
  return blocking(system, swap, chunk, dst, /*write=*/false);
}

absl::Status swap_write_blocking(ActorSystem& system, const nvme_swap_actor& swap, SwapChunk chunk,
                                 const std::byte* src) {
  trace::Scope span(trace::Lane::kNvmeWrite, "swap write (waited)", chunk.id);
  return blocking(system, swap, chunk, const_cast<std::byte*>(src), /*write=*/true);
}

}  // namespace dsinf::actors
