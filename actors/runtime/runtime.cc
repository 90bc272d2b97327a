#include "actors/runtime/runtime.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "actors/nvme_swap.h"
#include "actors/optimizer.h"
#include "actors/runtime/backend_choice.h"
#include "actors/runtime/partition.h"
#include "actors/runtime/tier_copy.h"
#include "actors/trainer.h"
#include "kernels/cpu/adam.h"
#include "memory/aligned_buffer.h"
#include "memory/util/check.h"
#include "memory/util/trace.h"

namespace dsinf::actors {

using kernels::Stream;

Runtime::Runtime(const RuntimeSpec& spec)
    : spec_(spec), loss_scaler_(spec.step.loss_scale), system_(std::make_unique<ActorSystem>()) {}

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::create(const RuntimeSpec& spec,
                                                         const ModelDef& model) {
  std::unique_ptr<Runtime> rt(new Runtime(spec));
  if (absl::Status s = rt->start(model); !s.ok()) return s;
  return rt;
}

// The plan, the backend, the model's activations, the homes, then the actors.
absl::Status Runtime::start(const ModelDef& model) {
  std::vector<memory::ChunkLayout> all = model.layouts();
  // Without training every chunk is frozen: parameters only.
  if (!spec_.training) {
    for (memory::ChunkLayout& layout : all) layout.set_trainable(false);
  }
  // With several ranks at stage >= 1, the chunks other ranks own are held frozen.
  // At stage 3 those chunks, and the frozen chunks other ranks hold, are not
  // held at all.
  std::vector<memory::ChunkLayout> layouts =
      rank_layouts(all, rank(), ranks(), spec_.zero_stage, partitions_params());
  const int micro_batch = spec_.step.micro_batch;
  visits_expected_.resize(all.size());
  for (size_t c = 0; c < all.size(); ++c) {
    visits_expected_[c] = model.grad_visits(c);
    DSINF_CHECK(visits_expected_[c] >= 1);
  }
  exchange_ = exchange_staging(all, visits_expected_, ranks(), spec_.training,
                               spec_.placement.grads == Tier::kDevice, spec_.exchange);
  absl::StatusOr<MemoryPlan> plan = plan_memory(spec_.placement, spec_.budgets, layouts,
                                                model.activation_bytes(micro_batch), exchange_);
  if (!plan.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(spec_.source, ": ", plan.status().message()));
  }
  plan_ = *plan;
  kernels::BackendOptions options = spec_.backend;
  options.device_budget_bytes = spec_.budgets.device_bytes;
  absl::StatusOr<BackendChoice> choice = make_backend(spec_.device, options);
  if (!choice.ok()) return choice.status();
  backend_ = std::move(choice->backend);
  device_description_ = std::move(choice->description);
  cuda_device_ = std::move(choice->cuda_device);
  absl::StatusOr<std::unique_ptr<LayerProgram>> program =
      model.instantiate(backend_.get(), micro_batch);
  if (!program.ok()) return program.status();
  model_ = *std::move(program);
  absl::StatusOr<std::unique_ptr<ChunkStore>> store =
      ChunkStore::create(backend_.get(), spec_, plan_, layouts);
  if (!store.ok()) return store.status();
  store_ = *std::move(store);
  gates_ = std::make_unique<ChunkGates>(layouts.size());
  grads_fresh_.assign(layouts.size(), false);
  if (absl::Status s = start_ranks(all); !s.ok()) return s;
  if (absl::Status s = start_actors(); !s.ok()) return s;
  model_->set_chunk_source(this);
  return absl::OkStatus();
}

