#include "actors/param_streamer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <iostream>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "actors/messages.h"
#include "actors/system.h"
#include "memory/util/check.h"
#include "memory/residency.h"
#include "memory/util/trace.h"

namespace dsinf::actors {
namespace {

using memory::Residency;
using Reply = caf::typed_response_promise<address, int, std::string, bool>;

int code_of(const absl::Status& s) { return static_cast<int>(s.code()); }

// ---------------------------------------------------------------- nvme_swap --

// Actor states declare a constructor: as C++20 aggregates CAF would try to
// build them from the actor's self pointer.
struct SwapState {
  SwapState() = default;
  uint64_t next_request = 0;
  std::unordered_map<uint64_t, caf::typed_response_promise<int, std::string>> pending;
};

// Reads through the swap store; the engine's completion thread posts the
// outcome back as a message, so the actor never waits.
nvme_swap_actor::behavior_type nvme_swap(nvme_swap_actor::stateful_pointer<SwapState> self) {
  return {[=](read_atom, uint64_t store, uint64_t swap_id,
              address dst) -> caf::result<int, std::string> {
            auto* swap = reinterpret_cast<nvme::SwapStore*>(store);
            const uint64_t request = self->state.next_request++;
            auto promise = self->make_response_promise<int, std::string>();
            self->state.pending.emplace(request, promise);
            nvme_swap_actor handle = self;
            const int64_t submitted_ns = trace::now_ns();
            const absl::Status submitted = swap->read(
                static_cast<nvme::ChunkId>(swap_id), reinterpret_cast<std::byte*>(dst),
                [handle, request, swap_id, submitted_ns](const nvme::IoResult& r) {
                  trace::record(trace::Lane::kNvmeRead, "swap read", static_cast<int64_t>(swap_id),
                                submitted_ns, trace::now_ns());
                  caf::anon_send(handle, io_done_atom::value, request, code_of(r.status),
                                 std::string(r.status.message()));
                });
            if (!submitted.ok()) {
              self->state.pending.erase(request);
              promise.deliver(code_of(submitted), std::string(submitted.message()));
            }
            return promise;
          },
          [=](io_done_atom, uint64_t request, int code, std::string message) {
            auto it = self->state.pending.find(request);
            DSINF_CHECK_MSG(it != self->state.pending.end(), "completion of an unknown swap read");
            it->second.deliver(code, std::move(message));
            self->state.pending.erase(it);
          }};
}

// -------------------------------------------------------------- param_shard --

enum class Phase { kHome, kLoading, kReady };

struct ChunkSlot {
  Phase phase = Phase::kHome;
  int slot = -1;
  int users = 0;
  bool used_since_load = false;
  std::vector<Reply> waiting;
};

struct ShardState {
  ShardState() = default;
  StreamerSetup setup;
  std::vector<ChunkSlot> chunks;
  std::vector<int> free_slots;
  std::deque<std::pair<chunk_index, Reply>> blocked;  // fetches waiting for a slot
  std::unique_ptr<memory::ResidencyTable> residency;  // each chunk's device copy
  nvme_swap_actor swap;
  uploader_actor uploader;
  bool open = true;  // prefetches are taken only between begin_step and invalidate
  // Chunks whose home is being rewritten (invalidate .. updated): never loaded,
  // and a prefetch asked for meanwhile is kept until the update lands.
  std::vector<bool> stale, prefetch_wanted;
  std::vector<std::vector<Reply>> waiting_update;  // fetches of stale chunks
  std::vector<bool> cache_valid;                   // chunks whose host cache holds the current home
  // Per chunk: the index in setup.slots of a slot of its own (after the shared
  // ones), or -1 when it is streamed through the shared slots.
  std::vector<int> own_slot;
  // Chunks with own slots that invalidate() took off the device after a load:
  // uploaded again as soon as their update lands.
  std::vector<bool> reload;
  uint64_t loads = 0, fetches = 0, waits = 0;
  std::vector<Reply> quiesce_waiters;  // invalidate(): replied once no load is in flight
  // The first failed load, prefetched or not: every later fetch fails with it,
  // so a disk error stops training instead of being retried unseen.
  absl::Status failure;
};

// Where the chunk's bytes are when it is not on the device: its host home, a
// valid host cache, or NVMe.
Residency home_state(const ChunkHome& home, bool cache_valid) {
  return home.host != nullptr || cache_valid ? Residency::kOnHost : Residency::kOnNvme;
}

void move(ShardState& s, chunk_index c, Residency from, Residency to) {
  const absl::Status status = s.residency->transition(c, from, to);
  DSINF_CHECK_MSG(status.ok(), std::string(status.message()).c_str());
}

using ShardPointer = param_shard_actor::stateful_pointer<ShardState>;

bool loads_in_flight(const ShardState& s) {
  for (const ChunkSlot& c : s.chunks) {
    if (c.phase == Phase::kLoading) return true;
  }
  return false;
}

address slot_address(const ShardState& s, int slot) {
  return reinterpret_cast<address>(s.setup.slots[slot]);
}

// A slot for a new load: a free one, else one whose chunk is on the device,
// unused and already consumed (a prefetched chunk not yet used is kept).
enum class Evict { kConsumedOnly, kAny };
std::optional<int> take_slot(ShardState& s, Evict evict) {
  if (!s.free_slots.empty()) {
    const int slot = s.free_slots.back();
    s.free_slots.pop_back();
    return slot;
  }
  for (bool consumed_only : {true, false}) {
    if (!consumed_only && evict == Evict::kConsumedOnly) break;
    for (chunk_index c = 0; c < s.chunks.size(); ++c) {
      ChunkSlot& cs = s.chunks[c];
      if (s.own_slot[c] >= 0) continue;  // a chunk with its own slot is never evicted
      if (cs.phase == Phase::kReady && cs.users == 0 && (cs.used_since_load || !consumed_only)) {
        const int slot = cs.slot;
        move(s, c, Residency::kOnDevice, Residency::kAbsent);
        move(s, c, Residency::kAbsent, home_state(s.setup.chunks[c], s.cache_valid[c]));
        cs = ChunkSlot{};
        return slot;
      }
    }
  }
  return std::nullopt;
}

// The slot chunk c leaves: back to the free list when it is a shared one.
void free_slot(ShardState& s, chunk_index c, int slot) {
  if (s.own_slot[c] < 0) s.free_slots.push_back(slot);
}

// Every chunk back to its home only: the homes are about to change. A chunk
// with its own slot keeps the slot and is uploaded again once updated.
void drop_all(ShardState& s) {
  for (chunk_index c = 0; c < s.chunks.size(); ++c) {
    ChunkSlot& cs = s.chunks[c];
    if (cs.phase != Phase::kReady) continue;
    DSINF_CHECK_MSG(cs.users == 0, "homes changed while the model holds a chunk");
    move(s, c, Residency::kOnDevice, Residency::kAbsent);
    move(s, c, Residency::kAbsent, home_state(s.setup.chunks[c], s.cache_valid[c]));
    free_slot(s, c, cs.slot);
    if (s.own_slot[c] >= 0) s.reload[c] = true;
    cs = ChunkSlot{};
  }
}

// A slot for chunk c's load: its own, else a shared one (see take_slot).
std::optional<int> slot_for(ShardState& s, chunk_index c, Evict evict) {
  if (s.own_slot[c] >= 0) return s.own_slot[c];
  return take_slot(s, evict);
}

void finish_load(ShardPointer self, chunk_index c, const absl::Status& status);
void drain_blocked(ShardPointer self);

uploader_actor::behavior_type uploader(uploader_actor::pointer self, kernels::Backend* backend) {
  (void)self;
  return {[=](upload_atom, chunk_index c, address dst, address src,
              uint64_t bytes) -> caf::result<int, std::string> {
    trace::Scope span(trace::Lane::kCopyIn, "upload", static_cast<int64_t>(c));
    absl::Status st =
        backend->copy_to_device(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src),
                                bytes, kernels::Stream::kUpload);
    if (st.ok()) st = backend->synchronize(kernels::Stream::kUpload);
    return {code_of(st), std::string(st.message())};
  }};
}

// Copies chunk c from host memory into its slot, then finishes its load.
void start_upload(ShardPointer self, chunk_index c, const std::byte* host) {
  ShardState& s = self->state;
  const address dst = reinterpret_cast<address>(s.setup.slots[s.chunks[c].slot]);
  self->request(s.uploader, caf::infinite, upload_atom::value, c, dst,
                reinterpret_cast<address>(host), static_cast<uint64_t>(s.setup.chunks[c].bytes))
      .then([=](int code, std::string message) {
        finish_load(self, c,
                    code == 0 ? absl::OkStatus()
                              : absl::Status(static_cast<absl::StatusCode>(code), message));
      });
}

void start_load(ShardPointer self, chunk_index c, int slot) {
  ShardState& s = self->state;
  ChunkSlot& cs = s.chunks[c];
  cs.phase = Phase::kLoading;
  cs.slot = slot;
  s.reload[c] = false;
  ++s.loads;
  const ChunkHome& home = s.setup.chunks[c];
  if (home.host != nullptr || s.cache_valid[c]) {
    move(s, c, Residency::kOnHost, Residency::kUploading);
    start_upload(self, c, home.host != nullptr ? home.host : home.cache);
    return;
  }
  move(s, c, Residency::kOnNvme, Residency::kReading);
  // A cached chunk is read into its cache, which then serves its later visits.
  std::byte* target = home.cache != nullptr ? home.cache : s.setup.staging[slot];
  const address staging = reinterpret_cast<address>(target);
  self->request(s.swap, caf::infinite, read_atom::value, reinterpret_cast<uint64_t>(home.swap),
                static_cast<uint64_t>(home.swap_id), staging)
      .then([=](int code, std::string message) {
        ShardState& st = self->state;
        if (code != 0) {
          move(st, c, Residency::kReading, Residency::kOnNvme);
          finish_load(self, c, absl::Status(static_cast<absl::StatusCode>(code), message));
          return;
        }
        move(st, c, Residency::kReading, Residency::kOnHost);
        move(st, c, Residency::kOnHost, Residency::kUploading);
        const ChunkHome& h = st.setup.chunks[c];
        // Not when the home is being rewritten: the bytes read are the old ones.
        if (h.cache != nullptr && !st.stale[c]) st.cache_valid[c] = true;
        start_upload(self, c, h.cache != nullptr ? h.cache : st.setup.staging[st.chunks[c].slot]);
      });
}

void finish_load(ShardPointer self, chunk_index c, const absl::Status& status) {
  ShardState& s = self->state;
  ChunkSlot& cs = s.chunks[c];
  std::vector<Reply> waiting = std::move(cs.waiting);
  cs.waiting.clear();
  if (!status.ok()) {
    if (s.residency->state(c) == Residency::kUploading) {
      move(s, c, Residency::kUploading, Residency::kOnDevice);
      move(s, c, Residency::kOnDevice, Residency::kAbsent);
      move(s, c, Residency::kAbsent, home_state(s.setup.chunks[c], s.cache_valid[c]));
    }
    free_slot(s, c, cs.slot);
    cs = ChunkSlot{};
    if (s.failure.ok()) s.failure = status;
    for (Reply& r : waiting) {
      r.deliver(address{0}, code_of(status), std::string(status.message()), false);
    }
  } else {
    move(s, c, Residency::kUploading, Residency::kOnDevice);
    cs.phase = Phase::kReady;
    for (Reply& r : waiting) {
      ++cs.users;
      cs.used_since_load = true;
      r.deliver(slot_address(s, cs.slot), 0, std::string(), false);
    }
  }
  if (!loads_in_flight(s) && !s.quiesce_waiters.empty()) {
    drop_all(s);
    for (Reply& r : s.quiesce_waiters) r.deliver(address{0}, 0, std::string(), false);
    s.quiesce_waiters.clear();
  }
  drain_blocked(self);
}

// A fetch: now if the chunk is on the device, later if it is loading or must wait for a slot.
void serve(ShardPointer self, chunk_index c, Reply reply) {
  ShardState& s = self->state;
  if (!s.failure.ok()) {
    reply.deliver(address{0}, code_of(s.failure), std::string(s.failure.message()), false);
    return;
  }
  if (s.stale[c]) {
    // Never load a chunk whose home is being rewritten; serve it once updated.
    s.waiting_update[c].push_back(std::move(reply));
    return;
  }
  ChunkSlot& cs = s.chunks[c];
  switch (cs.phase) {
    case Phase::kReady:
      ++cs.users;
      cs.used_since_load = true;
      reply.deliver(slot_address(s, cs.slot), 0, std::string(), true);
      return;
    case Phase::kLoading:
      cs.waiting.push_back(std::move(reply));
      return;
    case Phase::kHome:
      break;
  }
  const std::optional<int> slot = slot_for(s, c, Evict::kAny);
  if (!slot) {
    s.blocked.emplace_back(c, std::move(reply));
    return;
  }
  cs.waiting.push_back(std::move(reply));
  start_load(self, c, *slot);
}

void drain_blocked(ShardPointer self) {
  ShardState& s = self->state;
  while (!s.blocked.empty()) {
    auto [c, reply] = std::move(s.blocked.front());
    s.blocked.pop_front();
    const size_t before = s.blocked.size();
    serve(self, c, std::move(reply));
    if (s.blocked.size() > before) return;  // still no slot
  }
}

param_shard_actor::behavior_type param_shard(ShardPointer self, StreamerSetup setup,
                                             nvme_swap_actor swap, uploader_actor uploader) {
  ShardState& s = self->state;
  s.chunks.resize(setup.chunks.size());
  s.stale.assign(setup.chunks.size(), false);
  s.waiting_update.resize(setup.chunks.size());
  s.cache_valid.assign(setup.chunks.size(), false);
  s.prefetch_wanted.assign(setup.chunks.size(), false);
  s.reload.assign(setup.chunks.size(), false);
  s.residency = std::make_unique<memory::ResidencyTable>(setup.chunks.size());
  for (chunk_index c = 0; c < setup.chunks.size(); ++c) {
    move(s, c, Residency::kAbsent, home_state(setup.chunks[c], false));
  }
  // Only the shared slots are free for any chunk; own slots follow them.
  for (int i = static_cast<int>(setup.slots.size()) - 1; i >= 0; --i) s.free_slots.push_back(i);
  s.own_slot.assign(setup.chunks.size(), -1);
  for (chunk_index c = 0; c < setup.chunks.size(); ++c) {
    const ChunkHome& home = setup.chunks[c];
    if (home.own_slot == nullptr) continue;
    s.own_slot[c] = static_cast<int>(setup.slots.size());
    setup.slots.push_back(home.own_slot);
    setup.staging.push_back(home.own_staging);
  }
  s.setup = std::move(setup);
  s.swap = std::move(swap);
  s.uploader = std::move(uploader);
  return {[=](fetch_atom, chunk_index c) -> caf::result<address, int, std::string, bool> {
            ShardState& st = self->state;
            ++st.fetches;
            if (st.chunks[c].phase != Phase::kReady) ++st.waits;
            auto reply = self->make_response_promise<address, int, std::string, bool>();
            serve(self, c, reply);
            return reply;
          },
          [=](prefetch_atom, chunk_index c) {
            ShardState& st = self->state;
            if (st.stale[c]) {
              st.prefetch_wanted[c] = true;
              return;
            }
            if (!st.open || st.chunks[c].phase != Phase::kHome) return;
            // Into its own slot, a free one, or one whose chunk the model has used and
            // released; a prefetched chunk not used yet is never evicted by another prefetch.
            if (std::optional<int> slot = slot_for(st, c, Evict::kConsumedOnly)) {
              start_load(self, c, *slot);
            }
          },
          [=](release_atom, chunk_index c) {
            ShardState& st = self->state;
            DSINF_CHECK_MSG(st.chunks[c].users > 0, "release of a chunk not fetched");
            --st.chunks[c].users;
            drain_blocked(self);
          },
          [=](invalidate_atom, bool mark_stale) -> caf::result<address, int, std::string, bool> {
            ShardState& st = self->state;
            st.open = false;
            if (mark_stale) st.stale.assign(st.stale.size(), true);
            // Host caches will be stale too: chunks resting in one go back to NVMe.
            for (chunk_index c = 0; c < st.chunks.size(); ++c) {
              if (!st.cache_valid[c]) continue;
              if (st.chunks[c].phase == Phase::kHome) {
                move(st, c, Residency::kOnHost, Residency::kAbsent);
                move(st, c, Residency::kAbsent, Residency::kOnNvme);
              }
            }
            st.cache_valid.assign(st.cache_valid.size(), false);
            auto reply = self->make_response_promise<address, int, std::string, bool>();
            if (loads_in_flight(st)) {
              st.quiesce_waiters.push_back(reply);
            } else {
              drop_all(st);
              reply.deliver(address{0}, 0, std::string(), false);
            }
            return reply;
          },
          [=](updated_atom, chunk_index c, bool cached) {
            ShardState& st = self->state;
            st.stale[c] = false;
            if (cached && st.setup.chunks[c].cache != nullptr && !st.cache_valid[c] &&
                st.chunks[c].phase == Phase::kHome) {
              move(st, c, Residency::kOnNvme, Residency::kAbsent);
              move(st, c, Residency::kAbsent, Residency::kOnHost);
              st.cache_valid[c] = true;
            }
            std::vector<Reply> fetches = std::move(st.waiting_update[c]);
            st.waiting_update[c].clear();
            for (Reply& r : fetches) serve(self, c, std::move(r));
            // A chunk with its own slot that was on the device goes back there now,
            // whether or not a step is open: it stays on the device between uses.
            if (st.reload[c] && st.failure.ok() && st.chunks[c].phase == Phase::kHome) {
              start_load(self, c, st.own_slot[c]);
            }
            const bool wanted = st.prefetch_wanted[c];
            st.prefetch_wanted[c] = false;
            if (!wanted) return;
            if (st.open && st.chunks[c].phase == Phase::kHome) {
              if (std::optional<int> slot = slot_for(st, c, Evict::kConsumedOnly)) {
                start_load(self, c, *slot);
              }
            }
          },
          [=](step_atom) { self->state.open = true; },
          [=](stats_atom) -> caf::result<uint64_t, uint64_t, uint64_t> {
            ShardState& st = self->state;
            return {st.fetches, st.waits, st.loads};
          }};
}

// ----------------------------------------------------------------- prefetch --

constexpr size_t kMaxOrderLength = size_t{1} << 16;

// The prefetcher's depth, written by the actor and read by stats(): a probe
// beside the typed protocol (messages.h), shared with ParamStreamer.
struct PrefetchProbe {
  std::atomic<uint64_t> max_chunks{0}, max_elements{0};
};

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

// ------------------------------------------------------------ ParamStreamer --

struct ParamStreamer::Impl {
  std::unique_ptr<ActorSystem> own_system;  // when the setup gave none
  ActorSystem* system = nullptr;
  std::unique_ptr<caf::scoped_actor> self;  // the model's thread
  nvme_swap_actor swap;
  uploader_actor uploader;
  param_shard_actor shard;
  prefetch_actor prefetch;
  std::shared_ptr<PrefetchProbe> probe = std::make_shared<PrefetchProbe>();
  uint64_t acquire_ns = 0;  // the model's thread in acquire(), waiting included
  uint64_t hit_ns = 0;      // ... in acquires of chunks already on the device
  uint64_t hits = 0;
};

ParamStreamer::ParamStreamer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<ParamStreamer>> ParamStreamer::create(StreamerSetup setup) {
  DSINF_CHECK(setup.staging.size() == setup.slots.size());
  std::vector<uint64_t> elements;
  std::vector<bool> own;
  for (const ChunkHome& home : setup.chunks) {
    // A chunk without a slot of its own needs a shared one; an own slot read
    // from NVMe straight into it needs a staging buffer of its own.
    DSINF_CHECK(home.own_slot != nullptr || !setup.slots.empty());
    DSINF_CHECK(home.own_slot == nullptr || home.host != nullptr || home.cache != nullptr ||
                home.own_staging != nullptr);
    elements.push_back(home.elements);
    own.push_back(home.own_slot != nullptr);
  }
  const uint64_t bucket = setup.prefetch_bucket_elements;
  auto impl = std::make_unique<Impl>();
  impl->system = setup.system;
  if (impl->system == nullptr) {
    impl->own_system = std::make_unique<ActorSystem>();
    impl->system = impl->own_system.get();
  }
  caf::actor_system& system = impl->system->get();
  impl->self = std::make_unique<caf::scoped_actor>(system);
  // One shared slot stays for the chunk in use.
  const size_t ahead = setup.slots.empty() ? 0 : setup.slots.size() - 1;
  // Detached: submitting to the engine blocks while its queue depth is reached.
  impl->swap = system.spawn<caf::detached>(nvme_swap);
  // Detached: a copy blocks its thread for the chunk's bytes.
  impl->uploader = system.spawn<caf::detached>(uploader, setup.backend);
  impl->shard = system.spawn(param_shard, std::move(setup), impl->swap, impl->uploader);
  impl->prefetch = system.spawn(prefetcher, impl->shard, ahead, bucket, std::move(elements),
                                std::move(own), impl->probe);
  return std::unique_ptr<ParamStreamer>(new ParamStreamer(std::move(impl)));
}

ParamStreamer::~ParamStreamer() {
  invalidate();  // no load in flight once this returns
  for (const caf::actor_addr& a : {impl_->prefetch.address(), impl_->shard.address(),
                                   impl_->swap.address(), impl_->uploader.address()}) {
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }
  // The system may be shared: wait for these actors alone.
  (*impl_->self)->wait_for(impl_->prefetch, impl_->shard, impl_->swap, impl_->uploader);
  impl_->self.reset();
  // A system ends once no handle to its actors remains.
  impl_->prefetch = nullptr;
  impl_->shard = nullptr;
  impl_->swap = nullptr;
  impl_->uploader = nullptr;
  impl_->own_system.reset();
}

absl::StatusOr<const float*> ParamStreamer::acquire(size_t c) {
  trace::Scope span(trace::Lane::kWait, "fetch", static_cast<int64_t>(c));
  const auto start = std::chrono::steady_clock::now();
  absl::Status status;
  address slot = 0;
  bool ready = false;
  // The access that triggers the next prefetch is sent once the reply is in:
  // that chunk's upload then runs beside the model's compute, not beside this
  // round trip (on two cores it would delay the reply by the whole copy).
  auto reply =
      (*impl_->self)
          ->request(impl_->shard, caf::infinite, fetch_atom::value, static_cast<chunk_index>(c));
  std::move(reply).receive(
      [&](address a, int code, std::string message, bool was_ready) {
        slot = a;
        ready = was_ready;
        if (code != 0) status = absl::Status(static_cast<absl::StatusCode>(code), message);
      },
      [&](caf::error& e) {
        status = absl::InternalError(absl::StrCat("param_shard: ", caf::to_string(e)));
      });
  const uint64_t ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
          .count());
  caf::anon_send(impl_->prefetch, access_atom::value, static_cast<chunk_index>(c));
  // A chunk already on the device: the whole round trip was messaging.
  if (ready) {
    impl_->hit_ns += ns;
    ++impl_->hits;
  }
  impl_->acquire_ns += ns;
  if (!status.ok()) return status;
  return reinterpret_cast<const float*>(slot);
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
      .receive([](address, int, std::string, bool) {}, [](caf::error&) {});
}

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
  return out;
}

}  // namespace dsinf::actors
