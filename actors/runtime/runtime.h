// The runtime of one run: the backend, the model's layer program, every chunk
// of every tensor class at its home (ChunkStore), and the actors that move
// them -- nvme_swap, the parameter streamer's, the optimizer and the trainer.
// There is one path: a run with every class on the device (ZeRO stage 0) is
// the same runtime with every home on the device.
//
// The math is that of the plain all-in-memory step, bit for bit, wherever the
// bytes live: the model computes the same gradient visits and they are added
// into the accumulators by the same float addition; the gradient norm is the
// same function summed in chunk order; Adam is the same step on the same
// bytes; every move between tiers is a copy, and every NVMe read is checksummed.
//
// Schedule of a step (the trainer actor runs it): forward and backward over
// the micro-batches, each chunk's working parameters pulled into a device
// slot by the streamer's actors, which keep the next chunks loading while the
// model computes; then the norm over all gradients (clipping and overflow need
// every gradient first); then the optimizer actor updates chunk by chunk in
// the order the next forward uses them -- beside the next step when its state
// is off the device -- and the next step waits per chunk only for the update
// it needs (its parameters, or its gradient accumulator).
#pragma once

#include <cstddef>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "actors/messages.h"
#include "actors/param_streamer.h"
#include "actors/runtime/checkpoint_state.h"
#include "actors/runtime/chunk_gates.h"
#include "actors/runtime/chunk_store.h"
#include "actors/runtime/loss_scaler.h"
#include "actors/runtime/model.h"
#include "actors/runtime/overlapped_reduce.h"
#include "actors/runtime/partition.h"
#include "actors/runtime/placement.h"
#include "actors/runtime/spec.h"
#include "actors/system.h"
#include "kernels/backend.h"
#include "memory/aligned_buffer.h"
#include "nvme/engine.h"

namespace dsinf::actors {

class Runtime final : public ChunkSource, public CheckpointState {
 public:
  // kInvalidArgument naming the config and the budget key when it cannot fit.
  static absl::StatusOr<std::unique_ptr<Runtime>> create(const RuntimeSpec& spec,
                                                         const ModelDef& model);
  ~Runtime() override;  // every actor stopped and its I/O drained, then the memory freed
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  const RuntimeSpec& spec() const { return spec_; }
  const MemoryPlan& plan() const { return plan_; }
  const Placement& placement() const { return spec_.placement; }
  kernels::Backend& backend() { return *backend_; }
  const std::string& device_description() const { return device_description_; }
  const std::optional<kernels::CudaDeviceInfo>& cuda_device() const { return cuda_device_; }
  LayerProgram& model() { return *model_; }
  const std::vector<memory::ChunkLayout>& layouts() const { return store_->layouts(); }
  LossScaler& loss_scaler() { return loss_scaler_; }
  // The instruction set the CPU Adam runs with (e.g. "avx512bf16").
  std::string cpu_adam_isa() const;

  // One training step on the trainer actor, waited for.
  absl::StatusOr<StepOutcome> step(StepRequest request);
  // Waits until the last step's work is done (the optimizer's run).
  absl::Status settle() { return gates_->wait_idle(); }

  // ---- the step, as the trainer actor drives it ----
  // Gradients start at zero: each accumulator is zeroed at its first visit
  // (the optimizer may still be reading last step's gradients of later chunks).
  void begin_step();
  // The step's last micro-batch begins: optimizer state on NVMe starts loading.
  void last_micro_batch();
  // The L2 norm of every gradient, summed chunk by chunk in chunk order.
  absl::StatusOr<double> grad_norm();
  // Adam with `lr` and gradients times `grad_scale`: in the optimizer actor,
  // which runs on beside the next step when the state is off the device.
  absl::Status update(double lr, float grad_scale);
  // No update this step (an fp16 overflow): state read ahead for it is dropped.
  absl::Status skip_update();

  // ---- several ranks (runtime_ranks.cc) ----
  int rank() const { return spec_.comm ? spec_.comm->rank() : 0; }
  int ranks() const { return spec_.comm ? spec_.comm->size() : 1; }
  // The owner of each chunk (partition.h; -1: frozen).
  const std::vector<int>& owners() const { return owners_; }
  // `mine` (the same count on every rank) from every rank, rank after rank.
  absl::StatusOr<std::vector<double>> gather_values(const std::vector<double>& mine);
  // A micro-batch's backward is over: every chunk got the visits its model declares.
  void end_micro_batch();