absl::Status Runtime::start_actors() {
  if (store_->engine() != nullptr) {
    swap_ = spawn_nvme_swap(*system_);
    if (absl::Status s = zero_nvme_moments(); !s.ok()) return s;
  }
  if (spec_.placement.params != Tier::kDevice) {
    StreamerSetup setup;
    setup.system = system_.get();
    setup.backend = backend_.get();
    setup.swap = swap_;
    ShardSetup shard = store_->shard_setup();
    setup.chunks = std::move(shard.chunks);
    setup.slots = std::move(shard.slots);
    setup.staging = std::move(shard.staging);
    setup.areas = std::move(shard.areas);
    setup.working_dtype = store_->working_dtype();
    setup.prefetch_bucket_elements =
        static_cast<uint64_t>(std::max<int64_t>(spec_.placement.param_prefetch_bucket, 0));
    absl::StatusOr<std::unique_ptr<ParamStreamer>> streamer = ParamStreamer::create(setup);
    if (!streamer.ok()) return streamer.status();
    streamer_ = *std::move(streamer);
  }
  if (!spec_.training) return absl::OkStatus();
  OptimizerSetup optimizer;
  optimizer.backend = backend_.get();
  optimizer.store = store_.get();
  optimizer.gates = gates_.get();
  optimizer.swap = swap_;
  if (streamer_) optimizer.shard = streamer_->shard();
  optimizer.adam = spec_.adam;
  optimizer_ = spawn_optimizer(*system_, std::move(optimizer));
  trainer_ = spawn_trainer(*system_, this);
  return absl::OkStatus();
}

// A swap chunk must be written before it can be read: moments start at zero.
absl::Status Runtime::zero_nvme_moments() {
  const std::vector<SwapChunk> chunks = store_->unwritten_moments();
  if (chunks.empty()) return absl::OkStatus();
  const std::byte* zeros = store_->zeros();
  for (const SwapChunk& chunk : chunks) {
    if (absl::Status s = swap_write_blocking(*system_, swap_, chunk, zeros); !s.ok()) return s;
  }
  return absl::OkStatus();
}

Runtime::~Runtime() {
  caf::scoped_actor self(system_->get());
  auto stop = [&](auto& actor) {
    if (!actor) return;
    caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
    self->wait_for(actor);
    actor = nullptr;
  };
  stop(trainer_);
  if (optimizer_) {
    command(cancel_atom::value);  // state read ahead for a step that will not come
    (void)gates_->wait_idle();    // every command over, its I/O drained
  }
  stop(optimizer_);
  streamer_.reset();  // no read in flight into the slots or staging after this
  stop(swap_);
  overlapped_.reset();  // its buffers are the host pool's
  device_exchange_ = nullptr;
  device_comm_.reset();  // NCCL's, on the backend's device
  store_.reset();
  if (rank_device_ != nullptr) backend_->release(rank_device_);
  for (RemoteSlot& slot : remote_slots_) backend_->release(slot.data);
  model_.reset();
  backend_.reset();
}

// ---- host <-> home ----

absl::StatusOr<float*> Runtime::to_host(const ClassHome& home, size_t c, std::byte* staging) {
  DSINF_CHECK_MSG(&home != &store_->params() || store_->master_is_params(),
                  "working parameters are read through read_working");
  if (home.tier != Tier::kNvme) return host_view(*backend_, home, c, store_->bytes(c), staging);
  if (absl::Status s = swap_read_blocking(*system_, swap_, home.swap_chunk(c), staging); !s.ok()) {
    return s;
  }
  return reinterpret_cast<float*>(staging);
}

absl::Status Runtime::from_host(ClassHome& home, size_t c, const float* src) {
  if (home.tier != Tier::kNvme) return copy_into_home(*backend_, home, c, store_->bytes(c), src);
  return swap_write_blocking(*system_, swap_, home.swap_chunk(c),
                             reinterpret_cast<const std::byte*>(src));
}

