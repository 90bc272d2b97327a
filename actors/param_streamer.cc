#include "actors/param_streamer.h"

#include <chrono>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "actors/nvme_swap.h"
#include "actors/prefetch.h"
#include "actors/ready_board.h"
#include "actors/system.h"
#include "actors/uploader.h"
#include "memory/util/check.h"
#include "memory/util/trace.h"

namespace dsinf::actors {

struct ParamStreamer::Impl {
  std::unique_ptr<ActorSystem> own_system;  // when the setup gave none
  ActorSystem* system = nullptr;
  std::unique_ptr<caf::scoped_actor> self;  // the model's thread
  nvme_swap_actor swap;
  bool own_swap = false;  // spawned here (else the runtime's)
  uploader_actor uploader;
  param_shard_actor shard;
  prefetch_actor prefetch;
  std::shared_ptr<PrefetchProbe> probe = std::make_shared<PrefetchProbe>();
  std::shared_ptr<ReadyBoard> board;  // chunks on the device, taken without a round trip
  std::vector<bool> remote;  // per chunk: another rank's
  uint64_t acquire_ns = 0;  // the model's thread in acquire(), waiting included
  uint64_t hits = 0;        // acquires of chunks already on the device
  uint64_t taken = 0;       // ... of which taken from the board
  uint64_t hit_ns = 0;      // ... in the others (round trips)

  Fetched take_or_fetch(size_t c);
};

ParamStreamer::ParamStreamer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<ParamStreamer>> ParamStreamer::create(StreamerSetup setup) {
  DSINF_CHECK(setup.staging.size() == setup.slots.size());
  const bool widen = setup.working_dtype != kernels::DType::kF32;
  DSINF_CHECK(widen ? setup.areas.size() == setup.slots.size() : setup.areas.empty());
  std::vector<uint64_t> elements;
  std::vector<bool> own;
  for (const ChunkHome& home : setup.chunks) {
    // A chunk without a slot of its own needs a shared one; an own slot read
    // from NVMe straight into it needs a staging buffer of its own.
    DSINF_CHECK(home.own_slot != nullptr || !setup.slots.empty());
    DSINF_CHECK(home.own_slot == nullptr || home.host != nullptr || home.cache != nullptr ||
                home.own_staging != nullptr);
    DSINF_CHECK(!widen || home.own_slot == nullptr || home.own_area != nullptr);
    elements.push_back(home.elements);
    own.push_back(home.own_slot != nullptr);
    DSINF_CHECK(!home.remote || home.own_slot == nullptr);
  }
  const uint64_t bucket = setup.prefetch_bucket_elements;
  auto impl = std::make_unique<Impl>();
  for (const ChunkHome& home : setup.chunks) impl->remote.push_back(home.remote);
  impl->board = std::make_shared<ReadyBoard>(setup.chunks.size());
  impl->system = setup.system;
  if (impl->system == nullptr) {
    impl->own_system = std::make_unique<ActorSystem>();
    impl->system = impl->own_system.get();
  }
  ActorSystem& system = *impl->system;
  impl->self = std::make_unique<caf::scoped_actor>(system.get());
  // One shared slot stays for the chunk in use.
  const size_t ahead = setup.slots.empty() ? 0 : setup.slots.size() - 1;
  impl->swap = setup.swap;
  if (!impl->swap) {
    impl->swap = spawn_nvme_swap(system);
    impl->own_swap = true;
  }
  impl->uploader = spawn_uploader(system, setup.backend, setup.working_dtype);
  ShardSetup shard{std::move(setup.chunks), std::move(setup.slots), std::move(setup.staging),
                   std::move(setup.areas), impl->board};
  impl->shard = spawn_param_shard(system, std::move(shard), impl->swap, impl->uploader);
  impl->prefetch = spawn_prefetch(system, impl->shard, ahead, bucket, std::move(elements),
                                  std::move(own), impl->probe);
  return std::unique_ptr<ParamStreamer>(new ParamStreamer(std::move(impl)));
}

ParamStreamer::~ParamStreamer() {
  invalidate();  // no load in flight once this returns
  for (const caf::actor_addr& a :
       {impl_->prefetch.address(), impl_->shard.address(), impl_->uploader.address()}) {
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }
  // The system may be shared: wait for these actors alone.
  (*impl_->self)->wait_for(impl_->prefetch, impl_->shard, impl_->uploader);
  if (impl_->own_swap) {
    caf::anon_send_exit(impl_->swap, caf::exit_reason::user_shutdown);
    (*impl_->self)->wait_for(impl_->swap);
  }
  impl_->self.reset();
  // A system ends once no handle to its actors remains.
  impl_->prefetch = nullptr;
  impl_->shard = nullptr;
  impl_->swap = nullptr;
  impl_->uploader = nullptr;
  impl_->own_system.reset();
}

// Chunk c from the board when it is on the device (the shard counts the take
// after the fact and keeps the slot until then; one sender keeps the take
// before its release), else by a fetch round trip.
Fetched ParamStreamer::Impl::take_or_fetch(size_t c) {
  if (float* slot = board->take(c)) {
    ++taken;
    (*self)->send(shard, taken_atom::value, static_cast<chunk_index>(c));
    return Fetched{absl::OkStatus(), DeviceBuffer{slot}, true};
  }
  Fetched fetched;
  (*self)
      ->request(shard, caf::infinite, fetch_atom::value, static_cast<chunk_index>(c))
      .receive([&](Fetched f) { fetched = std::move(f); },
               [&](caf::error& e) {
                 fetched.status =
                     absl::InternalError(absl::StrCat("param_shard: ", caf::to_string(e)));
               });
  return fetched;
}

absl::StatusOr<const float*> ParamStreamer::acquire(size_t c) {
  trace::Scope span(trace::Lane::kWait, "fetch", static_cast<int64_t>(c));
  const auto start = std::chrono::steady_clock::now();
  const uint64_t taken_before = impl_->taken;
  const Fetched fetched = impl_->take_or_fetch(c);
  const bool from_board = impl_->taken != taken_before;
  const uint64_t ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
          .count());
  // The access that triggers the next prefetch is sent once the chunk is in
  // hand: that chunk's upload then runs beside the model's compute, not beside
  // the round trip (on two cores it would delay the reply by the whole copy).
  if (!impl_->remote[c]) {
    caf::anon_send(impl_->prefetch, access_atom::value, static_cast<chunk_index>(c));
  }
  // A chunk already on the device: the whole round trip was messaging.
  if (fetched.was_ready) ++impl_->hits;
  if (fetched.was_ready && !from_board) impl_->hit_ns += ns;
  impl_->acquire_ns += ns;
  if (!fetched.status.ok()) return fetched.status;
  return fetched.slot.data;
}

