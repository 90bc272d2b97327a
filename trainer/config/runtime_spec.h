// A config, with DeepSpeed's meaning, as what the runtime needs to know
// (actors/runtime/spec.h): where each tensor class lives, the budgets, the
// device, the NVMe engine, Adam's constants and the step's shape. The one
// place that turns config keys into runtime settings.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "actors/runtime/spec.h"
#include "kernels/comm/communicator.h"
#include "nvme/fault_engine.h"
#include "trainer/config/config.h"

namespace dsinf::trainer {

// What a run takes from outside its config: the user's device override and
// the test-only hooks. The CLI reads them from the environment
// (DSINF_DEVICE, DSINF_NVME_FAULT, DSINF_SAVE_PACE_MS, DSINF_CPU_DEFER_COPIES);
// nothing below it does.
struct RunEnvironment {
  std::optional<std::string> device;  // DSINF_DEVICE: overrides the config's device key
  // Test hooks: the n-th swap request fails (the fault tests); each chunk of a
  // background save is held this much longer (races with updates); the CPU
  // backend completes copies as late as a GPU could.
  std::optional<nvme::FaultPlan> nvme_faults;
  int save_pace_ms = 0;
  bool defer_copies = false;
  // The data-parallel ranks this process is one of (null: alone; not owned).
  kernels::comm::Communicator* comm = nullptr;
  // Its rank among the ranks on its node: the CUDA device of a "cuda" or
  // "auto" device without an index (each rank of a node its own GPU).
  int local_rank = 0;
};

// This process's rank and the world size (0 and 1 alone).
int rank_of(const RunEnvironment& env);
int world_of(const RunEnvironment& env);

// Where each class lives, with DeepSpeed's meaning: parameters at stage 3 per
// offload_param, the optimizer at stages 1-3 per offload_optimizer, gradients
// with the optimizer (on the host when it is offloaded).
actors::Placement place(const Config& config);

// The device a run asks for: config.device, unless the environment overrides
// it, with "cuda" / "auto" on the GPU of env.local_rank; kInvalidArgument for
// a bad override.
absl::StatusOr<actors::DeviceRequest> device_request(const Config& config,
                                                     const RunEnvironment& env);

// The runtime's settings for this config. `training` false: parameters only
// (eval, export).
absl::StatusOr<actors::RuntimeSpec> runtime_spec(const Config& config, const RunEnvironment& env,
                                                 bool training);

// "eio@write:3" style: the n-th swap request (or read, or write) fails with
// that fault; kInvalidArgument naming `what` otherwise.
absl::StatusOr<nvme::FaultPlan> parse_fault_plan(const std::string& text, const std::string& what);

}  // namespace dsinf::trainer
