#include "trainer/offload.h"

#include <cstdlib>
#include <cstring>
#include <future>

#include "absl/strings/str_cat.h"
#include "memory/util/check.h"
#include "memory/util/trace.h"
#include "nvme/fault_engine.h"

namespace dsinf::trainer {
namespace {

using kernels::Stream;

// Runs one swap-store request and waits for its completion.
template <typename Submit>
absl::Status wait_io(Submit&& submit) {
  std::promise<absl::Status> done;
  std::future<absl::Status> result = done.get_future();
  if (absl::Status s = submit([&](const nvme::IoResult& r) { done.set_value(r.status); });
      !s.ok()) {
    return s;
  }
  return result.get();
}

// DSINF_NVME_FAULT=<fault>@[read:|write:]<n> (eio, enospc, bitflip): the n-th
// swap request (0-based), or the n-th read or write, fails that way. A testing
// aid: the fault tests drive the error paths of a real training run with it.
// (Reads are issued ahead by the prefetcher, so only write indices and the
// count of reads are the same from run to run, not which chunk a read is.)
absl::StatusOr<std::unique_ptr<nvme::IoEngine>> with_injected_fault(
    std::unique_ptr<nvme::IoEngine> engine) {
  const char* spec = std::getenv("DSINF_NVME_FAULT");
  if (spec == nullptr || *spec == '\0') return engine;
  const std::string text(spec);
  const size_t at = text.find('@');
  const std::string kind = text.substr(0, at);
  nvme::Fault fault = nvme::Fault::kNone;
  if (kind == "eio") fault = nvme::Fault::kEio;
  if (kind == "enospc") fault = nvme::Fault::kEnospc;
  if (kind == "bitflip") fault = nvme::Fault::kBitFlip;
  nvme::FaultPlan plan;
  std::string index = at == std::string::npos ? std::string() : text.substr(at + 1);
  for (auto [prefix, op] :
       {std::pair{"read:", nvme::IoOp::kRead}, std::pair{"write:", nvme::IoOp::kWrite}}) {
    if (index.rfind(prefix, 0) == 0) {
      plan.schedule_op = op;
      index = index.substr(std::strlen(prefix));
    }
  }
  char* end = nullptr;
  const unsigned long n = index.empty() ? 0 : std::strtoul(index.c_str(), &end, 10);
  if (fault == nvme::Fault::kNone || index.empty() || end == nullptr || *end != '\0') {
    return absl::InvalidArgumentError(
        absl::StrCat("DSINF_NVME_FAULT=", text, ": expected <eio|enospc|bitflip>@[read:|write:]N"));
  }
  plan.schedule.assign(n + 1, nvme::Fault::kNone);
  plan.schedule[n] = fault;
  return std::unique_ptr<nvme::IoEngine>(nvme::make_fault_engine(std::move(engine), plan));
}

nvme::EngineKind engine_kind(const std::string& name) {
  if (name == "uring") return nvme::EngineKind::kUring;
  if (name == "threads") return nvme::EngineKind::kThreads;
  return nvme::EngineKind::kAuto;
}

}  // namespace

OffloadState::OffloadState(kernels::Backend* backend, const Config& config,
                           const Placement& placement,
                           const std::vector<memory::ChunkLayout>& layouts,
                           actors::ActorSystem* actors)
    : backend_(backend),
      actors_(actors),
      config_(config),
      placement_(placement),
      layouts_(layouts) {}

OffloadState::~OffloadState() {
  if (optimizer_actor_) {
    optimizer_actor_->cancel();  // state read ahead for a step that will not come
    optimizer_actor_.reset();    // every message handled, the actor stopped
  }
  streamer_.reset();  // no read in flight into the slots or staging after this
  for (ClassHome* home : {&params_, &grads_, &master_, &m_, &v_}) {
    for (float* p : home->device) backend_->release(p);
  }
  for (float* p : slots_) backend_->release(p);
  // The swap stores drain their I/O before the engine goes away.
  param_swap_.reset();
  optimizer_swap_.reset();
  if (pool_registered_) backend_->unregister_host_memory(pool_->base());
}

absl::StatusOr<std::unique_ptr<OffloadState>> OffloadState::create(
    kernels::Backend* backend, const Config& config, const Placement& placement,
    const MemoryPlan& plan, const std::vector<memory::ChunkLayout>& layouts,
    actors::ActorSystem* actors) {
  std::unique_ptr<OffloadState> state(
      new OffloadState(backend, config, placement, layouts, actors));
  if (absl::Status s = state->allocate(plan); !s.ok()) return s;
  return state;
}

absl::StatusOr<ClassHome> OffloadState::make_home(Tier tier, nvme::SwapStore* swap,
                                                  uint32_t first_id, bool zeroed) {
  ClassHome home;
  home.tier = tier;
  home.swap = swap;
  home.first_id = first_id;
  for (size_t c = 0; c < layouts_.size(); ++c) {
    if (tier == Tier::kDevice) {
      absl::StatusOr<void*> p = backend_->allocate(bytes(c));  // zero filled
      if (!p.ok()) return p.status();
      home.device.push_back(static_cast<float*>(*p));
    } else if (tier == Tier::kHost) {
      absl::StatusOr<std::byte*> p = pool_->allocate_zeroed(bytes(c));
      if (!p.ok()) return p.status();
      home.host.push_back(*p);
    }
  }
  if (tier == Tier::kNvme && zeroed) {
    // A swap chunk must be written before it can be read: moments start at zero.
    std::byte* zeros = sets_.front().m;
    for (size_t c = 0; c < layouts_.size(); ++c) {
      std::memset(zeros, 0, bytes(c));
      if (absl::Status s = wait_io([&](nvme::IoCallback cb) {
            return swap->write(first_id + static_cast<uint32_t>(c), zeros, std::move(cb));
          });
          !s.ok()) {
        return s;
      }
    }
  }
  return home;
}

absl::Status OffloadState::allocate(const MemoryPlan& plan) {
  const size_t chunks = layouts_.size();
  size_t largest = 0;
  std::vector<size_t> chunk_bytes;
  for (size_t c = 0; c < chunks; ++c) {
    largest = std::max(largest, bytes(c));
    chunk_bytes.push_back(bytes(c));
  }
  if (plan.host_bytes > 0) {
    const uint64_t budget =
        config_.memory.host_budget_bytes > 0 ? config_.memory.host_budget_bytes : plan.host_bytes;
    absl::StatusOr<std::unique_ptr<memory::HostPool>> pool =
        memory::HostPool::create("host", budget, placement_.pin_memory);
    if (!pool.ok()) return pool.status();
    pool_ = std::move(*pool);
    // pin_memory: registered with the backend for direct DMA (cudaHostRegister;
    // nothing on the CPU backend).
    if (placement_.pin_memory) {
      if (absl::Status s = backend_->register_host_memory(pool_->base(), pool_->size()); !s.ok()) {
        return s;
      }
      pool_registered_ = true;
    }
  }
  staging_.assign(kNumStaging, nullptr);
  auto stage = [&](Staging which) -> absl::Status {
    absl::StatusOr<std::byte*> p = pool_->allocate(largest);
    if (!p.ok()) return p.status();
    staging_[which] = *p;
    return absl::OkStatus();
  };
  const bool optimizer_on_nvme = placement_.optimizer == Tier::kNvme;
  const bool params_on_nvme = placement_.params == Tier::kNvme;
  if (params_on_nvme) {
    if (absl::Status s = stage(kStageParams); !s.ok()) return s;
  }
  if (placement_.grads == Tier::kHost) {
    if (absl::Status s = stage(kStageVisit); !s.ok()) return s;
  }
  sets_.resize(plan.optimizer_sets);
  for (StagingSet& set : sets_) {
    for (std::byte** buffer : {&set.m, &set.v, &set.master}) {
      if (buffer == &set.master && plan.optimizer_set_buffers < 3) break;
      absl::StatusOr<std::byte*> p = pool_->allocate(largest);
      if (!p.ok()) return p.status();
      *buffer = *p;
    }
  }

  // NVMe: one engine for both stores, swap chunks laid out per class.
  if (params_on_nvme || optimizer_on_nvme) {
    nvme::EngineOptions options;
    options.block_size = static_cast<size_t>(config_.aio.block_size);
    options.queue_depth = static_cast<int>(config_.aio.queue_depth);
    options.intra_op_parallelism = static_cast<int>(config_.aio.intra_op_parallelism);
    options.single_submit = config_.aio.single_submit;
    options.overlap_events = config_.aio.overlap_events;
    std::string note;
    absl::StatusOr<std::unique_ptr<nvme::IoEngine>> engine =
        nvme::make_engine(engine_kind(config_.aio.engine), options, &note);
    if (!engine.ok()) return engine.status();
    engine = with_injected_fault(*std::move(engine));
    if (!engine.ok()) return engine.status();
    engine_ = std::move(*engine);
  }
  const bool shared = placement_.master_is_working_copy();
  if (params_on_nvme && !shared) {
    nvme::SwapStoreOptions options;
    options.paths = placement_.param_paths;
    options.chunk_bytes = chunk_bytes;
    options.config_key = "zero_optimization.offload_param.nvme_path";
    absl::StatusOr<std::unique_ptr<nvme::SwapStore>> swap =
        nvme::SwapStore::create(engine_.get(), options);
    if (!swap.ok()) return swap.status();
    param_swap_ = std::move(*swap);
  }
  if (optimizer_on_nvme) {
    nvme::SwapStoreOptions options;
    options.paths = placement_.optimizer_paths;
    // m, v, then the master weights (the working copy too when both live here).
    for (size_t k = 0; k < 3; ++k) {
      options.chunk_bytes.insert(options.chunk_bytes.end(), chunk_bytes.begin(), chunk_bytes.end());
    }
    options.config_key = "zero_optimization.offload_optimizer.nvme_path";
    absl::StatusOr<std::unique_ptr<nvme::SwapStore>> swap =
        nvme::SwapStore::create(engine_.get(), options);
    if (!swap.ok()) return swap.status();
    optimizer_swap_ = std::move(*swap);
  }

  const uint32_t n = static_cast<uint32_t>(chunks);
  nvme::SwapStore* optimizer_swap = optimizer_swap_.get();
  struct Want {
    ClassHome* home;
    Tier tier;
    nvme::SwapStore* swap;
    uint32_t first_id;
    bool zeroed;
  };
  // Optimizer swap chunk ids: m at 0, v at n, master (or the shared working copy) at 2n.
  std::vector<Want> wants = {
      {&params_, placement_.params, shared ? optimizer_swap : param_swap_.get(), shared ? 2 * n : 0,
       false},
      {&grads_, placement_.grads, nullptr, 0, false},
      {&m_, placement_.optimizer, optimizer_swap, 0, true},
      {&v_, placement_.optimizer, optimizer_swap, n, true},
  };
  if (!shared) wants.push_back({&master_, placement_.optimizer, optimizer_swap, 2 * n, false});
  for (const Want& w : wants) {
    absl::StatusOr<ClassHome> home = make_home(w.tier, w.swap, w.first_id, w.zeroed);
    if (!home.ok()) return home.status();
    *w.home = std::move(*home);
  }

  updated_step_.assign(chunks, 0);
  grads_fresh_.assign(chunks, false);
  param_cache_.assign(chunks, nullptr);
  cache_current_.assign(chunks, 0);
  if (placement_.optimizer != Tier::kDevice) {
    absl::StatusOr<std::unique_ptr<actors::OptimizerActor>> actor =
        actors::OptimizerActor::create(this, actors_);
    if (!actor.ok()) return actor.status();
    optimizer_actor_ = *std::move(actor);
  }
  if (placement_.params == Tier::kDevice) return absl::OkStatus();
  // Device slots for streamed parameter chunks, each with its NVMe staging.
  actors::StreamerSetup setup;
  setup.system = actors_;
  setup.backend = backend_;
  setup.prefetch_bucket_elements =
      static_cast<uint64_t>(std::max<int64_t>(placement_.param_prefetch_bucket, 0));
  for (size_t i = 0; i < plan.slots; ++i) {
    absl::StatusOr<void*> p = backend_->allocate(plan.slot_bytes);
    if (!p.ok()) return p.status();
    slots_.push_back(static_cast<float*>(*p));
    std::byte* staging = nullptr;
    if (params_on_nvme) {
      absl::StatusOr<std::byte*> block = pool_->allocate(largest);
      if (!block.ok()) return block.status();
      staging = *block;
    }
    slot_staging_.push_back(staging);
  }
  setup.slots = slots_;
  setup.staging = slot_staging_;
  for (size_t c = 0; params_on_nvme && c < plan.cached_chunks; ++c) {
    absl::StatusOr<std::byte*> block = pool_->allocate(bytes(c));
    if (!block.ok()) return block.status();
    param_cache_[c] = *block;
  }
  for (size_t c = 0; c < chunks; ++c) {
    actors::ChunkHome home;
    home.bytes = bytes(c);
    home.elements = numel(c);
    // Below stage3_param_persistence_threshold: a device slot of its own
    // (released with slots_), and its own NVMe read buffer.
    if (c < plan.persistent.size() && plan.persistent[c]) {
      absl::StatusOr<void*> own = backend_->allocate(bytes(c));
      if (!own.ok()) return own.status();
      slots_.push_back(static_cast<float*>(*own));
      home.own_slot = slots_.back();
      if (params_on_nvme) {
        absl::StatusOr<std::byte*> block = pool_->allocate(bytes(c));
        if (!block.ok()) return block.status();
        home.own_staging = *block;
      }
    }
    if (params_.tier == Tier::kHost) {
      home.host = params_.host[c];
    } else {
      home.swap = params_.swap;
      home.swap_id = params_.first_id + static_cast<uint32_t>(c);
      home.cache = param_cache_[c];
    }
    setup.chunks.push_back(home);
  }
  absl::StatusOr<std::unique_ptr<actors::ParamStreamer>> streamer =
      actors::ParamStreamer::create(std::move(setup));
  if (!streamer.ok()) return streamer.status();
  streamer_ = std::move(*streamer);
  return absl::OkStatus();
}

absl::StatusOr<float*> OffloadState::to_host(const ClassHome& home, size_t c, std::byte* staging) {
  // A cached parameter chunk's current weights are in its cache (the NVMe copy
  // is not rewritten while cached).
  if (&home == &params_ && cache_current(c)) return reinterpret_cast<float*>(param_cache_[c]);
  switch (home.tier) {
    case Tier::kHost:
      return reinterpret_cast<float*>(home.host[c]);
    case Tier::kDevice:
      if (absl::Status s =
              backend_->copy_to_host(staging, home.device[c], bytes(c), Stream::kDownload);
          !s.ok()) {
        return s;
      }
      if (absl::Status s = backend_->synchronize(Stream::kDownload); !s.ok()) return s;
      return reinterpret_cast<float*>(staging);
    case Tier::kNvme: {
      trace::Scope span(trace::Lane::kNvmeRead, "swap read (sync)", static_cast<int64_t>(c));
      if (absl::Status s = wait_io([&](nvme::IoCallback cb) {
            return home.swap->read(home.first_id + static_cast<uint32_t>(c), staging,
                                   std::move(cb));
          });
          !s.ok()) {
        return s;
      }
      return reinterpret_cast<float*>(staging);
    }
  }
  return absl::InternalError("unknown tier");
}

absl::Status OffloadState::from_host(ClassHome& home, size_t c, const float* src) {
  switch (home.tier) {
    case Tier::kHost:
      if (reinterpret_cast<const std::byte*>(src) != home.host[c]) {
        std::memcpy(home.host[c], src, bytes(c));
      }
      return absl::OkStatus();
    case Tier::kDevice:
      if (absl::Status s = backend_->copy_to_device(home.device[c], src, bytes(c), Stream::kUpload);
          !s.ok()) {
        return s;
      }
      return backend_->synchronize(Stream::kUpload);
    case Tier::kNvme: {
      trace::Scope span(trace::Lane::kNvmeWrite, "swap write (sync)", static_cast<int64_t>(c));
      return wait_io([&](nvme::IoCallback cb) {
        return home.swap->write(home.first_id + static_cast<uint32_t>(c),
                                reinterpret_cast<const std::byte*>(src), std::move(cb));
      });
    }
  }
  return absl::InternalError("unknown tier");
}

// ---- forward and backward ----

absl::StatusOr<const float*> OffloadState::acquire_params(size_t c) {
  if (absl::Status s = wait_updated(c); !s.ok()) return s;
  if (params_.tier == Tier::kDevice) return params_.device[c];
  return streamer_->acquire(c);
}

absl::Status OffloadState::release_params(size_t c) {
  if (streamer_) streamer_->release(c);
  return absl::OkStatus();
}

absl::Status OffloadState::accumulate_grads(size_t c, const float* visit) {
  if (grads_fresh_[c]) {
    // The first visit of the step: the accumulator starts at +0 once the last
    // step's optimizer is done reading it.
    if (absl::Status s = wait_updated(c); !s.ok()) return s;
    if (grads_.tier == Tier::kDevice) {
      if (absl::Status s = backend_->fill_zero(grads_.device[c], bytes(c), Stream::kCompute);
          !s.ok()) {
        return s;
      }
    } else {
      std::memset(grads_.host[c], 0, bytes(c));
    }
    grads_fresh_[c] = false;
  }
  if (grads_.tier == Tier::kDevice) {
    backend_->residual_forward(grads_.device[c], grads_.device[c], visit, numel(c));
    return absl::OkStatus();
  }
  trace::Scope span(trace::Lane::kCopyOut, "gradient to host", static_cast<int64_t>(c));
  float* acc = reinterpret_cast<float*>(grads_.host[c]);
  if (backend_->device_memory_is_host()) {
    // The visit is readable where it is: the same float addition, in place.
    backend_->residual_forward(acc, acc, visit, numel(c));
    return absl::OkStatus();
  }
  std::byte* staged = staging_[kStageVisit];
  if (absl::Status s = backend_->copy_to_host(staged, visit, bytes(c), Stream::kDownload);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = backend_->synchronize(Stream::kDownload); !s.ok()) return s;
  // The same float addition the device accumulator makes (residual_forward).
  const float* add = reinterpret_cast<const float*>(staged);
  for (size_t i = 0; i < numel(c); ++i) acc[i] = acc[i] + add[i];
  return absl::OkStatus();
}

absl::Status OffloadState::write_params(size_t c, const float* host) {
  // Staged copy: from_host may need an aligned, page-padded source.
  std::byte* staged = staging_[kStageParams];
  std::vector<std::byte> local;
  if (staged == nullptr) {
    local.resize(bytes(c) + memory::kChunkAlignment);
    staged = reinterpret_cast<std::byte*>(
        memory::align_up(reinterpret_cast<uintptr_t>(local.data()), memory::kChunkAlignment));
  }
  std::memset(staged, 0, bytes(c));
  std::memcpy(staged, host, numel(c) * sizeof(float));
  return write_class(kParamClass, c, staged);
}

absl::Status OffloadState::read_chunk(size_t c, bool gradients, float* host) {
  if (absl::Status s = wait_optimizer(); !s.ok()) return s;
  std::vector<std::byte> local(bytes(c) + memory::kChunkAlignment);
  std::byte* staged = reinterpret_cast<std::byte*>(
      memory::align_up(reinterpret_cast<uintptr_t>(local.data()), memory::kChunkAlignment));
  absl::StatusOr<float*> p = to_host(gradients ? grads_ : params_, c, staged);
  if (!p.ok()) return p.status();
  std::memcpy(host, *p, numel(c) * sizeof(float));
  return absl::OkStatus();
}

// ---- checkpoints ----

absl::Status OffloadState::read_class(int cls, size_t c, std::byte* host) {
  if (absl::Status s = wait_optimizer(); !s.ok()) return s;
  return read_home(cls, c, host);
}

absl::Status OffloadState::read_home(int cls, size_t c, std::byte* host) {
  ClassHome& home = cls == kParamClass ? master() : cls == kMClass ? m_ : v_;
  absl::StatusOr<float*> p = to_host(home, c, host);
  if (!p.ok()) return p.status();
  if (reinterpret_cast<std::byte*>(*p) != host) std::memcpy(host, *p, bytes(c));
  return absl::OkStatus();
}

absl::Status OffloadState::write_class(int cls, size_t c, const std::byte* host) {
  // Nothing read ahead may race the rewrite.
  if (optimizer_actor_) optimizer_actor_->cancel();
  if (absl::Status s = wait_optimizer(); !s.ok()) return s;
  if (streamer_ && cls == kParamClass) streamer_->invalidate(/*mark_stale=*/false);
  const float* src = reinterpret_cast<const float*>(host);
  if (cls != kParamClass) return from_host(cls == kMClass ? m_ : v_, c, src);
  if (absl::Status s = from_host(master(), c, src); !s.ok()) return s;
  if (&master() != &params_) {
    if (absl::Status s = from_host(params_, c, src); !s.ok()) return s;
  }
  const bool cached = c < param_cache_.size() && param_cache_[c] != nullptr;
  if (cached) {
    std::memcpy(param_cache_[c], src, bytes(c));
    cache_current_[c] = 1;
  }
  if (streamer_) streamer_->updated(c, cached);
  return absl::OkStatus();
}

void OffloadState::begin_snapshot() {
  std::lock_guard<std::mutex> lock(mu_);
  DSINF_CHECK(!snapshot_active_);
  snapshot_active_ = true;
  snapshot_step_ = step_count_;
  snapshot_read_ = 0;
}

absl::Status OffloadState::read_snapshot(int cls, size_t c, std::byte* host) {
  {
    // The run of the snapshot's own step must be over, its writes included;
    // later runs wait for this reader (wait_snapshot), so this cannot stall.
    std::unique_lock<std::mutex> lock(mu_);
    updated_cv_.wait(lock,
                     [&] { return finished_step_ >= snapshot_step_ || !optimizer_error_.ok(); });
    if (!optimizer_error_.ok()) return optimizer_error_;
  }
  return read_home(cls, c, host);
}

void OffloadState::snapshot_chunk_read(size_t c) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    snapshot_read_ = c + 1;
  }
  snapshot_cv_.notify_all();
}

void OffloadState::end_snapshot() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    snapshot_active_ = false;
  }
  snapshot_cv_.notify_all();
}

void OffloadState::wait_snapshot(size_t c, int64_t step) {
  std::unique_lock<std::mutex> lock(mu_);
  auto free = [&] { return !snapshot_active_ || step <= snapshot_step_ || snapshot_read_ > c; };
  if (free()) return;
  const int64_t begin = trace::now_ns();
  snapshot_cv_.wait(lock, free);
  const int64_t end = trace::now_ns();
  snapshot_wait_ns_ += end - begin;
  trace::record(trace::Lane::kWait, "checkpoint reads chunk", static_cast<int64_t>(c), begin, end);
}

double OffloadState::snapshot_wait_s() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<double>(snapshot_wait_ns_) * 1e-9;
}

size_t OffloadState::nvme_bytes() const {
  size_t total = 0;
  for (const auto* swap : {param_swap_.get(), optimizer_swap_.get()}) {
    if (swap != nullptr) total += swap->bytes_on_disk();
  }
  return total;
}

}  // namespace dsinf::trainer