// The working copy as fp32 in `dst` (bytes(c), page-padded with zeros): from
// the host cache, the host home or NVMe (widened from the working dtype), or
// downloaded from the device, where it is fp32.
absl::Status Runtime::read_working(size_t c, float* dst) {
  ClassHome& params = store_->params();
  const size_t n = store_->numel(c);
  std::memset(dst, 0, store_->bytes(c));
  if (params.tier == Tier::kDevice) {
    absl::StatusOr<float*> p =
        host_view(*backend_, params, c, store_->bytes(c), reinterpret_cast<std::byte*>(dst));
    if (!p.ok()) return p.status();
    if (*p != dst) std::memcpy(dst, *p, store_->bytes(c));
    return absl::OkStatus();
  }
  memory::AlignedBuffer read;
  const std::byte* src = nullptr;
  if (store_->cache_current(c)) {
    src = store_->cache(c);
  } else if (params.tier == Tier::kHost) {
    src = params.host[c];
  } else {
    absl::StatusOr<memory::AlignedBuffer> buffer =
        memory::AlignedBuffer::allocate(store_->working_bytes(c));
    if (!buffer.ok()) return buffer.status();
    read = *std::move(buffer);
    if (absl::Status s = swap_read_blocking(*system_, swap_, params.swap_chunk(c), read.data());
        !s.ok()) {
      return s;
    }
    src = read.data();
  }
  kernels::cpu::convert(src, store_->working_dtype(), dst, kernels::DType::kF32, 1.0f, n);
  return absl::OkStatus();
}

// Chunk c's working copy from fp32 weights `src`: rounded to the working
// dtype, into its home and its host cache.
absl::Status Runtime::write_working(size_t c, const float* src) {
  ClassHome& params = store_->params();
  if (!store_->reduced()) {
    if (absl::Status s = from_host(params, c, src); !s.ok()) return s;
    if (store_->cache(c) != nullptr) {
      std::memcpy(store_->cache(c), src, store_->bytes(c));
      store_->set_cache_current(c);
    }
    return absl::OkStatus();
  }
  absl::StatusOr<memory::AlignedBuffer> narrow =
      memory::AlignedBuffer::allocate(store_->working_bytes(c));
  if (!narrow.ok()) return narrow.status();
  kernels::cpu::convert(src, kernels::DType::kF32, narrow->data(), store_->working_dtype(), 1.0f,
                        store_->numel(c));
  absl::Status s = params.tier == Tier::kNvme
                       ? swap_write_blocking(*system_, swap_, params.swap_chunk(c), narrow->data())
                       : put_working(*backend_, *store_, c, narrow->data());
  if (!s.ok()) return s;
  if (store_->cache(c) != nullptr) {
    std::memcpy(store_->cache(c), narrow->data(), store_->working_bytes(c));
    store_->set_cache_current(c);
  }
  return absl::OkStatus();
}

ClassHome& Runtime::home_of(int cls, size_t c) {
  if (cls == kMClass) return store_->m();
  if (cls == kVClass) return store_->v();
  return store_->trainable(c) ? store_->master() : store_->params();
}

// ---- the step ----

absl::StatusOr<StepOutcome> Runtime::step(StepRequest request) {
  DSINF_CHECK_MSG(trainer_, "a step of a runtime made without training");
  caf::scoped_actor self(system_->get());
  absl::StatusOr<StepOutcome> out = absl::InternalError("the trainer actor did not reply");
  self->request(trainer_, caf::infinite, step_atom::value, std::move(request))
      .receive(
          [&](StepOutcome outcome, absl::Status status) {
            if (status.ok()) {
              out = std::move(outcome);
            } else {
              out = std::move(status);
            }
          },
          [&](caf::error& e) {
            out = absl::InternalError("the trainer actor failed: " + caf::to_string(e));
          });
  return out;
}

void Runtime::begin_step() {
  if (streamer_) streamer_->begin_step();
  for (size_t c = 0; c < grads_fresh_.size(); ++c) grads_fresh_[c] = store_->trainable(c);
}

void Runtime::last_micro_batch() {
  if (!optimizer_ || spec_.placement.optimizer != Tier::kNvme) return;
  command(preload_atom::value);
}