absl::StatusOr<float*> ParamStreamer::acquire_remote(size_t c) {
  DSINF_CHECK_MSG(impl_->remote[c], "acquire_remote of a chunk this rank holds");
  absl::StatusOr<const float*> slot = acquire(c);
  if (!slot.ok()) return slot.status();
  // The slot is the shard's device memory: the caller writes the chunk into it.
  return const_cast<float*>(*slot);
}

void ParamStreamer::release(size_t c) {
  (*impl_->self)->send(impl_->shard, release_atom::value, static_cast<chunk_index>(c));
}

void ParamStreamer::updated(size_t c, bool cached) {
  caf::anon_send(impl_->shard, updated_atom::value, static_cast<chunk_index>(c), cached);
}

void ParamStreamer::begin_step() {
  // The shard reopens before the prefetcher can ask it for anything.
  (*impl_->self)->send(impl_->shard, step_atom::value);
  (*impl_->self)->send(impl_->prefetch, step_atom::value);
}

void ParamStreamer::invalidate(bool mark_stale) {
  (*impl_->self)
      ->request(impl_->shard, caf::infinite, invalidate_atom::value, mark_stale)
      .receive([](absl::Status) {}, [](caf::error&) {});
}

const param_shard_actor& ParamStreamer::shard() const { return impl_->shard; }

StreamerStats ParamStreamer::stats() {
  StreamerStats out;
  (*impl_->self)
      ->request(impl_->shard, caf::infinite, stats_atom::value)
      .receive(
          [&](uint64_t fetches, uint64_t waits, uint64_t loads) {
            out.fetches = fetches;
            out.waits = waits;
            out.loads = loads;
          },
          [](caf::error&) {});
  (*impl_->self)
      ->request(impl_->prefetch, caf::infinite, stats_atom::value)
      .receive(
          [&](uint64_t prefetches, uint64_t order, uint64_t relearned) {
            out.prefetches = prefetches;
            out.order_length = order;
            out.relearned = relearned;
          },
          [](caf::error&) {});
  out.max_ahead_chunks = impl_->probe->max_chunks.load(std::memory_order_relaxed);
  out.max_ahead_elements = impl_->probe->max_elements.load(std::memory_order_relaxed);
  out.acquire_ns = impl_->acquire_ns;
  out.hit_ns = impl_->hit_ns;
  out.hits = impl_->hits;
  out.taken = impl_->taken;
  return out;
}

}  // namespace dsinf::actors
