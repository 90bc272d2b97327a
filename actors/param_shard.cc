#include "actors/param_shard.h"

#include <deque>
#include <optional>
#include <string>
#include <utility>

#include "actors/system.h"
#include "memory/residency.h"
#include "memory/util/check.h"

namespace dsinf::actors {
namespace {

using memory::Residency;
using Reply = caf::typed_response_promise<Fetched>;

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
  ShardSetup setup;
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
  std::vector<caf::typed_response_promise<absl::Status>>
      quiesce_waiters;  // invalidate(): replied once no load is in flight
  // The first failed load, prefetched or not: every later fetch fails with it,
  // so a disk error stops training instead of being retried unseen.
  absl::Status failure;
};

// Where the chunk's bytes are when it is not on the device: its host home, a
// valid host cache, or NVMe.
Residency home_state(const ChunkHome& home, bool cache_valid) {
  // Another rank's chunk is counted as on the host: it arrives from its holder.
  return home.host != nullptr || cache_valid || home.remote ? Residency::kOnHost
                                                             : Residency::kOnNvme;
}

void move(ShardState& s, chunk_index c, Residency from, Residency to) {
  const absl::Status status = s.residency->transition(c, from, to);
  DSINF_CHECK_MSG(status.ok(), std::string(status.message()).c_str());
}

using ShardPointer = param_shard_actor::stateful_pointer<ShardState>;

// Chunk c is on the device: the model may take it from the board.
void post(ShardState& s, chunk_index c) {
  if (s.setup.board && !s.setup.chunks[c].remote && s.failure.ok()) {
    s.setup.board->post(c, s.setup.slots[s.chunks[c].slot]);
  }
}

// Whether chunk c's slot may be reused: false while a take of it awaits its
// `taken` message (the model holds it already).
bool withdraw(ShardState& s, chunk_index c) {
  return !s.setup.board || s.setup.board->withdraw(c);
}

bool loads_in_flight(const ShardState& s) {
  for (const ChunkSlot& c : s.chunks) {
    if (c.phase == Phase::kLoading) return true;
  }
  return false;
}

DeviceBuffer slot_of(const ShardState& s, int slot) { return DeviceBuffer{s.setup.slots[slot]}; }

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
      if (cs.phase == Phase::kReady && cs.users == 0 && (cs.used_since_load || !consumed_only) &&
          withdraw(s, c)) {
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
    DSINF_CHECK_MSG(cs.users == 0 && withdraw(s, c), "homes changed while the model holds a chunk");
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

// Copies chunk c from host memory into its slot, then finishes its load.
void start_upload(ShardPointer self, chunk_index c, const std::byte* host) {
  ShardState& s = self->state;
  const int slot = s.chunks[c].slot;
  UploadJob job;
  job.slot = slot_of(s, slot);
  job.area = s.setup.areas.empty() ? nullptr : s.setup.areas[slot];
  job.src = HostBuffer{const_cast<std::byte*>(host)};
  job.bytes = s.setup.chunks[c].bytes;
  job.elements = s.setup.chunks[c].elements;
  self->request(s.uploader, caf::infinite, upload_atom::value, c, job)
      .then([=](absl::Status status) { finish_load(self, c, status); });
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
  self->request(s.swap, caf::infinite, read_atom::value, home.swap, HostBuffer{target})
      .then([=](absl::Status status) {
        ShardState& st = self->state;
        if (!status.ok()) {
          move(st, c, Residency::kReading, Residency::kOnNvme);
          finish_load(self, c, status);
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
    if (s.failure.ok()) {
      s.failure = status;
      // Every later fetch fails with it, takes included.
      for (chunk_index k = 0; k < s.chunks.size(); ++k) (void)withdraw(s, k);
    }
    for (Reply& r : waiting) r.deliver(Fetched{status, {}, false});
  } else {
    move(s, c, Residency::kUploading, Residency::kOnDevice);
    cs.phase = Phase::kReady;
    post(s, c);
    for (Reply& r : waiting) {
      ++cs.users;
      cs.used_since_load = true;
      r.deliver(Fetched{absl::OkStatus(), slot_of(s, cs.slot), false});
    }
  }
  if (!loads_in_flight(s) && !s.quiesce_waiters.empty()) {
    drop_all(s);
    for (auto& r : s.quiesce_waiters) r.deliver(absl::OkStatus());
    s.quiesce_waiters.clear();
  }
  drain_blocked(self);
}

// Another rank's chunk: a shared slot now (or once one is released), for the
// caller to fill; nothing is loaded.
void serve_remote(ShardState& s, chunk_index c, Reply reply) {
  ChunkSlot& cs = s.chunks[c];
  DSINF_CHECK_MSG(cs.phase == Phase::kHome, "another rank's chunk fetched twice at once");
  const std::optional<int> slot = take_slot(s, Evict::kAny);
  if (!slot) {
    s.blocked.emplace_back(c, std::move(reply));
    return;
  }
  move(s, c, Residency::kOnHost, Residency::kUploading);
  move(s, c, Residency::kUploading, Residency::kOnDevice);
  cs.phase = Phase::kReady;
  cs.slot = *slot;
  cs.users = 1;
  cs.used_since_load = true;
  reply.deliver(Fetched{absl::OkStatus(), slot_of(s, cs.slot), false});
}

// Another rank's chunk, released: its slot is free again (the next fetch
// fills it anew).
void release_remote(ShardState& s, chunk_index c) {
  ChunkSlot& cs = s.chunks[c];
  move(s, c, Residency::kOnDevice, Residency::kAbsent);
  move(s, c, Residency::kAbsent, Residency::kOnHost);
  free_slot(s, c, cs.slot);
  cs = ChunkSlot{};
}

// A fetch: now if the chunk is on the device, later if it is loading or must wait for a slot.
void serve(ShardPointer self, chunk_index c, Reply reply) {
  ShardState& s = self->state;
  if (!s.failure.ok()) {
    reply.deliver(Fetched{s.failure, {}, false});
    return;
  }
  if (s.setup.chunks[c].remote) {
    serve_remote(s, c, std::move(reply));
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
      reply.deliver(Fetched{absl::OkStatus(), slot_of(s, cs.slot), true});
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

// The state of a new shard: every chunk at home, the shared slots free, and
// each persistent chunk's own slot (and read buffer) after the shared ones.
void set_up(ShardState& s, ShardSetup setup) {
  const size_t n = setup.chunks.size();
  s.chunks.resize(n);
  s.stale.assign(n, false);
  s.waiting_update.resize(n);
  s.cache_valid.assign(n, false);
  s.prefetch_wanted.assign(n, false);
  s.reload.assign(n, false);
  s.residency = std::make_unique<memory::ResidencyTable>(n);
  for (chunk_index c = 0; c < n; ++c) {
    move(s, c, Residency::kAbsent, home_state(setup.chunks[c], false));
  }
  // Only the shared slots are free for any chunk; own slots follow them.
  for (int i = static_cast<int>(setup.slots.size()) - 1; i >= 0; --i) s.free_slots.push_back(i);
  s.own_slot.assign(n, -1);
  for (chunk_index c = 0; c < n; ++c) {
    const ChunkHome& home = setup.chunks[c];
    if (home.own_slot == nullptr) continue;
    s.own_slot[c] = static_cast<int>(setup.slots.size());
    setup.slots.push_back(home.own_slot);
    setup.staging.push_back(home.own_staging);
    if (!setup.areas.empty()) setup.areas.push_back(home.own_area);
  }
  s.setup = std::move(setup);
}

void on_prefetch(ShardPointer self, chunk_index c) {
  ShardState& st = self->state;
  if (st.setup.chunks[c].remote) return;  // nothing here to load
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
}

// Homes are about to change: nothing more is prefetched, host caches are
// stale, and once no load is in flight every chunk goes back to its home.
caf::typed_response_promise<absl::Status> on_invalidate(ShardPointer self, bool mark_stale) {
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
  auto reply = self->make_response_promise<absl::Status>();
  if (loads_in_flight(st)) {
    st.quiesce_waiters.push_back(reply);
  } else {
    drop_all(st);
    reply.deliver(absl::OkStatus());
  }
  return reply;
}

// Chunk c's home is current (with `cached`, its host cache too): the fetches
// that waited for it are served, a persistent chunk goes back to its slot,
// and a prefetch asked for meanwhile starts.
void on_updated(ShardPointer self, chunk_index c, bool cached) {
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
  if (!wanted || !st.open || st.chunks[c].phase != Phase::kHome) return;
  if (std::optional<int> slot = slot_for(st, c, Evict::kConsumedOnly)) {
    start_load(self, c, *slot);
  }
}

param_shard_actor::behavior_type param_shard_behavior(ShardPointer self, ShardSetup setup,
                                                      nvme_swap_actor swap,
                                                      uploader_actor uploader) {
  set_up(self->state, std::move(setup));
  self->state.swap = std::move(swap);
  self->state.uploader = std::move(uploader);
  return {[=](fetch_atom, chunk_index c) -> caf::result<Fetched> {
            ShardState& st = self->state;
            // Another rank's chunk is no load: not counted.
            if (!st.setup.chunks[c].remote) {
              ++st.fetches;
              if (st.chunks[c].phase != Phase::kReady) ++st.waits;
            }
            auto reply = self->make_response_promise<Fetched>();
            serve(self, c, reply);
            return reply;
          },
          [=](prefetch_atom, chunk_index c) { on_prefetch(self, c); },
          [=](taken_atom, chunk_index c) {
            // A take from the board: a fetch of a chunk on the device.
            ShardState& st = self->state;
            DSINF_CHECK_MSG(st.chunks[c].phase == Phase::kReady, "a chunk taken off the device");
            ++st.fetches;
            ++st.chunks[c].users;
            st.chunks[c].used_since_load = true;
            // After a failed load every fetch fails: the chunk stays withdrawn.
            st.setup.board->confirm(c, st.failure.ok());
          },
          [=](release_atom, chunk_index c) {
            ShardState& st = self->state;
            DSINF_CHECK_MSG(st.chunks[c].users > 0, "release of a chunk not fetched");
            --st.chunks[c].users;
            if (st.setup.chunks[c].remote) release_remote(st, c);
            drain_blocked(self);
          },
          [=](invalidate_atom, bool mark_stale) -> caf::result<absl::Status> {
            return on_invalidate(self, mark_stale);
          },
          [=](updated_atom, chunk_index c, bool cached) { on_updated(self, c, cached); },
          [=](step_atom) { self->state.open = true; },
          [=](stats_atom) -> caf::result<uint64_t, uint64_t, uint64_t> {
            ShardState& st = self->state;
            return {st.fetches, st.waits, st.loads};
          }};
}

}  // namespace

param_shard_actor spawn_param_shard(ActorSystem& system, ShardSetup setup, nvme_swap_actor swap,
                                    uploader_actor uploader) {
  return system.get().spawn(param_shard_behavior, std::move(setup), std::move(swap),
                            std::move(uploader));
}

}  // namespace dsinf::actors
