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
//   trace       a Chrome/Perfetto trace JSON of the last timed step, one lane
//               per resource (opens in ui.perfetto.dev).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "trainer/config.h"

namespace dsinf::trainer {

struct BenchStepOptions {
  int steps = 10;          // timed steps per round, after two warm-up steps
  std::string trace_path;  // empty: <train.output_dir>/step-trace.json
  bool json = false;
};

absl::Status run_bench_step(const LoadedConfig& loaded, const BenchStepOptions& options);

}  // namespace dsinf::trainer