absl::StatusOr<double> Runtime::grad_norm() {
  // overlap_comm: the last visits' reductions complete (their owners add them).
  if (overlapped_) {
    const auto t0 = std::chrono::steady_clock::now();
    if (absl::Status s = overlapped_->drain(); !s.ok()) return s;
    exchange_ns_ += (std::chrono::steady_clock::now() - t0).count();
  }
  if (absl::Status s = gates_->wait_idle(); !s.ok()) return s;
  if (ranks() > 1 && spec_.zero_stage == 0) {
    if (absl::Status s = share_grads(); !s.ok()) return s;
  }
  for (size_t c = 0; c < grads_fresh_.size(); ++c) {
    DSINF_CHECK_MSG(!grads_fresh_[c], "a chunk received no gradient this step");
  }
  const ClassHome& grads = store_->grads();
  std::vector<double> squares(store_->chunks(), 0.0);
  for (size_t c = 0; c < store_->chunks(); ++c) {
    if (!store_->trainable(c)) continue;
    // The backend's sum_squares is this same kernel on the CPU backend.
    squares[c] =
        grads.tier == Tier::kDevice
            ? backend_->sum_squares(grads.device[c], store_->numel(c))
            : kernels::cpu::grad_stats(grads.host[c], kernels::cpu::DType::kF32, store_->numel(c))
                  .sum_squares;
  }
  absl::StatusOr<std::vector<double>> all = owners_values(std::move(squares));
  if (!all.ok()) return all.status();
  // Summed in chunk order, whichever rank computed each.
  double sum = 0;
  for (size_t c = 0; c < all->size(); ++c) sum += (*all)[c];
  return std::sqrt(sum);
}

absl::Status Runtime::update(double lr, float grad_scale) {
  if (absl::Status s = gates_->wait_idle(); !s.ok()) return s;
  // No parameter chunk may be read while the optimizer rewrites the homes.
  if (streamer_) streamer_->invalidate();
  const int64_t step = gates_->issue_step();
  command(step_atom::value, UpdateScalars{lr, step, grad_scale});
  // Several ranks: each updated what it owns, and the new weights go round
  // (at stage 3 they go to the other ranks each time the model uses them).
  if (ranks() > 1 && spec_.zero_stage >= 1 && !partitions_params()) return share_params();
  // On the device Adam queues on the compute stream the next forward uses:
  // the update completes before the step returns.
  if (spec_.placement.optimizer == Tier::kDevice) return gates_->wait_idle();
  return absl::OkStatus();
}

absl::Status Runtime::skip_update() {
  command(cancel_atom::value);
  return gates_->wait_idle();
}

// ---- ChunkSource: forward and backward ----

// Stage 3 with several ranks: another rank's chunk comes from its holder into
// a remote slot; a chunk this rank holds goes to the others once it is here.
absl::StatusOr<const float*> Runtime::acquire_params(size_t c) {
  if (absl::Status s = gates_->wait_updated(c); !s.ok()) return s;
  if (remote(c)) return receive_params(c);
  absl::StatusOr<const float*> mine =
      streamer_ ? streamer_->acquire(c) : absl::StatusOr<const float*>(store_->params().device[c]);
  if (!mine.ok() || !partitions_params()) return mine;
  if (absl::Status s = send_params(c, *mine); !s.ok()) return s;
  return mine;
}

absl::Status Runtime::release_params(size_t c) {
  if (remote(c)) return release_remote(c);
  if (streamer_) streamer_->release(c);
  return absl::OkStatus();
}

