// `dsinf bench step CONFIG [--steps N] [--trace FILE] [--json]`: the real
// training step of a config against its bound.
//
// It runs the config's runtime (placement, budgets, actors) on generated
// tokens, without reading data or writing checkpoints, and reports:
//   step_s      the time of a step: the median over 3 rounds of `steps` steps
//               each (a round counts its last optimizer run to its end), each
//               round followed by `steps` compute-alone passes, so that step
//               and compute are measured side by side on a machine whose
//               speed drifts;
//   components  each resource's busy time for one step, measured alone on
//               this machine: compute (forward + backward of the step's
//               micro-batches with every chunk resident; the median of the
//               rounds'), copy in / copy out
//               (memcpy of the bytes the step moved host -> device and back),
//               CPU Adam (the fused step over every parameter), NVMe read and
//               NVMe write (the bytes the step read and wrote, through a fresh
//               engine with the config's aio settings on a file in nvme_path);
//   bound_s     the slowest independent resource. On the CPU backend compute,
//               copies and Adam share the cores and count as one:
//               max(compute + copy in + copy out + adam, nvme read, nvme write);
//   ratio       step_s / bound_s;
//   trace       a Chrome/Perfetto trace JSON of one more step and its
//               optimizer run, one lane per resource (opens in ui.perfetto.dev);
//               the bytes it moved are the step's.
// The front passes the config in as the runtime's settings and its model.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "actors/runtime/model.h"
#include "actors/runtime/spec.h"

namespace dsinf::bench {

struct BenchStepOptions {
  int steps = 10;          // timed steps per round, after two warm-up steps
  std::string trace_path;  // empty: <trace_dir>/step-trace.json
  bool json = false;
};

// What the bench needs of the run besides its runtime settings.
struct BenchStepRun {
  std::string name;       // the config file, for the log
  std::string placement;  // e.g. "zero stage 3: params on nvme, optimizer on nvme"
  std::string trace_dir;  // where the trace goes by default (train.output_dir)
  double lr = 1e-3;       // the learning rate of every step
  uint64_t seed = 42;     // the model's initialisation
};

absl::Status run_bench_step(const actors::RuntimeSpec& spec, const actors::ModelDef& model,
                            const BenchStepRun& run, const BenchStepOptions& options);

}  // namespace dsinf::bench
