// The offload runtime's optimizer: the step on its own thread, the per-chunk
// gates the next step waits on, and the pipelined swap I/O for state on NVMe.
#include <cmath>
#include <cstring>
#include <future>

#include "kernels/cpu/adam.h"
#include "memory/check.h"
#include "memory/trace.h"
#include "trainer/offload.h"
#include "trainer/optimizer.h"

namespace dsinf::trainer {

// ---- asynchronous swap I/O (the optimizer's pipeline) ----

struct OffloadState::PendingIo {
  std::shared_ptr<std::promise<absl::Status>> done;
  std::future<absl::Status> result;
};

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

// Adam over chunks whose master, m and v live on NVMe, pipelined: chunk c+1's
// reads and chunk c-1's writes are in flight while chunk c computes.
absl::Status OffloadState::step_on_nvme(const kernels::AdamHyper& hyper) {
  ClassHome& master_home = master();
  std::byte* sets[2][3] = {{staging_[kStageMaster], staging_[kStageM], staging_[kStageV]},
                           {staging_[kStageMaster2], staging_[kStageM2], staging_[kStageV2]}};
  std::vector<PendingIo> reads[2], writes[2];
  size_t written_chunk[2] = {0, 0};   // the chunk whose writes a set holds
  bool reported[2] = {false, false};  // ... already reported done (before its writes end)
  ClassHome* homes[3] = {&master_home, &m_, &v_};
  auto issue = [&](size_t c, bool write) -> absl::Status {
    for (int k = 0; k < 3; ++k) {
      absl::StatusOr<PendingIo> io = start_io(*homes[k], c, sets[c % 2][k], write);
      if (!io.ok()) return io.status();
      // (Not `(write ? writes : reads)[c % 2]`: GCC 12 with -fsanitize=undefined
      // miscompiles a conditional of two arrays and indexes the wrong one.)
      std::vector<PendingIo>& list = write ? writes[c % 2] : reads[c % 2];
      list.push_back(*std::move(io));
    }
    return absl::OkStatus();
  };
  // Every request in flight completes before this returns, also after an error.
  auto drain = [&](absl::Status status) {
    for (auto* list : {&reads[0], &reads[1], &writes[0], &writes[1]})
      status.Update(finish_all(*list));
    return status;
  };
  const size_t n = layouts_.size();
  if (absl::Status s = issue(0, /*write=*/false); !s.ok()) return drain(s);
  for (size_t c = 0; c < n; ++c) {
    const int set = static_cast<int>(c % 2);
    if (absl::Status s = finish_all(reads[set]); !s.ok()) return drain(s);
    if (c + 1 < n) {
      // The other set is free once the writes of chunk c-1 are done.
      const bool had_writes = !writes[1 - set].empty();
      if (absl::Status s = finish_all(writes[1 - set]); !s.ok()) return drain(s);
      if (had_writes && !reported[1 - set]) {
        chunk_done(written_chunk[1 - set], hyper.step,
                   reinterpret_cast<const float*>(sets[1 - set][0]));
      }
      if (absl::Status s = issue(c + 1, /*write=*/false); !s.ok()) return drain(s);
    }
    kernels::cpu::AdamBuffers b;
    b.n = numel(c);
    b.params = reinterpret_cast<float*>(sets[set][0]);
    b.grads = grads_.host[c];
    b.m = sets[set][1];
    b.v = sets[set][2];
    {
      trace::Scope span(trace::Lane::kAdam, "adam", static_cast<int64_t>(c));
      kernels::cpu::fused_adam_step(b, hyper);
    }
    if (absl::Status s = issue(c, /*write=*/true); !s.ok()) return drain(s);
    written_chunk[set] = c;
    if (&master_home != &params_) {
      // The working copy elsewhere: written from the same buffer, which stays
      // untouched until this set's writes are done.
      if (params_.tier == Tier::kNvme) {
        absl::StatusOr<PendingIo> io = start_io(params_, c, sets[set][0], /*write=*/true);
        if (!io.ok()) return drain(io.status());
        writes[set].push_back(*std::move(io));
      } else if (absl::Status s = from_host(params_, c, b.params); !s.ok()) {
        return drain(s);
      }
    }
    // The next step may use the chunk as soon as its new weights are where it
    // reads them: a host or device working copy, or the host cache of an NVMe
    // one. Master, m and v reach NVMe meanwhile; the next optimizer run and
    // every checkpoint wait for this run to end. Uncached NVMe weights are
    // reported once written.
    reported[set] = params_.tier != Tier::kNvme || param_cache_[c] != nullptr;
    if (reported[set]) chunk_done(c, hyper.step, b.params);
  }
  // The last chunks' writes.
  for (int set : {static_cast<int>((n - 1) % 2), static_cast<int>(n % 2)}) {
    if (writes[set].empty()) continue;
    if (absl::Status s = finish_all(writes[set]); !s.ok()) return drain(s);
    if (!reported[set]) {
      chunk_done(written_chunk[set], hyper.step, reinterpret_cast<const float*>(sets[set][0]));
    }
  }
  return drain(absl::OkStatus());
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
  if (cached) std::memcpy(param_cache_[c], new_params, bytes(c));
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
  // Restored homes are current for the restored step.
  updated_step_.assign(layouts_.size(), steps);
}

absl::Status OffloadState::wait_optimizer() {
  if (optimizer_.joinable()) optimizer_.join();
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

absl::Status OffloadState::step(double lr, float grad_scale) {
  if (absl::Status s = wait_optimizer(); !s.ok()) return s;
  // No parameter chunk may be read while the optimizer rewrites the homes.
  if (streamer_) streamer_->invalidate();
  {
    std::lock_guard<std::mutex> lock(mu_);  // wait_updated reads it on other threads
    ++step_count_;
  }
  const kernels::AdamHyper hyper = adam_hyper(config_.optimizer, lr, step_count_, grad_scale);
  const Tier tier = master().tier;
  if (tier == Tier::kDevice) return step_on_device(hyper);  // the backend's own step, in order
  optimizer_ = std::thread([this, hyper, tier] {
    absl::Status status = tier == Tier::kNvme ? step_on_nvme(hyper) : step_on_host(hyper);
    if (!status.ok()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        optimizer_error_ = status;
      }
      updated_cv_.notify_all();
    }
  });
  return absl::OkStatus();
}

absl::Status OffloadState::step_on_device(const kernels::AdamHyper& hyper) {
  ClassHome& master_home = master();
  for (size_t c = 0; c < layouts_.size(); ++c) {
    {
      trace::Scope span(trace::Lane::kAdam, "adam (device)", static_cast<int64_t>(c));
      backend_->adam_step(master_home.device[c], grads_.device[c], m_.device[c], v_.device[c],
                          numel(c), hyper);
    }
    if (&master_home != &params_) {
      // The new weights to the working copy's home: straight into its host block,
      // or through staging on the way to NVMe.
      std::byte* dst = params_.tier == Tier::kHost ? params_.host[c] : staging_[kStageParams];
      absl::StatusOr<float*> p = to_host(master_home, c, dst);
      if (!p.ok()) return p.status();
      if (absl::Status s = from_host(params_, c, *p); !s.ok()) return s;
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
    {
      trace::Scope span(trace::Lane::kAdam, "adam", static_cast<int64_t>(c));
      kernels::cpu::fused_adam_step(b, hyper);
    }
    if (&master_home != &params_) {
      if (absl::Status s = from_host(params_, c, b.params); !s.ok()) return s;
    }
    chunk_done(c, hyper.step, b.params);
  }
  return absl::OkStatus();
}

}  // namespace dsinf::trainer
