#include "actors/optimizer.h"

#include <algorithm>
#include <cstring>
#include <deque>

#include "absl/strings/str_cat.h"
#include "actors/runtime/tier_copy.h"
#include "actors/system.h"
#include "kernels/cpu/adam.h"
#include "memory/util/check.h"
#include "memory/util/trace.h"

namespace dsinf::actors {
namespace {

using kernels::Stream;

enum class Command { kPreload, kStep, kDrain };

struct Queued {
  Command command = Command::kPreload;
  UpdateScalars scalars;
};

// One staging set: a chunk's optimizer state between NVMe and Adam.
struct PipelineSet {
  StagingBuffers buffers;
  size_t chunk = 0;             // the chunk it holds
  int64_t step = 0;             // ... for this optimizer step
  int reads = 0, writes = 0;    // requests in flight
  bool computed = false;        // updated, its writes not yet issued
  bool write_master = false;    // ... the master weights among them (not in the cache)
  bool report_written = false;  // the chunk is done once its writes end (uncached NVMe weights)
};

struct OptimizerState {
  OptimizerState() = default;
  OptimizerSetup setup;
  std::vector<PipelineSet> sets;  // state on NVMe: chunk c uses set c % size
  size_t next_read = 0;           // the next chunk whose state is read ahead
  std::deque<Queued> queue;       // commands not started yet
  bool busy = false;              // a step or a drain is under way
  Command current = Command::kPreload;
  kernels::AdamHyper hyper;
  size_t cursor = 0;            // the step's next chunk to update
  bool finishing = false;       // every chunk updated: the last writes are draining
  int publishing = 0;           // new working weights on their way to NVMe (0 or 1)
  size_t publishing_chunk = 0;  // ... of this chunk
  int64_t snapshot_wait_begin_ns = -1;
  absl::Status error;   // the command's first error
  absl::Status failed;  // sticky: the first error of any command
};

using Self = optimizer_actor::stateful_pointer<OptimizerState>;

void pump(Self self);
void start_next(Self self);

ChunkStore& store(Self self) { return *self->state.setup.store; }

// Chunk c's update of `step` is in its homes; `new_params` (host) are its new
// weights, which refresh its host cache, if any. The shard hears first: the
// model's fetch, sent once the gate opens, reaches its mailbox behind this.
void chunk_done(Self self, size_t c, int64_t step, const void* new_params) {
  ChunkStore& st = store(self);
  const bool cached = new_params != nullptr && st.cache(c) != nullptr;
  if (cached) {
    if (reinterpret_cast<const void*>(new_params) != st.cache(c)) {
      std::memcpy(st.cache(c), new_params, st.working_bytes(c));
    }
    st.set_cache_current(c);
  }
  if (self->state.setup.shard) self->send(self->state.setup.shard, updated_atom::value, c, cached);
  self->state.setup.gates->chunk_done(c, step);
}

int io_in_flight(const OptimizerState& s) {
  int n = s.publishing;
  for (const PipelineSet& set : s.sets) n += set.reads + set.writes;
  return n;
}

// One swap request of set `index` (or of the publishing of new weights, -1).
void swap_io(Self self, int index, SwapChunk chunk, std::byte* buffer, bool write) {
  OptimizerState& s = self->state;
  auto done = [self, index, write](absl::Status status) {
    OptimizerState& st = self->state;
    st.error.Update(status);
    if (index < 0) {
      --st.publishing;
      if (status.ok()) chunk_done(self, st.publishing_chunk, st.hyper.step, nullptr);
    } else {
      PipelineSet& set = st.sets[index];
      --(write ? set.writes : set.reads);
      if (write && set.writes == 0 && set.report_written && status.ok()) {
        chunk_done(self, set.chunk, set.step, reinterpret_cast<const float*>(set.buffers.master));
        set.report_written = false;
      }
    }
    pump(self);
  };
  auto failed = [done](caf::error& e) {
    done(absl::InternalError(absl::StrCat("nvme_swap: ", caf::to_string(e))));
  };
  if (write) {
    self->request(s.setup.swap, caf::infinite, write_atom::value, chunk, HostBuffer{buffer})
        .then(done, failed);
  } else {
    self->request(s.setup.swap, caf::infinite, read_atom::value, chunk, HostBuffer{buffer})
        .then(done, failed);
  }
}

// Starts the reads of chunk c's state into its set (no I/O pending on it).
void issue_reads(Self self, size_t c) {
  OptimizerState& s = self->state;
  ChunkStore& st = store(self);
  const int index = static_cast<int>(c % s.sets.size());
  PipelineSet& set = s.sets[index];
  DSINF_CHECK(set.reads == 0 && set.writes == 0 && !set.computed);
  set.chunk = c;
  set.report_written = false;
  if (!st.trainable(c)) return;
  if (!st.master_in_cache(c) && set.buffers.master == nullptr) {
    s.error.Update(absl::InternalError(
        absl::StrCat("chunk ", c,
                     ": its master weights are neither cached on the host nor given a staging "
                     "buffer")));
    return;
  }
  set.reads += 2;
  swap_io(self, index, st.m().swap_chunk(c), set.buffers.m, /*write=*/false);
  swap_io(self, index, st.v().swap_chunk(c), set.buffers.v, /*write=*/false);
  if (!st.master_in_cache(c)) {
    ++set.reads;
    swap_io(self, index, st.master().swap_chunk(c), set.buffers.master, /*write=*/false);
  }
}

// Issues the writes of a computed set (once).
void write_back(Self self, int index) {
  PipelineSet& set = self->state.sets[index];
  if (!set.computed) return;
  set.computed = false;
  ChunkStore& st = store(self);
  set.writes += set.write_master ? 3 : 2;
  swap_io(self, index, st.m().swap_chunk(set.chunk), set.buffers.m, /*write=*/true);
  swap_io(self, index, st.v().swap_chunk(set.chunk), set.buffers.v, /*write=*/true);
  if (set.write_master) {
    swap_io(self, index, st.master().swap_chunk(set.chunk), set.buffers.master, /*write=*/true);
  }
}

// The next chunk's reads into its set, once that set is written back.
bool refill(Self self) {
  OptimizerState& s = self->state;
  const int index = static_cast<int>(s.next_read % s.sets.size());
  write_back(self, index);
  if (s.sets[index].writes > 0) return false;
  issue_reads(self, s.next_read);
  ++s.next_read;
  return s.error.ok();
}

// Chunk c's state is staged. While its reads are in flight, the coming
// chunks' sets are written back and refilled, one at a time.
bool staged(Self self, size_t c) {
  OptimizerState& s = self->state;
  const size_t n = store(self).chunks(), depth = s.sets.size();
  while (s.next_read <= c) {
    if (!refill(self)) return false;
  }
  const PipelineSet& set = s.sets[c % depth];
  while (set.reads > 0 && s.next_read < std::min(n, c + depth)) {
    if (!refill(self)) break;
  }
  return set.reads == 0 && s.error.ok();
}

// Where a host Adam writes chunk c's new working copy when it is stored in
// bf16/fp16 (fused_adam_step's params_copy): straight into its host home or
// host cache, else into the parameter staging on its way to NVMe or the
// device. Null with fp32: the master weights are the new working copy.
std::byte* working_target(ChunkStore& st, size_t c) {
  if (!st.reduced()) return nullptr;
  ClassHome& params = st.params();
  if (params.tier == Tier::kHost) return params.host[c];
  if (params.tier == Tier::kNvme && st.cache(c) != nullptr) return st.cache(c);
  return st.param_staging();
}

// The new weights of chunk c (host memory, in the working dtype) to its
// working copy's home, then it is done: in place when they are the working
// copy, into its host cache, copied to the host or the device, or (uncached
// on NVMe) written, done once written.
absl::Status publish(Self self, size_t c, const void* weights) {
  ChunkStore& st = store(self);
  const int64_t step = self->state.hyper.step;
  ClassHome& params = st.params();
  if (st.master_is_params() || (params.tier == Tier::kNvme && st.cache(c) != nullptr)) {
    chunk_done(self, c, step, weights);
    return absl::OkStatus();
  }
  if (params.tier == Tier::kNvme) {
    // Done once written (swap_io): the next step reads them from there. The
    // loop waits for the write before the next chunk reuses the buffer.
    ++self->state.publishing;
    self->state.publishing_chunk = c;
    swap_io(self, -1, params.swap_chunk(c),
            const_cast<std::byte*>(static_cast<const std::byte*>(weights)), /*write=*/true);
    return absl::OkStatus();
  }
  if (absl::Status s = put_working(*self->state.setup.backend, st, c, weights); !s.ok()) return s;
  chunk_done(self, c, step, weights);
  return absl::OkStatus();
}

// ---- one chunk's update, by where its optimizer state lives ----

// With bf16/fp16 working weights Adam also writes their new copy (working_target).
kernels::cpu::AdamBuffers host_buffers(ChunkStore& st, size_t c, float* master, std::byte* m,
                                       std::byte* v) {
  kernels::cpu::AdamBuffers b;
  b.n = st.numel(c);
  b.params = master;
  b.grads = st.grads().host[c];
  b.m = m;
  b.v = v;
  b.params_copy = working_target(st, c);
  b.copy_dtype = st.working_dtype();
  return b;
}

absl::Status update_on_host(Self self, size_t c) {
  ChunkStore& st = store(self);
  kernels::cpu::AdamBuffers b = host_buffers(st, c, reinterpret_cast<float*>(st.master().host[c]),
                                             st.m().host[c], st.v().host[c]);
  {
    trace::Scope span(trace::Lane::kAdam, "adam", static_cast<int64_t>(c));
    kernels::cpu::fused_adam_step(b, self->state.hyper);
  }
  return publish(self, c, b.params_copy != nullptr ? b.params_copy : b.params);
}

// A device Adam's new weights rounded to the working dtype in the store's
// param_area, then into the fp32 working copy on the device (queued on the
// compute stream the next forward uses), or downloaded to the host.
absl::Status publish_from_device(Self self, size_t c) {
  ChunkStore& st = store(self);
  kernels::Backend& backend = *self->state.setup.backend;
  ClassHome& params = st.params();
  const size_t n = st.numel(c);
  const kernels::DType type = st.working_dtype();
  if (absl::Status s = backend.convert(st.master().device[c], kernels::DType::kF32,
                                       st.param_area(), type, n, Stream::kCompute);
      !s.ok()) {
    return s;
  }
  if (params.tier == Tier::kDevice) {
    if (absl::Status s = backend.convert(st.param_area(), type, params.device[c],
                                         kernels::DType::kF32, n, Stream::kCompute);
        !s.ok()) {
      return s;
    }
    chunk_done(self, c, self->state.hyper.step, nullptr);
    return absl::OkStatus();
  }
  std::byte* dst = working_target(st, c);
  backend.stream_wait(Stream::kDownload, backend.record(Stream::kCompute));
  if (absl::Status s = backend.copy_to_host(dst, st.param_area(), n * kernels::dtype_bytes(type),
                                            Stream::kDownload);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = backend.synchronize(Stream::kDownload); !s.ok()) return s;
  return publish(self, c, dst);
}

absl::Status update_on_device(Self self, size_t c) {
  ChunkStore& st = store(self);
  kernels::Backend& backend = *self->state.setup.backend;
  ClassHome& master = st.master();
  {
    trace::Scope span(trace::Lane::kAdam, "adam (device)", static_cast<int64_t>(c));
    backend.adam_step(master.device[c], st.grads().device[c], st.m().device[c], st.v().device[c],
                      st.numel(c), self->state.hyper);
  }
  if (st.master_is_params()) {
    chunk_done(self, c, self->state.hyper.step, nullptr);
    return absl::OkStatus();
  }
  if (st.reduced()) return publish_from_device(self, c);
  // The new weights to the working copy's home: straight into its host block,
  // or through staging on the way to NVMe (or only to its host cache).
  ClassHome& params = st.params();
  std::byte* dst = params.tier == Tier::kHost ? params.host[c] : st.param_staging();
  absl::StatusOr<float*> weights = host_view(backend, master, c, st.bytes(c), dst);
  if (!weights.ok()) return weights.status();
  return publish(self, c, *weights);
}

// Adam on a staged set; its writes wait until the set is wanted again (or the
// step ends), unless the next step reads the new weights from NVMe.
absl::Status update_from_staging(Self self, size_t c) {
  OptimizerState& s = self->state;
  ChunkStore& st = store(self);
  const int index = static_cast<int>(c % s.sets.size());
  PipelineSet& set = s.sets[index];
  const bool in_cache = st.master_in_cache(c);
  float* master = reinterpret_cast<float*>(in_cache ? st.cache(c) : set.buffers.master);
  kernels::cpu::AdamBuffers b = host_buffers(st, c, master, set.buffers.m, set.buffers.v);
  {
    trace::Scope span(trace::Lane::kAdam, "adam", static_cast<int64_t>(c));
    kernels::cpu::fused_adam_step(b, s.hyper);
  }
  set.step = s.hyper.step;
  set.computed = true;
  set.write_master = !in_cache;
  if (!st.master_is_params()) {
    // A working copy of its own: fp32 on the host or the device, or (bf16,
    // fp16) the copy Adam wrote, wherever it lives.
    return publish(self, c, b.params_copy != nullptr ? b.params_copy : b.params);
  }
  if (st.params().tier != Tier::kNvme || st.cache(c) != nullptr) {
    chunk_done(self, c, s.hyper.step, b.params);
  } else {
    set.report_written = true;
    write_back(self, index);
  }
  return absl::OkStatus();
}

absl::Status update(Self self, size_t c) {
  ChunkStore& st = store(self);
  if (!st.trainable(c)) {
    chunk_done(self, c, self->state.hyper.step, nullptr);
    return absl::OkStatus();
  }
  switch (st.master().tier) {
    case Tier::kNvme:
      return update_from_staging(self, c);
    case Tier::kHost:
      return update_on_host(self, c);
    case Tier::kDevice:
      return update_on_device(self, c);
  }
  return absl::InternalError("unknown tier");
}

// ---- the loop ----

// A background save of an earlier step has not read chunk c yet: wait for it
// (a resume message comes when it has).
bool snapshot_lets(Self self, size_t c) {
  OptimizerState& s = self->state;
  const bool allowed = s.setup.gates->snapshot_allows(c, s.hyper.step);
  if (!allowed) {
    if (s.snapshot_wait_begin_ns < 0) s.snapshot_wait_begin_ns = trace::now_ns();
    return false;
  }
  if (s.snapshot_wait_begin_ns >= 0) {
    const int64_t end = trace::now_ns();
    s.setup.gates->add_snapshot_wait_ns(end - s.snapshot_wait_begin_ns);
    trace::record(trace::Lane::kWait, "checkpoint reads chunk", static_cast<int64_t>(c),
                  s.snapshot_wait_begin_ns, end);
    s.snapshot_wait_begin_ns = -1;
  }
  return true;
}

// Updates chunks in order as far as their state, the snapshot and the last
// publishing allow; returns when one of them is still to come.
void advance(Self self) {
  OptimizerState& s = self->state;
  ChunkStore& st = store(self);
  const bool on_nvme = st.master().tier == Tier::kNvme && !s.sets.empty();
  while (s.cursor < st.chunks() && s.error.ok()) {
    const size_t c = s.cursor;
    if (s.publishing > 0) return;
    if (on_nvme && !staged(self, c)) return;
    if (!snapshot_lets(self, c)) return;
    s.error.Update(update(self, c));
    if (s.error.ok()) ++s.cursor;
  }
}

// The step or drain under way goes as far as it can; once its I/O is over,
// it ends and the next command starts.
void pump(Self self) {
  OptimizerState& s = self->state;
  if (!s.busy) return;
  if (s.current == Command::kStep && s.error.ok()) {
    advance(self);
    if (s.cursor < store(self).chunks() || s.publishing > 0) {
      if (s.error.ok()) return;
    } else if (!s.finishing && s.error.ok()) {
      s.finishing = true;
      for (size_t i = 0; i < s.sets.size(); ++i) write_back(self, static_cast<int>(i));
    }
  }
  if (io_in_flight(s) > 0) return;
  // Everything drained: the sets are free for the next command.
  for (PipelineSet& set : s.sets) {
    set.computed = false;
    set.report_written = false;
  }
  s.next_read = 0;
  s.failed.Update(s.error);
  const bool step_ok = s.current == Command::kStep && s.error.ok();
  s.busy = false;
  s.setup.gates->command_done(s.error, step_ok ? s.hyper.step : 0);
  s.error = absl::OkStatus();
  start_next(self);
}

// ---- the commands ----

// Reading optimizer state needs no gradient: the first sets fill while the
// step's last micro-batch computes.
void preload(Self self) {
  OptimizerState& s = self->state;
  ChunkStore& st = store(self);
  if (st.master().tier != Tier::kNvme || s.sets.empty() || !s.failed.ok()) {
    s.setup.gates->command_done(s.failed);
    return;
  }
  DSINF_CHECK(s.next_read == 0);
  const size_t first = std::min(s.sets.size(), st.chunks());
  for (; s.next_read < first && s.error.ok(); ++s.next_read) issue_reads(self, s.next_read);
  if (s.error.ok()) {
    s.setup.gates->command_done(absl::OkStatus());
    return;
  }
  // What was issued drains, then the error is reported.
  s.busy = true;
  s.current = Command::kDrain;
  pump(self);
}

void begin_step(Self self, const UpdateScalars& scalars) {
  OptimizerState& s = self->state;
  if (!s.failed.ok()) {
    s.setup.gates->command_done(s.failed);
    return;
  }
  s.busy = true;
  s.current = Command::kStep;
  s.hyper = adam_hyper(s.setup.adam, scalars.lr, scalars.step, scalars.grad_scale);
  s.cursor = 0;
  s.finishing = false;
  pump(self);
}

void start_next(Self self) {
  OptimizerState& s = self->state;
  while (!s.busy && !s.queue.empty()) {
    const Queued q = s.queue.front();
    s.queue.pop_front();
    switch (q.command) {
      case Command::kPreload:
        preload(self);
        break;
      case Command::kStep:
        begin_step(self, q.scalars);
        break;
      case Command::kDrain:  // the reads ahead are only reads: dropping them changes nothing
        s.busy = true;
        s.current = Command::kDrain;
        pump(self);
        break;
    }
  }
}

void enqueue(Self self, Queued q) {
  self->state.queue.push_back(q);
  start_next(self);
}

optimizer_actor::behavior_type optimizer(Self self, OptimizerSetup setup) {
  OptimizerState& s = self->state;
  for (const StagingBuffers& buffers : setup.store->optimizer_sets()) {
    s.sets.push_back(PipelineSet{});
    s.sets.back().buffers = buffers;
  }
  s.setup = std::move(setup);
  return {[=](preload_atom) {
            enqueue(self, {Command::kPreload, {}});
          },
          [=](step_atom, UpdateScalars scalars) {
            enqueue(self, {Command::kStep, scalars});
          },
          [=](cancel_atom) {
            enqueue(self, {Command::kDrain, {}});
          },
          [=](resume_atom) { pump(self); }};
}

}  // namespace

optimizer_actor spawn_optimizer(ActorSystem& system, OptimizerSetup setup) {
  return system.get().spawn<caf::detached>(optimizer, std::move(setup));
}

}  // namespace dsinf::actors
