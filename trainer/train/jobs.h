// The jobs behind the CLI: train (with resume, evaluation, checkpoints and
// monitors), eval and export. Each validates everything it reads before it
// writes anything.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "trainer/config/config.h"
#include "trainer/config/runtime_spec.h"
#include "trainer/models/safetensors.h"

namespace dsinf::trainer {

struct RunOptions {
  bool json = false;  // stdout carries JSON Lines only; human lines go to stderr
  RunEnvironment env;
};

absl::Status run_train(const LoadedConfig& loaded, const RunOptions& options);
absl::Status run_eval(const LoadedConfig& loaded, const RunOptions& options);
// `dsinf export`'s own options.
struct ExportOptions {
  // A LoRA run exports the base with the adapters folded in (kMerged, its
  // default), or a PEFT adapter directory (kAdapter).
  enum class Kind { kModel, kMerged, kAdapter };
  Kind kind = Kind::kModel;
  TensorDtype dtype = TensorDtype::kF32;
  uint64_t max_shard_bytes = 5'000'000'000;  // transformers' default shard size, 5 GB
};
absl::Status run_export(const LoadedConfig& loaded, const std::string& out_path,
                        const ExportOptions& export_options, const RunOptions& options);

}  // namespace dsinf::trainer
