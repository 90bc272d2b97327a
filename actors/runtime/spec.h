// What the runtime needs to know of a run, from whatever config the front
// read: where each class lives and within which budgets, which device, the
// NVMe engine, the optimizer's constants and the step's shape. trainer/
// fills it from a DeepSpeed-style config; bench/ and the tests build their own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "actors/runtime/loss_scaler.h"
#include "actors/runtime/partition.h"
#include "actors/runtime/placement.h"
#include "kernels/backend.h"
#include "kernels/comm/communicator.h"
#include "nvme/engine.h"
#include "nvme/fault_engine.h"

namespace dsinf::actors {

// The device a run asks for, and who asked ("<config>: device" or an
// environment variable), for messages.
struct DeviceRequest {
  enum class Kind { kAuto, kCpu, kCuda };
  Kind kind = Kind::kAuto;
  int index = 0;              // cuda:N
  std::string name = "auto";  // as written
  std::string origin;
};

// Adam's constants (the learning rate comes with each step).
struct AdamSpec {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool adam_w_mode = true;  // decoupled weight decay; else L2 added to the gradient
  bool bias_correction = true;
};

// The shape of one step: micro-batches of B windows, accumulated.
struct StepSpec {
  int micro_batch = 1;                // B
  int64_t gradient_accumulation = 1;  // micro-batches a step
  double gradient_clipping = 0;       // the global norm bound; 0: off
  LossScaleSpec loss_scale;           // fp16
  std::string checkpoint_dir;         // named when a step fails ("... is intact")
};

struct RuntimeSpec {
  std::string source;    // the config file: the prefix of budget messages
  bool training = true;  // false: parameters only (eval, export): no gradients, no optimizer
  Placement placement;
  MemoryBudgets budgets;
  DeviceRequest device;
  kernels::BackendOptions backend;  // its device_budget_bytes is budgets.device_bytes
  nvme::EngineKind engine_kind = nvme::EngineKind::kAuto;
  nvme::EngineOptions aio;
  // A test hook: swap requests fail as this plan says (the fault engine).
  std::optional<nvme::FaultPlan> nvme_faults;
  AdamSpec adam;
  StepSpec step;
  // The data-parallel ranks (null: this process alone; not owned) and ZeRO's
  // stage, which says what each rank keeps (partition.h).
  kernels::comm::Communicator* comm = nullptr;
  int zero_stage = 0;
  ExchangeSpec exchange;  // overlap_comm, reduce_bucket_size
};

// The kernels' hyperparameters for optimizer step `step` (1-based) with
// learning rate `lr` and gradients multiplied by `grad_scale`: every Adam of
// the runtime, host or device, steps with exactly these values.
kernels::AdamHyper adam_hyper(const AdamSpec& adam, double lr, int64_t step, float grad_scale);

// The clip coefficient DeepSpeed applies: clip / (norm + 1e-6) when that is
// below 1, else 1 (also 1 when clipping is off, clip == 0).
float clip_coefficient(double grad_norm, double clip);

}  // namespace dsinf::actors
