#include "actors/runtime/chunk_store.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "memory/util/check.h"

namespace dsinf::actors {

ChunkStore::ChunkStore(kernels::Backend* backend, const RuntimeSpec& spec,
                       const std::vector<memory::ChunkLayout>& layouts)
    : backend_(backend), placement_(spec.placement), layouts_(layouts) {
  for (const memory::ChunkLayout& layout : layouts_) any_trainable_ |= layout.trainable();
  // Without trainable chunks there is no optimizer, so nothing to share a home with.
  master_shared_ = placement_.master_is_working_copy() && any_trainable_;
}

ChunkStore::~ChunkStore() {
  for (float* p : device_blocks_) backend_->release(p);
  // The swap stores drain their I/O before the engine goes away.
  param_swap_.reset();
  optimizer_swap_.reset();
  if (pool_registered_) backend_->unregister_host_memory(pool_->base());
}

absl::StatusOr<std::unique_ptr<ChunkStore>> ChunkStore::create(
    kernels::Backend* backend, const RuntimeSpec& spec, const MemoryPlan& plan,
    const std::vector<memory::ChunkLayout>& layouts) {
  std::unique_ptr<ChunkStore> store(new ChunkStore(backend, spec, layouts));
  if (absl::Status s = store->reserve_host_pool(plan, spec.budgets.host_bytes); !s.ok()) return s;
  if (absl::Status s = store->reserve_staging(plan); !s.ok()) return s;
  if (absl::Status s = store->open_swap(spec); !s.ok()) return s;
  if (absl::Status s = store->reserve_homes(); !s.ok()) return s;
  if (absl::Status s = store->reserve_slots(plan); !s.ok()) return s;
  return store;
}

size_t ChunkStore::largest_bytes() const {
  size_t largest = 0;
  for (const memory::ChunkLayout& layout : layouts_) largest = std::max(largest, layout.bytes());
  return largest;
}

size_t ChunkStore::largest_working_bytes() const {
  size_t largest = 0;
  for (size_t c = 0; c < layouts_.size(); ++c) largest = std::max(largest, working_bytes(c));
  return largest;
}

absl::StatusOr<void*> ChunkStore::device_block(size_t bytes) {
  absl::StatusOr<void*> p = backend_->allocate(bytes);
  if (!p.ok()) return p.status();
  device_blocks_.push_back(static_cast<float*>(*p));
  return *p;
}

absl::StatusOr<std::byte*> ChunkStore::host_block(size_t bytes) {
  DSINF_CHECK_MSG(pool_ != nullptr, "a host buffer the memory plan did not count");
  return pool_->allocate(bytes);
}

// The host pool: exactly what the plan needs (or memory.host_budget_bytes),
// mapped once; with pin_memory registered with the backend for direct DMA
// (cudaHostRegister; nothing on the CPU backend).
absl::Status ChunkStore::reserve_host_pool(const MemoryPlan& plan, uint64_t budget_bytes) {
  if (plan.host_bytes == 0) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<memory::HostPool>> pool = memory::HostPool::create(
      "host", budget_bytes > 0 ? budget_bytes : plan.host_bytes, placement_.pin_memory);
  if (!pool.ok()) return pool.status();
  pool_ = *std::move(pool);
  if (placement_.pin_memory) {
    if (absl::Status s = backend_->register_host_memory(pool_->base(), pool_->size()); !s.ok()) {
      return s;
    }
    pool_registered_ = true;
  }
  return absl::OkStatus();
}

absl::Status ChunkStore::reserve_staging(const MemoryPlan& plan) {
  const size_t largest = largest_bytes();
  const size_t working = largest_working_bytes();
  if (placement_.params == Tier::kNvme || (placement_.stages_device_params() && any_trainable_)) {
    absl::StatusOr<std::byte*> p = host_block(working);
    if (!p.ok()) return p.status();
    param_staging_ = *p;
  }
  if (placement_.grads == Tier::kHost && any_trainable_) {
    absl::StatusOr<std::byte*> p = host_block(working);
    if (!p.ok()) return p.status();
    visit_staging_ = *p;
  }
  if (placement_.reduced()) {
    for (void** area : {&visit_area_, &param_area_}) {
      absl::StatusOr<void*> p = device_block(working);
      if (!p.ok()) return p.status();
      *area = *p;
    }
  }
  sets_.resize(plan.optimizer_sets);
  for (StagingBuffers& set : sets_) {
    for (std::byte** buffer : {&set.m, &set.v, &set.master}) {
      if (buffer == &set.master && plan.optimizer_set_buffers < 3) break;
      absl::StatusOr<std::byte*> p = host_block(largest);
      if (!p.ok()) return p.status();
      *buffer = *p;
    }
  }
  return absl::OkStatus();
}

// One engine for both stores; swap chunks laid out per class: parameters in
// their own store, unless they are the master weights; the optimizer's store
// holds m (ids 0..n-1), v (n..2n-1) and the master weights (2n..3n-1).
absl::Status ChunkStore::open_swap(const RuntimeSpec& spec) {
  const bool params_on_nvme = placement_.params == Tier::kNvme;
  const bool optimizer_on_nvme = placement_.optimizer == Tier::kNvme && any_trainable_;
  if (!params_on_nvme && !optimizer_on_nvme) return absl::OkStatus();
  std::string note;
  absl::StatusOr<std::unique_ptr<nvme::IoEngine>> engine =
      nvme::make_engine(spec.engine_kind, spec.aio, &note);
  if (!engine.ok()) return engine.status();
  engine_ = *std::move(engine);
  if (spec.nvme_faults) engine_ = nvme::make_fault_engine(std::move(engine_), *spec.nvme_faults);
  // Optimizer state is fp32, for the chunks this rank trains; working
  // parameters are in the working dtype, for the chunks it holds. The others
  // take no room (a page each).
  std::vector<size_t> state_bytes, param_bytes, fp32_params;
  for (size_t c = 0; c < layouts_.size(); ++c) {
    const bool held = !layouts_[c].remote();
    state_bytes.push_back(layouts_[c].trainable() ? bytes(c) : 0);
    param_bytes.push_back(held ? working_bytes(c) : 0);
    fp32_params.push_back(held ? bytes(c) : 0);  // the master weights as parameters
  }
  auto open = [&](const std::vector<std::string>& paths,
                  std::vector<const std::vector<size_t>*> classes,
                  const char* key) -> absl::StatusOr<std::unique_ptr<nvme::SwapStore>> {
    nvme::SwapStoreOptions options;
    options.paths = paths;
    for (const std::vector<size_t>* chunk_bytes : classes) {
      options.chunk_bytes.insert(options.chunk_bytes.end(), chunk_bytes->begin(),
                                 chunk_bytes->end());
    }
    options.config_key = key;
    return nvme::SwapStore::create(engine_.get(), options);
  };
  if (params_on_nvme && !master_shared_) {
    absl::StatusOr<std::unique_ptr<nvme::SwapStore>> swap =
        open(placement_.param_paths, {&param_bytes}, "zero_optimization.offload_param.nvme_path");
    if (!swap.ok()) return swap.status();
    param_swap_ = *std::move(swap);
  }
  if (optimizer_on_nvme) {
    absl::StatusOr<std::unique_ptr<nvme::SwapStore>> swap =
        open(placement_.optimizer_paths,
             {&state_bytes, &state_bytes, master_shared_ ? &fp32_params : &state_bytes},
             "zero_optimization.offload_optimizer.nvme_path");
    if (!swap.ok()) return swap.status();
    optimizer_swap_ = *std::move(swap);
  }
  return absl::OkStatus();
}

// Chunk c of a class at `tier`: an arena block (zero filled), a zeroed host
// pool block, or (NVMe) nothing to reserve here. Classes other than the
// working parameters exist for trainable chunks only; those (`all_chunks`)
// take the working dtype off the device.
absl::StatusOr<ClassHome> ChunkStore::make_home(Tier tier, nvme::SwapStore* swap, uint32_t first_id,
                                                bool all_chunks) {
  ClassHome home;
  home.tier = tier;
  home.swap = swap;
  home.first_id = first_id;
  for (size_t c = 0; c < layouts_.size(); ++c) {
    const bool present = (all_chunks && !layouts_[c].remote()) || layouts_[c].trainable();
    if (tier == Tier::kDevice) {
      float* block = nullptr;
      if (present) {
        absl::StatusOr<void*> p = backend_->allocate(bytes(c));
        if (!p.ok()) return p.status();
        block = static_cast<float*>(*p);
        device_blocks_.push_back(block);
      }
      home.device.push_back(block);
    } else if (tier == Tier::kHost) {
      std::byte* block = nullptr;
      if (present) {
        if (pool_ == nullptr) return absl::InternalError("a host class the plan did not count");
        absl::StatusOr<std::byte*> p =
            pool_->allocate_zeroed(all_chunks ? working_bytes(c) : bytes(c));
        if (!p.ok()) return p.status();
        block = *p;
      }
      home.host.push_back(block);
    }
  }
  return home;
}

absl::Status ChunkStore::reserve_homes() {
  const uint32_t n = static_cast<uint32_t>(layouts_.size());
  nvme::SwapStore* optimizer_swap = optimizer_swap_.get();
  struct Want {
    ClassHome* home;
    Tier tier;
    nvme::SwapStore* swap;
    uint32_t first_id;
    bool all_chunks;
  };
  std::vector<Want> wants = {{&params_, placement_.params,
                              master_shared_ ? optimizer_swap : param_swap_.get(),
                              master_shared_ ? 2 * n : 0, true}};
  if (any_trainable_) {
    wants.push_back({&grads_, placement_.grads, nullptr, 0, false});
    wants.push_back({&m_, placement_.optimizer, optimizer_swap, 0, false});
    wants.push_back({&v_, placement_.optimizer, optimizer_swap, n, false});
    if (!master_shared_) {
      wants.push_back({&master_, placement_.optimizer, optimizer_swap, 2 * n, false});
    }
  }
  for (const Want& w : wants) {
    absl::StatusOr<ClassHome> home = make_home(w.tier, w.swap, w.first_id, w.all_chunks);
    if (!home.ok()) return home.status();
    *w.home = *std::move(home);
  }
  return absl::OkStatus();
}

// Streamed parameters: the shared device slots (each with its NVMe read
// buffer), the host cache of the first plan.cached_chunks NVMe chunks held, and a
// slot of its own for each persistent chunk (with its read buffer).
absl::Status ChunkStore::reserve_slots(const MemoryPlan& plan) {
  cache_.assign(layouts_.size(), nullptr);
  cache_current_.assign(layouts_.size(), 0);
  own_slots_.assign(layouts_.size(), nullptr);
  own_staging_.assign(layouts_.size(), nullptr);
  own_areas_.assign(layouts_.size(), nullptr);
  if (placement_.params == Tier::kDevice) return absl::OkStatus();
  const bool params_on_nvme = placement_.params == Tier::kNvme;
  const bool reduced = placement_.reduced();
  // A slot is fp32 for the ops; 16-bit uploads land in an area at its end.
  for (size_t i = 0; i < plan.slots; ++i) {
    absl::StatusOr<void*> p = device_block(plan.slot_bytes);
    if (!p.ok()) return p.status();
    slots_.push_back(static_cast<float*>(*p));
    if (reduced) {
      slot_areas_.push_back(static_cast<std::byte*>(*p) + plan.slot_bytes - plan.slot_area_bytes);
    }
    std::byte* staging = nullptr;
    if (params_on_nvme) {
      absl::StatusOr<std::byte*> block = host_block(largest_working_bytes());
      if (!block.ok()) return block.status();
      staging = *block;
    }
    slot_staging_.push_back(staging);
  }
  for (size_t c = 0, cached = 0; params_on_nvme && cached < plan.cached_chunks; ++c) {
    if (layouts_[c].remote()) continue;
    absl::StatusOr<std::byte*> block = host_block(working_bytes(c));
    if (!block.ok()) return block.status();
    cache_[c] = *block;
    ++cached;
  }
  for (size_t c = 0; c < layouts_.size(); ++c) {
    if (c >= plan.persistent.size() || !plan.persistent[c]) continue;
    absl::StatusOr<void*> own = device_block(bytes(c) + (reduced ? working_bytes(c) : 0));
    if (!own.ok()) return own.status();
    own_slots_[c] = static_cast<float*>(*own);
    if (reduced) own_areas_[c] = static_cast<std::byte*>(*own) + bytes(c);
    if (params_on_nvme) {
      absl::StatusOr<std::byte*> block = host_block(working_bytes(c));
      if (!block.ok()) return block.status();
      own_staging_[c] = *block;
    }
  }
  return absl::OkStatus();
}

ShardSetup ChunkStore::shard_setup() const {
  ShardSetup setup;
  setup.slots = slots_;
  setup.staging = slot_staging_;
  setup.areas = slot_areas_;
  for (size_t c = 0; c < layouts_.size(); ++c) {
    ChunkHome home;
    home.bytes = working_bytes(c);
    home.elements = numel(c);
    home.own_slot = own_slots_[c];
    home.own_staging = own_staging_[c];
    home.own_area = own_areas_[c];
    // Another rank's chunk has no home here (nor a slot of its own: the plan
    // gives none to a remote chunk); it borrows a shared slot.
    home.remote = layouts_[c].remote();
    if (home.remote) {
      DSINF_CHECK(home.own_slot == nullptr);
    } else if (params_.tier == Tier::kHost) {
      home.host = params_.host[c];
    } else {
      home.swap = params_.swap_chunk(c);
      home.cache = cache_[c];
    }
    setup.chunks.push_back(home);
  }
  return setup;
}

size_t ChunkStore::nvme_bytes() const {
  size_t total = 0;
  for (const auto* swap : {param_swap_.get(), optimizer_swap_.get()}) {
    if (swap != nullptr) total += swap->bytes_on_disk();
  }
  return total;
}

std::vector<SwapChunk> ChunkStore::unwritten_moments() const {
  std::vector<SwapChunk> out;
  if (placement_.optimizer != Tier::kNvme) return out;
  for (const ClassHome* home : {&m_, &v_}) {
    for (size_t c = 0; c < layouts_.size(); ++c) {
      if (layouts_[c].trainable()) out.push_back(home->swap_chunk(c));
    }
  }
  return out;
}

std::byte* ChunkStore::zeros() const {
  DSINF_CHECK(!sets_.empty());
  std::memset(sets_.front().m, 0, largest_bytes());
  return sets_.front().m;
}

}  // namespace dsinf::actors
