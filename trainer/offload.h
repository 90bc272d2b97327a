// The offload runtime's state: every chunk of every tensor class at its home
// tier (device arena, host pool, NVMe swap store), streamed through device
// slots for forward and backward and through host staging for the optimizer.
//
// The math is that of the resident run, bit for bit: the model computes the
// same gradient visits and they are added into the accumulators by the same
// float addition wherever those live; the gradient norm is the same function
// summed in chunk order; Adam is the same fused CPU step on the same bytes;
// every move between tiers is a copy, and every NVMe read is checksummed.
//
// Schedule of a step: forward and backward over the micro-batches, each
// chunk's working parameters pulled into a device slot by the actors of
// actors/param_streamer.h, which keep the next chunks in the learned order
// loading while the model computes (NVMe reads overlap compute); then the norm
// over all gradients (clipping and overflow need every gradient first); then
// Adam chunk by chunk, writing master, m and v back to their homes and the new
// working parameters to theirs -- in the optimizer actor (actors/optimizer.h)
// when the optimizer state is off the device, in the order the next forward
// uses the chunks, so the next step starts at once and waits per chunk only
// for the update it needs (its parameters, or its gradient accumulator).
//
// Optimizer state on NVMe is staged through plan.optimizer_sets host buffer
// sets. Reading it needs no gradient, so the trainer calls
// preload_optimizer_state() as the step's last micro-batch begins and the
// first sets fill while that micro-batch computes; once the norm is known,
// Adam finds them ready, and each set, written back, takes the next chunk's
// reads. Master weights whose working copy is cached on the host
// (offload_param.max_in_cpu) are read and updated in that cache, which is
// then the chunk's current copy: its NVMe copy is not rewritten while cached.
#pragma once

#include <array>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "actors/optimizer.h"
#include "actors/param_streamer.h"
#include "kernels/backend.h"
#include "memory/chunk_layout.h"
#include "memory/host_pool.h"
#include "nvme/engine.h"
#include "nvme/swap_store.h"
#include "trainer/checkpoint.h"
#include "trainer/chunk_source.h"
#include "trainer/config.h"
#include "trainer/placement.h"