  // ---- ChunkSource ----
  absl::StatusOr<const float*> acquire_params(size_t c) override;
  absl::Status release_params(size_t c) override;
  absl::Status accumulate_grads(size_t c, const float* visit) override;
  absl::Status write_params(size_t c, const float* host) override;
  absl::Status read_chunk(size_t c, bool gradients, float* host) override;

  // ---- CheckpointState ----
  absl::Status read_class(int cls, size_t c, std::byte* host) override;
  absl::Status write_class(int cls, size_t c, const std::byte* host) override;
  bool has_optimizer() const override { return spec_.training; }
  bool holds_optimizer_state(size_t c) const override { return store_->trainable(c); }
  int64_t optimizer_steps() const override { return gates_->steps(); }
  void set_optimizer_steps(int64_t steps) override { gates_->restore(steps); }
  // With the optimizer state off the device, checkpoints are written in the
  // background: the snapshot's reader waits for the optimizer run of its step
  // to end, and the runs of later steps update chunk c only once it is read.
  // With several ranks each writes its part so; the collective that commits
  // the parts runs on the model's thread (trainer/train/save.h).
  bool saves_in_background() const override {
    return spec_.training && spec_.placement.optimizer != Tier::kDevice;
  }
  void begin_snapshot() override { gates_->begin_snapshot(); }
  absl::Status read_snapshot(int cls, size_t c, std::byte* host) override;
  void snapshot_chunk_read(size_t c) override;
  void end_snapshot() override;

  // ---- figures ----
  // The bytes of each tensor class this rank keeps, wherever they live.
  struct StateBytes {
    size_t params = 0, grads = 0, optimizer = 0;  // optimizer: master weights (unless they
                                                  // are the working copy), m and v
    size_t largest_chunk = 0;                     // fp32 bytes of the largest chunk
  };
  StateBytes state_bytes() const;
  double snapshot_wait_s() const { return gates_->snapshot_wait_s(); }
  // Several ranks: seconds the model thread spent on the gradient exchange
  // (copying visits out, sending, waiting for and adding the other ranks').
  double exchange_s() const { return static_cast<double>(exchange_ns_) * 1e-9; }
  size_t host_peak_bytes() const;
  size_t host_in_use_bytes() const;
  size_t nvme_bytes() const { return store_->nvme_bytes(); }
  // Bytes read from and written to the swap since start.
  nvme::EngineStats nvme_stats() const;
  // The parameter streamer's counters (zero when parameters stay on the device).
  StreamerStats streamer_stats() const;