absl::Status Runtime::accumulate_grads(size_t c, const float* visit) {
  if (!model_trainable_[c]) return absl::OkStatus();
  // With bf16/fp16 the visit is rounded to that type first, wherever the
  // accumulator lives, so every placement adds the same values.
  const void* add = visit;
  if (store_->reduced()) {
    if (absl::Status s =
            backend_->convert(visit, kernels::DType::kF32, store_->visit_area(),
                              store_->working_dtype(), store_->numel(c), Stream::kCompute);
        !s.ok()) {
      return s;
    }
    add = store_->visit_area();
  }
  if (ranks() > 1) {
    const auto t0 = std::chrono::steady_clock::now();
    absl::Status s = reduce_visit(c, add);
    exchange_ns_ += (std::chrono::steady_clock::now() - t0).count();
    return s;
  }
  if (absl::Status s = start_accumulator(c); !s.ok()) return s;
  return add_visit(c, add);
}

absl::Status Runtime::start_accumulator(size_t c) {
  if (!grads_fresh_[c]) return absl::OkStatus();
  // The first visit of the step: the accumulator starts at +0 once the last
  // step's optimizer is done reading it.
  if (absl::Status s = gates_->wait_updated(c); !s.ok()) return s;
  ClassHome& grads = store_->grads();
  if (grads.tier == Tier::kDevice) {
    if (absl::Status s = backend_->fill_zero(grads.device[c], store_->bytes(c), Stream::kCompute);
        !s.ok()) {
      return s;
    }
  } else {
    std::memset(grads.host[c], 0, store_->bytes(c));
  }
  grads_fresh_[c] = false;
  return absl::OkStatus();
}

absl::Status Runtime::add_visit(size_t c, const void* add) {
  ClassHome& grads = store_->grads();
  const size_t n = store_->numel(c);
  const kernels::DType type = store_->working_dtype();
  if (grads.tier == Tier::kDevice) {
    if (!store_->reduced()) {
      backend_->residual_forward(grads.device[c], grads.device[c], static_cast<const float*>(add),
                                 n);
      return absl::OkStatus();
    }
    return backend_->accumulate(grads.device[c], add, type, n, Stream::kCompute);
  }
  trace::Scope span(trace::Lane::kCopyOut, "gradient to host", static_cast<int64_t>(c));
  float* acc = reinterpret_cast<float*>(grads.host[c]);
  if (!backend_->device_memory_is_host()) {
    absl::StatusOr<const std::byte*> staged =
        host_visit(add, n * kernels::dtype_bytes(type), store_->visit_staging());
    if (!staged.ok()) return staged.status();
    add = *staged;
  }
  // The same float addition the device accumulator makes.
  kernels::cpu::accumulate(acc, add, type, n);
  return absl::OkStatus();
}

absl::Status Runtime::write_params(size_t c, const float* host) {
  if (remote(c)) return absl::OkStatus();  // its holder keeps it
  // Staged copy: an NVMe home needs an aligned, page-padded source (the
  // parameter staging holds the working dtype: fp32 only without bf16/fp16).
  std::byte* staged = store_->reduced() ? nullptr : store_->param_staging();
  memory::AlignedBuffer local;
  if (staged == nullptr) {
    absl::StatusOr<memory::AlignedBuffer> buffer =
        memory::AlignedBuffer::allocate(store_->bytes(c));
    if (!buffer.ok()) return buffer.status();
    local = *std::move(buffer);
    staged = local.data();
  }
  std::memset(staged, 0, store_->bytes(c));
  std::memcpy(staged, host, store_->numel(c) * sizeof(float));
  return write_class(kParamClass, c, staged);
}

absl::Status Runtime::read_chunk(size_t c, bool gradients, float* host) {
  DSINF_CHECK_MSG(!remote(c), "a read of a chunk another rank holds");
  if (absl::Status s = gates_->wait_idle(); !s.ok()) return s;
  if (gradients && !store_->trainable(c)) {
    std::memset(host, 0, store_->numel(c) * sizeof(float));
    return absl::OkStatus();
  }
  absl::StatusOr<memory::AlignedBuffer> staged = memory::AlignedBuffer::allocate(store_->bytes(c));
  if (!staged.ok()) return staged.status();
  if (!gradients) {
    if (absl::Status s = read_working(c, reinterpret_cast<float*>(staged->data())); !s.ok()) {
      return s;
    }
    std::memcpy(host, staged->data(), store_->numel(c) * sizeof(float));
    return absl::OkStatus();
  }
  absl::StatusOr<float*> p = to_host(store_->grads(), c, staged->data());
  if (!p.ok()) return p.status();
  std::memcpy(host, *p, store_->numel(c) * sizeof(float));
  return absl::OkStatus();
}

