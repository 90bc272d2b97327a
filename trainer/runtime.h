// What every job (train, eval, export, bench step) starts with: the backend,
// the model, and the state of its chunks -- the model's resident chunks and the
// Optimizer when every class lives on the device, else the offload runtime's
// OffloadState, from which the model streams its chunks.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "actors/system.h"
#include "kernels/backend.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/gpt2.h"
#include "trainer/loss_scaler.h"
#include "trainer/offload.h"
#include "trainer/optimizer.h"
#include "trainer/placement.h"

namespace dsinf::trainer {

struct Runtime {
  // fp16's loss scale (1 and inert otherwise); restored from checkpoints.
  LossScaler loss_scaler;
  // First of the rest, so it goes last: every actor below lives in it.
  std::unique_ptr<actors::ActorSystem> actors;
  std::unique_ptr<kernels::Backend> backend;
  std::string device_description;                      // the backend chosen and why, for the log
  std::optional<kernels::CudaDeviceInfo> cuda_device;  // the GPU it runs on, if any
  std::unique_ptr<GPT2> model;
  std::unique_ptr<Optimizer> optimizer;  // resident, train only
  std::unique_ptr<OffloadState> offload;
  std::unique_ptr<CheckpointState> resident_state;
  Placement placement;
  MemoryPlan plan;
  std::string weights_source;

  CheckpointState& checkpoint_state() { return offload ? *offload : *resident_state; }
  absl::Status zero_grad() { return offload ? offload->zero_grads() : model->zero_grad(); }
  // The step's last micro-batch is about to run: optimizer state on NVMe
  // starts loading for the step that follows it.
  void last_micro_batch() {
    if (offload) offload->preload_optimizer_state();
  }
  absl::StatusOr<double> grad_norm() {
    if (offload) return offload->grad_norm();
    return optimizer->grad_norm(*model);
  }
  absl::Status step(double lr, float grad_scale) {
    if (offload) return offload->step(lr, grad_scale);
    optimizer->step(*model, lr, grad_scale);
    return absl::OkStatus();
  }
  // No update this step (an fp16 overflow).
  absl::Status skip_step() { return offload ? offload->skip_step() : absl::OkStatus(); }
  // Waits until the last step's work is done (the optimizer actor's run).
  absl::Status settle() { return offload ? offload->settle() : absl::OkStatus(); }
  size_t host_pool_peak_bytes() const { return offload ? offload->host_peak_bytes() : 0; }
  size_t host_pool_bytes() const { return offload ? offload->host_in_use_bytes() : 0; }
  size_t nvme_bytes() const { return offload ? offload->nvme_bytes() : 0; }
};

// kInvalidArgument naming the config and the budget key when it cannot fit.
absl::StatusOr<Runtime> make_runtime(const Config& config, bool with_optimizer);

// The matmul operand precision fp16 / bf16 ask for.
kernels::Precision matmul_precision(const Config& config);

// The device a run asks for: config.device, unless the environment's
// DSINF_DEVICE (same syntax) overrides it; kInvalidArgument for a bad
// DSINF_DEVICE.
struct ChosenDevice {
  DeviceConfig device;
  std::string origin;  // "<config>: device" or "DSINF_DEVICE", for messages
};
absl::StatusOr<ChosenDevice> chosen_device(const Config& config);

// The backend chosen_device() names: "auto" takes CUDA when it was built and
// the device is usable, else the CPU. kInvalidArgument naming the key when
// "cuda" is asked for and there is none.
struct BackendChoice {
  std::unique_ptr<kernels::Backend> backend;
  std::string description;                             // e.g. "cuda:0 NVIDIA H100 ... (auto; ...)"
  std::optional<kernels::CudaDeviceInfo> cuda_device;  // the GPU it runs on
};
absl::StatusOr<BackendChoice> make_backend(const Config& config);

// With every class on the device: whether memory.device_budget_bytes holds the
// model, its activations and (with_optimizer) Adam's state; the error names the
// key and the bytes needed. (Offloaded placements are checked by plan_memory.)
absl::Status check_resident_budget(const Config& config, bool with_optimizer);

}  // namespace dsinf::trainer