 private:
  explicit Runtime(const RuntimeSpec& spec);
  absl::Status start(const ModelDef& model);
  absl::Status start_actors();
  absl::Status zero_nvme_moments();
  // Chunk c of `home` in host memory: its host block or host cache itself,
  // else copied into `staging` (a device download, or an NVMe read).
  absl::StatusOr<float*> to_host(const ClassHome& home, size_t c, std::byte* staging);
  // Chunk c of `home` from host memory.
  absl::Status from_host(ClassHome& home, size_t c, const float* src);
  // The home of class `cls` of chunk c (a frozen chunk's weights are its parameters).
  ClassHome& home_of(int cls, size_t c);
  absl::Status read_home(int cls, size_t c, std::byte* host);
  // Chunk c's working copy as fp32 (bytes(c) at dst), and from fp32.
  absl::Status read_working(size_t c, float* dst);
  absl::Status write_working(size_t c, const float* src);
  // The accumulator of chunk c starts at +0 at its first add of the step.
  absl::Status start_accumulator(size_t c);
  // Visit `add` (device memory, the working dtype) into chunk c's accumulator.
  absl::Status add_visit(size_t c, const void* add);
  // Several ranks: the ranks' visits of chunk c, reduced at its owner in the
  // order one rank adds them (runtime_ranks.cc).
  absl::Status start_ranks(const std::vector<memory::ChunkLayout>& all);
  absl::Status reserve_exchange();
  // With the CUDA backend, NCCL, and gradient accumulators on every rank's
  // GPU: device_exchange_ carries the blocking exchanges over device buffers
  // (NCCL over the MPI world, or a torchrun-style world's own NCCL).
  absl::Status start_device_exchange();
  // Visits and stage 3's parameters go between device buffers: always on the
  // CPU backend (its device memory is host memory), with NCCL on GPUs.
  bool exchanges_on_device() const;
  kernels::comm::Communicator& device_exchange();
  absl::Status reduce_on_device(size_t c, const void* visit, size_t bytes);
  absl::Status reduce_visit(size_t c, const void* visit);
  // A visit (device memory) in host memory: itself on the CPU backend (once
  // the compute is done), else downloaded into `staging` after the compute
  // stream's work on it.
  absl::StatusOr<const std::byte*> host_visit(const void* visit, size_t bytes,
                                              std::byte* staging);
  // The owner's parts of chunk c, one per rank in rank order, into its accumulator.
  absl::Status add_parts(size_t c, const std::vector<const std::byte*>& parts);
  absl::Status add_part(size_t c, const std::byte* part);
  // Stage 0: the owners' accumulators to every rank. Stage >= 1: the owners'
  // new weights to every rank.
  absl::Status share_grads();
  absl::Status share_params();
  // Stage 3: each rank holds the chunks it owns, and its share of the frozen
  // ones, only (param_holders; at their home: the device, or offloaded to its
  // host or NVMe), and a chunk's parameters go from its holder (its home or,
  // offloaded, its streamer slot) to every rank each time the model acquires
  // it (into one of the remote slots).
  bool partitions_params() const { return ranks() > 1 && spec_.zero_stage == 3 && spec_.training; }
  // Chunk c is another rank's (stage 3: its layout says so).
  bool remote(size_t c) const { return store_->layouts()[c].remote(); }
  // The holder's chunk c (device memory, `mine`) to every rank; another
  // rank's into a remote slot, given back by release_remote.
  absl::Status send_params(size_t c, const float* mine);
  absl::StatusOr<const float*> receive_params(size_t c);
  bool borrows_streamer_slot(size_t c) const;
  absl::StatusOr<float*> remote_slot_for(size_t c);
  absl::Status release_remote(size_t c);
  // Chunk c of an fp32 home from rank `root` to every rank.
  absl::Status broadcast_home(ClassHome& home, size_t c, int root);
  // The per-chunk squared sums, each from its owner.
  absl::StatusOr<std::vector<double>> owners_values(std::vector<double> mine);
  // A command to the optimizer actor, counted by the gates until it is over.
  template <typename... Args>
  void command(Args&&... args) {
    gates_->command_sent();
    caf::anon_send(optimizer_, std::forward<Args>(args)...);
  }

  RuntimeSpec spec_;
  MemoryPlan plan_;
  LossScaler loss_scaler_;
  // First, so it goes last: every actor below lives in it.
  std::unique_ptr<ActorSystem> system_;
  std::unique_ptr<kernels::Backend> backend_;
  std::string device_description_;
  std::optional<kernels::CudaDeviceInfo> cuda_device_;
  std::unique_ptr<LayerProgram> model_;
  std::unique_ptr<ChunkStore> store_;
  std::unique_ptr<ChunkGates> gates_;
  nvme_swap_actor swap_;
  std::unique_ptr<ParamStreamer> streamer_;
  optimizer_actor optimizer_;
  trainer_actor trainer_;
  std::vector<bool> grads_fresh_;  // per chunk: not yet accumulated into this step
  // Several ranks: chunk owners, which chunks the model trains, the visits
  // each gets a micro-batch (and has had in this one), this rank's earlier
  // visits of a multi-visit chunk, and host staging for the exchanges.
  std::vector<int> owners_;
  std::vector<int> holders_;  // stage 3: each chunk's param_holders() (else empty)
  std::vector<bool> model_trainable_;
  std::vector<int> visits_expected_, visits_seen_;
  std::vector<std::byte*> held_visits_;
  // The exchange's host staging (exchange_staging, from the host pool).
  ExchangeStaging exchange_;
  std::byte* rank_send_ = nullptr;
  std::byte* rank_recv_ = nullptr;
  std::unique_ptr<OverlappedReduce> overlapped_;  // overlap_comm
  std::unique_ptr<kernels::comm::Communicator> device_comm_;  // NCCL (start_device_exchange)
  kernels::comm::Communicator* device_exchange_ = nullptr;    // it, or the world's own
  int64_t exchange_ns_ = 0;
  void* rank_device_ = nullptr;  // a device area for a received part (GPU accumulators)
  struct RemoteSlot {
    float* data = nullptr;  // device, the largest chunk
    long chunk = -1;        // the chunk it holds while acquired
  };
  std::vector<RemoteSlot> remote_slots_;
};

}  // namespace dsinf::actors