// ---- CheckpointState ----

absl::Status Runtime::read_class(int cls, size_t c, std::byte* host) {
  if (absl::Status s = gates_->wait_idle(); !s.ok()) return s;
  return read_home(cls, c, host);
}

absl::Status Runtime::read_home(int cls, size_t c, std::byte* host) {
  DSINF_CHECK_MSG(!remote(c), "a read of a chunk another rank holds");
  const ClassHome& home = home_of(cls, c);
  if (&home == &store_->params() && !store_->master_is_params()) {
    return read_working(c, reinterpret_cast<float*>(host));
  }
  if (&home == &store_->params() && store_->cache_current(c)) {
    // A cached chunk's current weights are in its cache (NVMe is not
    // rewritten while cached).
    std::memcpy(host, store_->cache(c), store_->bytes(c));
    return absl::OkStatus();
  }
  absl::StatusOr<float*> p = to_host(home, c, host);
  if (!p.ok()) return p.status();
  if (reinterpret_cast<std::byte*>(*p) != host) std::memcpy(host, *p, store_->bytes(c));
  return absl::OkStatus();
}

absl::Status Runtime::write_class(int cls, size_t c, const std::byte* host) {
  if (remote(c)) return absl::OkStatus();  // its holder keeps it
  // Nothing read ahead may race the rewrite.
  if (optimizer_) command(cancel_atom::value);
  if (absl::Status s = gates_->wait_idle(); !s.ok()) return s;
  if (streamer_ && cls == kParamClass) streamer_->invalidate(/*mark_stale=*/false);
  const float* src = reinterpret_cast<const float*>(host);
  ClassHome& home = home_of(cls, c);
  if (&home != &store_->params()) {
    if (absl::Status s = from_host(home, c, src); !s.ok()) return s;
  }
  if (cls != kParamClass) return absl::OkStatus();
  // The working copy (when it is not the master weights written above).
  if (absl::Status s = write_working(c, src); !s.ok()) return s;
  if (streamer_) streamer_->updated(c, store_->cache(c) != nullptr);
  return absl::OkStatus();
}

absl::Status Runtime::read_snapshot(int cls, size_t c, std::byte* host) {
  // The run of the snapshot's own step must be over, its writes included;
  // later runs wait for this reader, so this cannot stall.
  if (absl::Status s = gates_->wait_snapshot_step(); !s.ok()) return s;
  return read_home(cls, c, host);
}

void Runtime::snapshot_chunk_read(size_t c) {
  gates_->snapshot_chunk_read(c);
  if (optimizer_) caf::anon_send(optimizer_, resume_atom::value);
}

void Runtime::end_snapshot() {
  gates_->end_snapshot();
  if (optimizer_) caf::anon_send(optimizer_, resume_atom::value);
}

// ---- figures ----

std::string Runtime::cpu_adam_isa() const {
  return kernels::cpu::isa_name(kernels::cpu::best_isa());
}

size_t Runtime::host_peak_bytes() const {
  return store_->pool() ? store_->pool()->stats().peak_bytes : 0;
}

size_t Runtime::host_in_use_bytes() const {
  return store_->pool() ? store_->pool()->stats().in_use_bytes : 0;
}

nvme::EngineStats Runtime::nvme_stats() const {
  return store_->engine() ? store_->engine()->stats() : nvme::EngineStats{};
}

StreamerStats Runtime::streamer_stats() const {
  return streamer_ ? streamer_->stats() : StreamerStats{};
}

}  // namespace dsinf::actors