namespace dsinf::trainer {

// The chunks of one tensor class at one tier.
struct ClassHome {
  Tier tier = Tier::kDevice;
  std::vector<float*> device;       // kDevice: arena buffers
  std::vector<std::byte*> host;     // kHost: host pool blocks
  nvme::SwapStore* swap = nullptr;  // kNvme: chunk c is swap chunk first_id + c
  uint32_t first_id = 0;
};

class OffloadState final : public ChunkSource,
                           public CheckpointState,
                           private actors::OptimizerWork {
 public:
  // The actors (parameter streaming, the optimizer) live in `actors`, which
  // outlives this.
  static absl::StatusOr<std::unique_ptr<OffloadState>> create(
      kernels::Backend* backend, const Config& config, const Placement& placement,
      const MemoryPlan& plan, const std::vector<memory::ChunkLayout>& layouts,
      actors::ActorSystem* actors);
  ~OffloadState() override;

  // ---- ChunkSource: forward and backward ----
  absl::StatusOr<const float*> acquire_params(size_t c) override;
  absl::Status release_params(size_t c) override;
  absl::Status accumulate_grads(size_t c, const float* visit) override;
  absl::Status write_params(size_t c, const float* host) override;
  absl::Status read_chunk(size_t c, bool gradients, float* host) override;

  // ---- the optimizer ----
  absl::Status zero_grads();
  // Waits for the optimizer's run of the last step to end; its error, if any.
  absl::Status settle() { return wait_optimizer(); }
  // The step's last micro-batch begins: the optimizer starts reading the state
  // of the first chunks it will update (optimizer state on NVMe only).
  void preload_optimizer_state();
  absl::StatusOr<double> grad_norm();
  // Adam with `lr`, gradients multiplied by grad_scale (the clip coefficient).
  absl::Status step(double lr, float grad_scale);
  // The step is skipped (an fp16 overflow): state read ahead for it is dropped.
  absl::Status skip_step();

  // ---- CheckpointState: master weights, m and v ----
  absl::Status read_class(int cls, size_t c, std::byte* host) override;
  absl::Status write_class(int cls, size_t c, const std::byte* host) override;
  bool has_optimizer() const override { return true; }
  int64_t optimizer_steps() const override { return step_count_; }
  void set_optimizer_steps(int64_t steps) override;
  // With the optimizer state off the device, checkpoints are written in the
  // background: the snapshot's reader waits for the optimizer run of its step
  // to end, and the runs of later steps update chunk c only once it is read.
  bool saves_in_background() const override { return placement_.optimizer != Tier::kDevice; }
  void begin_snapshot() override;
  absl::Status read_snapshot(int cls, size_t c, std::byte* host) override;
  void snapshot_chunk_read(size_t c) override;
  void end_snapshot() override;
  // Seconds the optimizer waited for a background save to read a chunk.
  double snapshot_wait_s() const;

  // Peak bytes of the host pool and bytes held on NVMe.
  size_t host_peak_bytes() const { return pool_ ? pool_->stats().peak_bytes : 0; }
  // Bytes read from and written to the swap since start.
  nvme::EngineStats nvme_stats() const { return engine_ ? engine_->stats() : nvme::EngineStats{}; }
  size_t host_in_use_bytes() const { return pool_ ? pool_->stats().in_use_bytes : 0; }
  // The parameter streamer's counters (zero when parameters stay on the device).
  actors::StreamerStats streamer_stats() const {
    return streamer_ ? streamer_->stats() : actors::StreamerStats{};
  }
  size_t nvme_bytes() const;

 private:
  // Staging buffers in the host pool, each the size of the largest chunk.
  enum Staging : size_t { kStageParams, kStageVisit, kNumStaging };

  // A swap request in flight; `result` holds its status once it completes.
  struct PendingIo {
    std::shared_ptr<std::promise<absl::Status>> done;
    std::future<absl::Status> result;
  };
  // One chunk's optimizer state on its way between NVMe and Adam.
  struct StagingSet {
    std::byte* master = nullptr;  // null when every master comes from the host cache
    std::byte* m = nullptr;
    std::byte* v = nullptr;
    std::vector<PendingIo> reads, writes;
    size_t chunk = 0;             // the chunk it holds
    int64_t step = 0;             // ... for this optimizer step
    bool computed = false;        // updated, its writes not yet issued
    bool write_master = false;    // ... the master weights among them (not in the cache)
    bool report_written = false;  // chunk_done once its writes end (uncached NVMe weights)
  };
  OffloadState(kernels::Backend* backend, const Config& config, const Placement& placement,
               const std::vector<memory::ChunkLayout>& layouts, actors::ActorSystem* actors);
  absl::Status allocate(const MemoryPlan& plan);
  absl::StatusOr<ClassHome> make_home(Tier tier, nvme::SwapStore* swap, uint32_t first_id,
                                      bool zeroed);
  size_t bytes(size_t c) const { return layouts_[c].bytes(); }
  size_t numel(size_t c) const { return layouts_[c].numel_padded(); }
  // Chunk c of `home` as a host pointer: the block itself on the host, else
  // copied into `staging` (device download, or a checksummed NVMe read).
  absl::StatusOr<float*> to_host(const ClassHome& home, size_t c, std::byte* staging);
  // Chunk c of `home` from host memory (nothing to do when src is its own block).
  absl::Status from_host(ClassHome& home, size_t c, const float* src);
  ClassHome& master() { return placement_.master_is_working_copy() ? params_ : master_; }
  // Chunk c of the working parameters has a host cache holding its current weights.
  bool cache_current(size_t c) const {
    return c < param_cache_.size() && param_cache_[c] != nullptr && cache_current_[c] != 0;
  }
  // The master weights of chunk c are the working copy's host cache.
  bool master_in_cache(size_t c) const {
    return placement_.master_is_working_copy() && cache_current(c);
  }
  absl::StatusOr<PendingIo> start_io(ClassHome& home, size_t c, std::byte* buffer, bool write);
  static absl::Status finish_all(std::vector<PendingIo>& ios);
  // The optimizer actor's work (actors::OptimizerWork), on its thread.
  void preload() override;
  void run(double lr, int64_t step, float grad_scale) override;
  void cancel() override;
  // Starts the reads of chunk c's state into its set (free: no I/O pending).
  absl::Status issue_reads(size_t c);
  // Issues the writes of a computed set (once).
  absl::Status write_back(StagingSet& set);
  // Waits for a set's writes and reports its chunk if that waited for them.
  absl::Status retire_writes(StagingSet& set);
  // Waits for every request of every set; the first error, or `status`.
  absl::Status drain_sets(absl::Status status);
  absl::Status step_on_nvme(const kernels::AdamHyper& hyper);
  absl::Status step_on_host(const kernels::AdamHyper& hyper);
  absl::Status step_on_device(const kernels::AdamHyper& hyper);
  // Chunk c's update of step `step` is complete: its homes are current.
  // new_params (host, the chunk's new weights) refreshes its host cache, if any.
  void chunk_done(size_t c, int64_t step, const float* new_params);
  // Blocks until chunk c is updated for the latest step (or the optimizer failed).
  absl::Status wait_updated(size_t c);
  // Blocks until the optimizer's run is over; its error, if any.
  absl::Status wait_optimizer();
  // The optimizer's run for `step` may update chunk c: a snapshot of an
  // earlier step has read it (or none is being taken).
  void wait_snapshot(size_t c, int64_t step);
  // Chunk c's state as its homes hold it (the optimizer idle).
  absl::Status read_home(int cls, size_t c, std::byte* host);

  kernels::Backend* backend_;
  actors::ActorSystem* actors_;
  Config config_;
  Placement placement_;
  std::vector<memory::ChunkLayout> layouts_;
  std::unique_ptr<memory::HostPool> pool_;
  bool pool_registered_ = false;  // with the backend, for DMA
  std::unique_ptr<nvme::IoEngine> engine_;
  std::unique_ptr<nvme::SwapStore> param_swap_, optimizer_swap_;
  ClassHome params_, grads_, master_, m_, v_;
  std::vector<float*> slots_;             // device slots for streamed parameter chunks
  std::vector<std::byte*> staging_;       // host staging buffers (largest chunk each)
  std::vector<std::byte*> slot_staging_;  // one per slot: NVMe reads of parameter chunks
  std::vector<std::byte*> param_cache_;  // per chunk: host copy of an NVMe parameter chunk, or null
  std::vector<uint8_t> cache_current_;   // per chunk: that copy holds the current weights
  std::vector<StagingSet> sets_;         // optimizer state on NVMe: chunk c uses set c % size
  size_t next_read_ = 0;                 // the optimizer's next chunk to read (its thread only)
  int64_t step_count_ = 0;
  // The optimizer actor runs while the next step begins: chunk c's parameters
  // are used, and its gradients reset, only once its update is done.
  std::unique_ptr<actors::OptimizerActor> optimizer_actor_;
  mutable std::mutex mu_;
  std::condition_variable updated_cv_;
  std::vector<int64_t> updated_step_;  // per chunk, guarded by mu_
  absl::Status optimizer_error_;       // guarded by mu_
  int64_t finished_step_ = 0;          // the last step whose optimizer run ended; mu_
  // A background save's snapshot, guarded by mu_: of step snapshot_step_, its
  // first snapshot_read_ chunks read.
  bool snapshot_active_ = false;
  int64_t snapshot_step_ = 0;
  size_t snapshot_read_ = 0;
  int64_t snapshot_wait_ns_ = 0;
  std::condition_variable snapshot_cv_;
  std::vector<bool> grads_fresh_;  // per chunk: not yet accumulated into this step
  // Last, so it stops (and its reads drain) before the stores and buffers go.
  std::unique_ptr<actors::ParamStreamer> streamer_;
};

}  // namespace dsinf::trainer
