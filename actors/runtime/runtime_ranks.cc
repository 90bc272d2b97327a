// The runtime among several data-parallel ranks (ZeRO, partition.h). Every
// rank runs the same layer program over its slice of the step's
// micro-batches, so every rank hands the same chunks' gradient visits over in
// the same order; all communication runs on the model's thread in that order.
//
// Exactness: one rank adds the visits of micro-batch 0, then 1, ... into each
// accumulator. With N ranks rank r computes micro-batches r, N + r, 2N + r...
// (the loop slices them so), and the chunk's owner adds, for each of its
// micro-batch rounds, rank 0's visits, then rank 1's...: the same additions
// in the same order. A chunk visited several times a micro-batch (a tied
// embedding) is reduced at its last visit, each rank's visits together. With
// overlap_comm the same additions happen later (overlapped_reduce.h).
#include <cstring>

#include "absl/strings/str_cat.h"
#include "actors/runtime/partition.h"
#include "actors/runtime/runtime.h"
#include "actors/runtime/tier_copy.h"
#include "kernels/comm/nccl_communicator.h"
#include "kernels/cpu/adam.h"
#include "memory/util/check.h"

namespace dsinf::actors {

using kernels::Stream;
namespace comm = kernels::comm;

absl::Status Runtime::start_ranks(const std::vector<memory::ChunkLayout>& all) {
  model_trainable_.resize(all.size());
  for (size_t c = 0; c < all.size(); ++c) model_trainable_[c] = all[c].trainable();
  owners_ = chunk_owners(all, ranks());
  if (ranks() == 1 || !spec_.training) return absl::OkStatus();
  visits_seen_.assign(all.size(), 0);  // visits_expected_: start()
  if (absl::Status s = reserve_exchange(); !s.ok()) return s;
  if (exchange_.device_bytes > 0) {  // what the plan counted (the CPU backend adds in place)
    absl::StatusOr<void*> area = backend_->allocate(exchange_.device_bytes);
    if (!area.ok()) return area.status();
    rank_device_ = *area;
  }
  if (absl::Status s = start_device_exchange(); !s.ok()) return s;
  if (partitions_params()) holders_ = param_holders(all, ranks());
  // The same slots the memory plan counted (within the device budget).
  const RemoteSlots remote =
      remote_slots(store_->layouts(), spec_.placement.params != Tier::kDevice);
  remote_slots_.resize(remote.count);
  for (RemoteSlot& slot : remote_slots_) {
    absl::StatusOr<void*> area = backend_->allocate(remote.bytes);
    if (!area.ok()) {
      return absl::Status(area.status().code(),
                          absl::StrCat(spec_.source, ": ", remote.count,
                                       " device buffers for chunks other ranks hold (ZeRO "
                                       "stage 3): ",
                                       area.status().message()));
    }
    slot.data = static_cast<float*>(*area);
  }
  return absl::OkStatus();
}

// The buffers exchange_staging() counted in the plan, from the host pool.
absl::Status Runtime::reserve_exchange() {
  std::vector<std::byte*> buffers;
  for (size_t i = 0; i < exchange_.fixed + exchange_.in_flight; ++i) {
    absl::StatusOr<std::byte*> b = store_->host_block(exchange_.buffer_bytes);
    if (!b.ok()) return b.status();
    buffers.push_back(*b);
  }
  rank_send_ = buffers[0];
  rank_recv_ = buffers[1];
  held_visits_.assign(buffers.begin() + 2, buffers.begin() + exchange_.fixed);
  if (exchange_.in_flight == 0) return absl::OkStatus();
  overlapped_ = std::make_unique<OverlappedReduce>(
      spec_.comm, std::vector<std::byte*>(buffers.begin() + exchange_.fixed, buffers.end()),
      [this](size_t c, const std::vector<const std::byte*>& parts) { return add_parts(c, parts); });
  return absl::OkStatus();
}

// NCCL when every rank can use it: a collective choice (the ranks must agree
// on which communicator carries each exchange), then NCCL's own collective
// set-up.
absl::Status Runtime::start_device_exchange() {
  const bool mine = !backend_->device_memory_is_host() && cuda_device_.has_value() &&
                    kernels::comm::nccl_built() && store_->grads().tier == Tier::kDevice;
  const char can = mine ? 1 : 0;
  std::vector<char> all(static_cast<size_t>(ranks()));
  if (absl::Status s = comm::wait(spec_.comm->all_gather_bytes(&can, 1, all.data())); !s.ok()) {
    return s;
  }
  for (char c : all) {
    if (c == 0) return absl::OkStatus();
  }
  // A torchrun-style launch's world is NCCL already: its device side serves.
  device_exchange_ = spec_.comm->device_communicator();
  if (device_exchange_ != nullptr) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<comm::Communicator>> nccl =
      comm::make_nccl_communicator(*spec_.comm, cuda_device_->index);
  if (!nccl.ok()) return nccl.status();
  device_comm_ = *std::move(nccl);
  device_exchange_ = device_comm_.get();
  return absl::OkStatus();
}

bool Runtime::exchanges_on_device() const {
  return backend_->device_memory_is_host() || device_exchange_ != nullptr;
}

comm::Communicator& Runtime::device_exchange() {
  return device_exchange_ != nullptr ? *device_exchange_ : *spec_.comm;
}

absl::Status Runtime::send_params(size_t c, const float* mine) {
  const size_t bytes = store_->bytes(c);
  if (absl::Status s = backend_->synchronize(Stream::kCompute); !s.ok()) return s;
  if (exchanges_on_device()) {
    return comm::wait(device_exchange().broadcast(const_cast<float*>(mine), bytes, rank()));
  }
  if (absl::Status s = backend_->copy_to_host(rank_send_, mine, bytes, Stream::kDownload);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = backend_->synchronize(Stream::kDownload); !s.ok()) return s;
  return comm::wait(spec_.comm->broadcast(rank_send_, bytes, rank()));
}

// Another rank's chunk borrows a streamer slot when parameters are streamed,
// else (or with a slot of its own: an adapter) one of the remote slots.
bool Runtime::borrows_streamer_slot(size_t c) const {
  return streamer_ != nullptr && !store_->layouts()[c].own_slot();
}

absl::StatusOr<float*> Runtime::remote_slot_for(size_t c) {
  if (borrows_streamer_slot(c)) return streamer_->acquire_remote(c);
  for (RemoteSlot& s : remote_slots_) {
    if (s.chunk < 0) {
      s.chunk = static_cast<long>(c);
      return s.data;
    }
  }
  DSINF_CHECK_MSG(false, "the model holds more chunks of other ranks than remote_slots()");
  return nullptr;
}

absl::StatusOr<const float*> Runtime::receive_params(size_t c) {
  const int root = holders_[c];
  const size_t bytes = store_->bytes(c);
  absl::StatusOr<float*> slot = remote_slot_for(c);
  if (!slot.ok()) return slot.status();
  if (exchanges_on_device()) {
    if (absl::Status s = comm::wait(device_exchange().broadcast(*slot, bytes, root)); !s.ok()) {
      return s;
    }
    return *slot;
  }
  if (absl::Status s = comm::wait(spec_.comm->broadcast(rank_recv_, bytes, root)); !s.ok()) {
    return s;
  }
  if (absl::Status s = backend_->copy_to_device(*slot, rank_recv_, bytes, Stream::kCompute);
      !s.ok()) {
    return s;
  }
  // The staging is received into again next.
  if (absl::Status s = backend_->synchronize(Stream::kCompute); !s.ok()) return s;
  return *slot;
}

absl::Status Runtime::release_remote(size_t c) {
  // The compute that read it is done before the slot is filled again.
  if (borrows_streamer_slot(c)) {
    if (absl::Status s = backend_->synchronize(Stream::kCompute); !s.ok()) return s;
    streamer_->release(c);
    return absl::OkStatus();
  }
  for (RemoteSlot& slot : remote_slots_) {
    if (slot.chunk == static_cast<long>(c)) {
      slot.chunk = -1;
      return backend_->synchronize(Stream::kCompute);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<double>> Runtime::gather_values(const std::vector<double>& mine) {
  if (ranks() == 1) return mine;
  std::vector<double> all(mine.size() * static_cast<size_t>(ranks()));
  if (absl::Status s = comm::wait(
          spec_.comm->all_gather_bytes(mine.data(), mine.size() * sizeof(double), all.data()));
      !s.ok()) {
    return s;
  }
  return all;
}

absl::StatusOr<std::vector<double>> Runtime::owners_values(std::vector<double> mine) {
  if (ranks() == 1) return mine;
  absl::StatusOr<std::vector<double>> all = gather_values(mine);
  if (!all.ok()) return all.status();
  const size_t n = mine.size();
  for (size_t c = 0; c < n; ++c) {
    mine[c] = owners_[c] < 0 ? 0.0 : (*all)[static_cast<size_t>(owners_[c]) * n + c];
  }
  return mine;
}

void Runtime::end_micro_batch() {
  if (ranks() == 1 || visits_seen_.empty()) return;
  for (size_t c = 0; c < visits_seen_.size(); ++c) {
    DSINF_CHECK_MSG(!model_trainable_[c] || visits_seen_[c] == visits_expected_[c],
                    "a chunk's gradient visits differ from the model's grad_visits()");
    visits_seen_[c] = 0;
  }
}

absl::StatusOr<const std::byte*> Runtime::host_visit(const void* visit, size_t bytes,
                                                     std::byte* staging) {
  if (backend_->device_memory_is_host()) {
    if (absl::Status s = backend_->synchronize(Stream::kCompute); !s.ok()) return s;
    return static_cast<const std::byte*>(visit);
  }
  backend_->stream_wait(Stream::kDownload, backend_->record(Stream::kCompute));
  if (absl::Status s = backend_->copy_to_host(staging, visit, bytes, Stream::kDownload); !s.ok()) {
    return s;
  }
  if (absl::Status s = backend_->synchronize(Stream::kDownload); !s.ok()) return s;
  return staging;
}

absl::Status Runtime::reduce_visit(size_t c, const void* visit) {
  const size_t bytes = store_->numel(c) * kernels::dtype_bytes(store_->working_dtype());
  const int visits = visits_expected_[c];
  if (overlapped_ && visits == 1) {
    ++visits_seen_[c];
    return overlapped_->start(c, owners_[c], bytes, [&](std::byte* into) -> absl::Status {
      absl::StatusOr<const std::byte*> mine = host_visit(visit, bytes, into);
      if (!mine.ok()) return mine.status();
      if (*mine != into) std::memcpy(into, *mine, bytes);
      return absl::OkStatus();
    });
  }
  // A chunk visited several times a micro-batch goes the blocking way, after
  // every reduction in flight (the messages between two ranks keep their order).
  if (overlapped_) {
    if (absl::Status s = overlapped_->drain(); !s.ok()) return s;
  } else if (visits == 1 && exchanges_on_device()) {
    return reduce_on_device(c, visit, bytes);
  }
  absl::StatusOr<const std::byte*> mine = host_visit(visit, bytes, rank_send_);
  if (!mine.ok()) return mine.status();
  const int j = visits_seen_[c]++;
  DSINF_CHECK_MSG(j < visits, "a chunk's gradient visits exceed the model's grad_visits()");
  if (j + 1 < visits) {  // an earlier visit of this micro-batch: kept until the last
    std::memcpy(held_visits_[j], *mine, bytes);
    return absl::OkStatus();
  }
  auto visit_of = [&](int k) { return k + 1 < visits ? held_visits_[k] : *mine; };
  const int root = owners_[c];
  if (rank() != root) {
    for (int k = 0; k < visits; ++k) {
      if (absl::Status s = comm::wait(spec_.comm->send(visit_of(k), bytes, root)); !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }
  if (absl::Status s = start_accumulator(c); !s.ok()) return s;
  for (int r = 0; r < ranks(); ++r) {
    for (int k = 0; k < visits; ++k) {
      const std::byte* part = visit_of(k);
      if (r != rank()) {
        if (absl::Status s = comm::wait(spec_.comm->receive(rank_recv_, bytes, r)); !s.ok()) {
          return s;
        }
        part = rank_recv_;
      }
      if (absl::Status s = add_part(c, part); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

// The visit stays in device memory: sent from where the backward left it,
// received into the exchange's device area (host memory on the CPU backend),
// and added in rank order as the host path adds.
absl::Status Runtime::reduce_on_device(size_t c, const void* visit, size_t bytes) {
  ++visits_seen_[c];
  // The compute that wrote the visit (and read the area) is done.
  if (absl::Status s = backend_->synchronize(Stream::kCompute); !s.ok()) return s;
  comm::Communicator& exchange = device_exchange();
  const int root = owners_[c];
  if (rank() != root) return comm::wait(exchange.send(visit, bytes, root));
  if (absl::Status s = start_accumulator(c); !s.ok()) return s;
  void* area = rank_device_ != nullptr ? rank_device_ : static_cast<void*>(rank_recv_);
  for (int r = 0; r < ranks(); ++r) {
    const void* part = visit;
    if (r != rank()) {
      if (absl::Status s = comm::wait(exchange.receive(area, bytes, r)); !s.ok()) return s;
      part = area;
    }
    if (absl::Status s = add_visit(c, part); !s.ok()) return s;
    // The area is received into again next.
    if (absl::Status s = backend_->synchronize(Stream::kCompute); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Runtime::add_parts(size_t c, const std::vector<const std::byte*>& parts) {
  if (absl::Status s = start_accumulator(c); !s.ok()) return s;
  for (const std::byte* part : parts) {
    if (absl::Status s = add_part(c, part); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// A visit in host memory (the working dtype) into chunk c's accumulator.
absl::Status Runtime::add_part(size_t c, const std::byte* part) {
  ClassHome& grads = store_->grads();
  if (grads.tier == Tier::kHost) {
    kernels::cpu::accumulate(reinterpret_cast<float*>(grads.host[c]), part, store_->working_dtype(),
                             store_->numel(c));
    return absl::OkStatus();
  }
  if (backend_->device_memory_is_host()) {
    if (absl::Status s = add_visit(c, part); !s.ok()) return s;
    return backend_->synchronize(Stream::kCompute);
  }
  const size_t bytes = store_->numel(c) * kernels::dtype_bytes(store_->working_dtype());
  if (absl::Status s = backend_->copy_to_device(rank_device_, part, bytes, Stream::kCompute);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = add_visit(c, rank_device_); !s.ok()) return s;
  // The staging is received into again next.
  return backend_->synchronize(Stream::kCompute);
}

absl::Status Runtime::broadcast_home(ClassHome& home, size_t c, int root) {
  const size_t bytes = store_->bytes(c);
  std::byte* staging = rank_recv_;
  if (rank() == root) {
    absl::StatusOr<float*> p = host_view(*backend_, home, c, bytes, staging);
    if (!p.ok()) return p.status();
    return comm::wait(spec_.comm->broadcast(*p, bytes, root));
  }
  if (absl::Status s = comm::wait(spec_.comm->broadcast(staging, bytes, root)); !s.ok()) return s;
  return copy_into_home(*backend_, home, c, bytes, reinterpret_cast<const float*>(staging));
}

absl::Status Runtime::share_grads() {
  if (absl::Status s = backend_->synchronize(Stream::kCompute); !s.ok()) return s;
  for (size_t c = 0; c < store_->chunks(); ++c) {
    if (!model_trainable_[c]) continue;
    if (absl::Status s = broadcast_home(store_->grads(), c, owners_[c]); !s.ok()) return s;
    grads_fresh_[c] = false;
  }
  return absl::OkStatus();
}

absl::Status Runtime::share_params() {
  if (absl::Status s = gates_->wait_idle(); !s.ok()) return s;
  // The optimizer told the streamer every chunk was current, and a chunk
  // with a slot of its own may already be loading the old weights of a chunk
  // another rank owns: everything goes back to its home first (the caches
  // are made valid again below).
  if (streamer_) streamer_->invalidate(/*mark_stale=*/false);
  std::byte* staging = rank_recv_;
  for (size_t c = 0; c < store_->chunks(); ++c) {
    if (!model_trainable_[c]) continue;
    const int root = owners_[c];
    // The owner's new fp32 weights; every other rank rounds them to its
    // working copy as the owner did.
    if (rank() == root) {
      if (absl::Status s = read_home(kParamClass, c, staging); !s.ok()) return s;
    }
    if (absl::Status s = comm::wait(spec_.comm->broadcast(staging, store_->bytes(c), root));
        !s.ok()) {
      return s;
    }
    if (rank() == root) continue;
    // Held frozen here: its working copy (and host cache) is all there is.
    // The update left it stale in the streamer, which loads it again once
    // told it is current; every other chunk's cache stays valid.
    if (absl::Status s = write_working(c, reinterpret_cast<const float*>(staging)); !s.ok()) {
      return s;
    }
  }
  // Only now, every home current: each chunk loads (a slot of its own: at
  // once) from its home or its current host cache.
  for (size_t c = 0; streamer_ && c < store_->chunks(); ++c) {
    streamer_->updated(c, store_->cache_current(c));
  }
  return absl::OkStatus();
}

Runtime::StateBytes Runtime::state_bytes() const {
  StateBytes out;
  for (size_t c = 0; c < store_->chunks(); ++c) {
    if (!remote(c)) out.params += store_->working_bytes(c);
    out.largest_chunk = std::max(out.largest_chunk, store_->bytes(c));
    if (!store_->trainable(c) || !spec_.training) continue;
    out.grads += store_->bytes(c);
    out.optimizer += (store_->master_is_params() ? 2 : 3) * store_->bytes(c);
  }
  return out;
}

}  // namespace dsinf::actors
