// The offload runtime's optimizer: the step on its own thread, the per-chunk
// gates the next step waits on, and the pipelined swap I/O for state on NVMe.
#include <chrono>
#include <cmath>
#include <cstring>
#include <future>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/adam.h"
#include "memory/util/check.h"
#include "memory/util/trace.h"
#include "trainer/offload.h"
#include "trainer/optimizer.h"

namespace dsinf::trainer {

// ---- asynchronous swap I/O (the optimizer's pipeline) ----

absl::StatusOr<OffloadState::PendingIo> OffloadState::start_io(ClassHome& home, size_t c,
                                                               std::byte* buffer, bool write) {
  DSINF_CHECK(home.tier == Tier::kNvme);
  PendingIo io;
  io.done = std::make_shared<std::promise<absl::Status>>();
  io.result = io.done->get_future();
  const trace::Lane lane = write ? trace::Lane::kNvmeWrite : trace::Lane::kNvmeRead;
  const int64_t begin_ns = trace::now_ns();
  auto done = [promise = io.done, lane, c, begin_ns](const nvme::IoResult& r) {
    trace::record(lane, "swap (optimizer)", static_cast<int64_t>(c), begin_ns, trace::now_ns());
    promise->set_value(r.status);
  };
  const nvme::ChunkId id = home.first_id + static_cast<uint32_t>(c);
  const absl::Status submitted = write ? home.swap->write(id, buffer, std::move(done))
                                       : home.swap->read(id, buffer, std::move(done));
  if (!submitted.ok()) return submitted;
  return io;
}

absl::Status OffloadState::finish_all(std::vector<PendingIo>& ios) {
  absl::Status status;
  for (PendingIo& io : ios) status.Update(io.result.get());
  ios.clear();
  return status;
}

absl::Status OffloadState::issue_reads(size_t c) {
  StagingSet& set = sets_[c % sets_.size()];
  DSINF_CHECK(set.reads.empty() && set.writes.empty() && !set.computed);
  set.chunk = c;
  set.report_written = false;
  std::pair<ClassHome*, std::byte*> wanted[3] = {{&m_, set.m}, {&v_, set.v}, {nullptr, nullptr}};
  if (!master_in_cache(c)) {
    if (set.master == nullptr) {
      return absl::InternalError(absl::StrCat("chunk ", c,
                                              ": its master weights are neither cached on the "
                                              "host nor given a staging buffer"));
    }
    wanted[2] = {&master(), set.master};
  }
  for (auto [home, buffer] : wanted) {
    if (home == nullptr) continue;
    absl::StatusOr<PendingIo> io = start_io(*home, c, buffer, /*write=*/false);
    if (!io.ok()) return io.status();
    set.reads.push_back(*std::move(io));
  }
  return absl::OkStatus();
}

absl::Status OffloadState::write_back(StagingSet& set) {
  if (!set.computed) return absl::OkStatus();
  set.computed = false;
  std::pair<ClassHome*, std::byte*> out[3] = {{&m_, set.m}, {&v_, set.v}, {nullptr, nullptr}};
  if (set.write_master) out[2] = {&master(), set.master};
  for (auto [home, buffer] : out) {
    if (home == nullptr) continue;
    absl::StatusOr<PendingIo> io = start_io(*home, set.chunk, buffer, /*write=*/true);
    if (!io.ok()) return io.status();
    set.writes.push_back(*std::move(io));
  }
  return absl::OkStatus();
}

absl::Status OffloadState::retire_writes(StagingSet& set) {
  if (absl::Status s = write_back(set); !s.ok()) return s;
  if (set.writes.empty()) return absl::OkStatus();
  if (absl::Status s = finish_all(set.writes); !s.ok()) return s;
  if (set.report_written) {
    chunk_done(set.chunk, set.step, reinterpret_cast<const float*>(set.master));
    set.report_written = false;
  }
  return absl::OkStatus();
}

absl::Status OffloadState::drain_sets(absl::Status status) {
  for (StagingSet& set : sets_) {
    status.Update(finish_all(set.reads));
    status.Update(finish_all(set.writes));
    set.computed = false;
    set.report_written = false;
  }
  next_read_ = 0;
  return status;
}

// Adam over chunks whose optimizer state lives on NVMe, pipelined through the
// staging sets. The critical path is reads and Adam: the next step waits for
// the new weights, not for m and v on NVMe. So Adam takes each chunk whose
// reads are in, and a computed set's writes are issued only when its set is
// wanted for a later chunk's reads -- whenever the optimizer would otherwise
// wait for reads -- or once every chunk is updated. (Uncached NVMe weights are
// written at once: the next step reads them from there.)
absl::Status OffloadState::step_on_nvme(const kernels::AdamHyper& hyper) {
  const size_t n = layouts_.size();
  const size_t depth = sets_.size();
  // The next chunk's reads into its set, once that set's writes are done.
  auto refill_next = [&]() -> absl::Status {
    StagingSet& set = sets_[next_read_ % depth];
    if (absl::Status s = retire_writes(set); !s.ok()) return s;  // writes it back first
    if (absl::Status s = issue_reads(next_read_); !s.ok()) return s;
    ++next_read_;
    return absl::OkStatus();
  };
  auto ready = [](StagingSet& set) {
    for (PendingIo& io : set.reads) {
      if (io.result.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return false;
    }
    return true;
  };
  ClassHome& master_home = master();
  for (size_t c = 0; c < n; ++c) {
    StagingSet& set = sets_[c % depth];
    while (next_read_ <= c) {
      if (absl::Status s = refill_next(); !s.ok()) return drain_sets(s);
    }
    // While chunk c's reads are in flight, the coming chunks' sets are
    // written back and refilled, one at a time.
    while (!ready(set) && next_read_ < std::min(n, c + depth)) {
      if (absl::Status s = refill_next(); !s.ok()) return drain_sets(s);
    }
    if (absl::Status s = finish_all(set.reads); !s.ok()) return drain_sets(s);
    wait_snapshot(c, hyper.step);
    const bool in_cache = master_in_cache(c);
    kernels::cpu::AdamBuffers b;
    b.n = numel(c);
    b.params = reinterpret_cast<float*>(in_cache ? param_cache_[c] : set.master);
    b.grads = grads_.host[c];
    b.m = set.m;
    b.v = set.v;
    {
      trace::Scope span(trace::Lane::kAdam, "adam", static_cast<int64_t>(c));
      kernels::cpu::fused_adam_step(b, hyper);
    }
    set.step = hyper.step;
    set.computed = true;
    set.write_master = !in_cache;
    if (&master_home != &params_) {
      // The working copy on the host or the device (on NVMe it would share
      // the master's home).
      if (absl::Status s = from_host(params_, c, b.params); !s.ok()) return drain_sets(s);
    }
    // The next step may use the chunk as soon as its new weights are where it
    // reads them: a host or device working copy, or the host cache of an NVMe
    // one; the next optimizer run and every checkpoint wait for this run to
    // end. Uncached NVMe weights are reported once written.
    if (params_.tier != Tier::kNvme || (c < param_cache_.size() && param_cache_[c] != nullptr)) {
      chunk_done(c, hyper.step, b.params);
    } else {
      set.report_written = true;
      if (absl::Status s = write_back(set); !s.ok()) return drain_sets(s);
    }
  }
  absl::Status status;
  for (StagingSet& set : sets_) status.Update(write_back(set));
  for (StagingSet& set : sets_) status.Update(retire_writes(set));
  return drain_sets(status);
}

void OffloadState::preload() {
  if (placement_.optimizer != Tier::kNvme) return;
  DSINF_CHECK(next_read_ == 0);
  const size_t first = std::min(sets_.size(), layouts_.size());
  for (; next_read_ < first; ++next_read_) {
    if (absl::Status s = issue_reads(next_read_); !s.ok()) {
      s = drain_sets(s);
      {
        std::lock_guard<std::mutex> lock(mu_);
        optimizer_error_.Update(s);
      }
      updated_cv_.notify_all();
      return;
    }
  }
}

void OffloadState::cancel() {
  // The reads ahead are only reads: dropping them changes nothing.
  const absl::Status s = drain_sets(absl::OkStatus());
  if (!s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    optimizer_error_.Update(s);
  }
}

void OffloadState::run(double lr, int64_t step, float grad_scale) {
  const kernels::AdamHyper hyper = adam_hyper(config_.optimizer, lr, step, grad_scale);
  absl::Status status;
  {
    std::lock_guard<std::mutex> lock(mu_);
    status = optimizer_error_;
  }
  if (status.ok()) {
    status = master().tier == Tier::kNvme ? step_on_nvme(hyper) : step_on_host(hyper);
  } else {
    status = drain_sets(status);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    optimizer_error_.Update(status);
    if (status.ok()) finished_step_ = step;
  }
  updated_cv_.notify_all();
}

// ---- the optimizer ----

absl::Status OffloadState::zero_grads() {
  if (streamer_) streamer_->begin_step();
  // Each accumulator is zeroed at its first visit (the optimizer may still be
  // reading last step's gradients of later chunks).
  grads_fresh_.assign(layouts_.size(), true);
  return absl::OkStatus();
}

void OffloadState::chunk_done(size_t c, int64_t step, const float* new_params) {
  // The shard leaves a stale chunk's cache alone until it hears of the update.
  const bool cached = new_params != nullptr && c < param_cache_.size() && param_cache_[c];
  if (cached) {
    if (reinterpret_cast<const std::byte*>(new_params) != param_cache_[c]) {
      std::memcpy(param_cache_[c], new_params, bytes(c));
    }
    cache_current_[c] = 1;
  }
  // The shard hears first: the model's fetch, sent once it sees the update
  // below, then reaches the shard's mailbox behind this message.
  if (streamer_) streamer_->updated(c, cached);
  {
    std::lock_guard<std::mutex> lock(mu_);
    updated_step_[c] = step;
  }
  updated_cv_.notify_all();
}

absl::Status OffloadState::wait_updated(size_t c) {
  std::unique_lock<std::mutex> lock(mu_);
  updated_cv_.wait(lock, [&] { return updated_step_[c] >= step_count_ || !optimizer_error_.ok(); });
  return optimizer_error_;
}

void OffloadState::set_optimizer_steps(int64_t steps) {
  std::lock_guard<std::mutex> lock(mu_);
  step_count_ = steps;
  finished_step_ = steps;
  // Restored homes are current for the restored step.
  updated_step_.assign(layouts_.size(), steps);
}

void OffloadState::preload_optimizer_state() {
  if (optimizer_actor_ && placement_.optimizer == Tier::kNvme) optimizer_actor_->preload();
}

absl::Status OffloadState::wait_optimizer() {
  if (optimizer_actor_) optimizer_actor_->wait_idle();
  std::lock_guard<std::mutex> lock(mu_);
  return optimizer_error_;
}

absl::StatusOr<double> OffloadState::grad_norm() {
  if (absl::Status s = wait_optimizer(); !s.ok()) return s;
  for (size_t c = 0; c < layouts_.size(); ++c) {
    DSINF_CHECK_MSG(!grads_fresh_[c], "a chunk received no gradient this step");
  }
  double sum = 0;
  for (size_t c = 0; c < layouts_.size(); ++c) {
    // The backend's sum_squares is this same kernel on the CPU backend.
    sum += grads_.tier == Tier::kDevice
               ? backend_->sum_squares(grads_.device[c], numel(c))
               : kernels::cpu::grad_stats(grads_.host[c], kernels::cpu::DType::kF32, numel(c))
                     .sum_squares;
  }
  return std::sqrt(sum);
}

absl::Status OffloadState::skip_step() {
  if (optimizer_actor_) optimizer_actor_->cancel();
  return wait_optimizer();
}

absl::Status OffloadState::step(double lr, float grad_scale) {
  if (absl::Status s = wait_optimizer(); !s.ok()) return s;
  // No parameter chunk may be read while the optimizer rewrites the homes.
  if (streamer_) streamer_->invalidate();
  {
    std::lock_guard<std::mutex> lock(mu_);  // wait_updated reads it on other threads
    ++step_count_;
  }
  if (master().tier == Tier::kDevice) {
    // The backend's own step, in order.
    absl::Status s = step_on_device(adam_hyper(config_.optimizer, lr, step_count_, grad_scale));
    std::lock_guard<std::mutex> lock(mu_);
    if (s.ok()) finished_step_ = step_count_;
    return s;
  }
  optimizer_actor_->step(lr, step_count_, grad_scale);
  return absl::OkStatus();
}

absl::Status OffloadState::step_on_device(const kernels::AdamHyper& hyper) {
  ClassHome& master_home = master();
  for (size_t c = 0; c < layouts_.size(); ++c) {
    {
      wait_snapshot(c, hyper.step);
      trace::Scope span(trace::Lane::kAdam, "adam (device)", static_cast<int64_t>(c));
      backend_->adam_step(master_home.device[c], grads_.device[c], m_.device[c], v_.device[c],
                          numel(c), hyper);
    }
    if (&master_home != &params_) {
      // The new weights to the working copy's home: straight into its host block,
      // or through staging on the way to NVMe (or only to its host cache).
      std::byte* dst = params_.tier == Tier::kHost ? params_.host[c] : staging_[kStageParams];
      absl::StatusOr<float*> p = to_host(master_home, c, dst);
      if (!p.ok()) return p.status();
      if (!(params_.tier == Tier::kNvme && param_cache_[c] != nullptr)) {
        if (absl::Status s = from_host(params_, c, *p); !s.ok()) return s;
      }
    }
    chunk_done(c, hyper.step,
               params_.tier == Tier::kNvme ? reinterpret_cast<const float*>(staging_[kStageParams])
                                           : nullptr);
  }
  return absl::OkStatus();
}

absl::Status OffloadState::step_on_host(const kernels::AdamHyper& hyper) {
  ClassHome& master_home = master();
  for (size_t c = 0; c < layouts_.size(); ++c) {
    kernels::cpu::AdamBuffers b;
    b.n = numel(c);
    b.params = reinterpret_cast<float*>(master_home.host[c]);
    b.grads = grads_.host[c];
    b.m = m_.host[c];
    b.v = v_.host[c];
    wait_snapshot(c, hyper.step);
    {
      trace::Scope span(trace::Lane::kAdam, "adam", static_cast<int64_t>(c));
      kernels::cpu::fused_adam_step(b, hyper);
    }
    // A cached NVMe working copy is refreshed in its cache alone (chunk_done).
    if (&master_home != &params_ && !(params_.tier == Tier::kNvme && param_cache_[c] != nullptr)) {
      if (absl::Status s = from_host(params_, c, b.params); !s.ok()) return s;
    }
    chunk_done(c, hyper.step, b.params);
  }
  return absl::OkStatus();
}

}  // namespace dsinf::trainer
