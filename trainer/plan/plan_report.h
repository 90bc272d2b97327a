// `dsinf plan CONFIG [--tiers FILE] [--json]`: where every tensor class of the
// model the config describes will live, the bytes on each tier, and a
// predicted step time. Nothing is allocated and nothing is trained; the bytes
// are exactly those the training runtime reserves (placement.h's plan_memory,
// the same chunk layouts), and a budget too small exits 2 with the message
// `dsinf train` would give.
//
// The step-time prediction (a model, not a measurement):
//   tokens_per_step = train_batch_size * data.seq_len
//   compute_s   = k * params * tokens_per_step / cpu_flops, k = 6 (forward 2,
//                 backward 4), 8 with activation_checkpointing (the forward is
//                 recomputed); attention's T^2 terms are left out.
//                 cpu_flops: a short timed 512x512x512 matmul_forward through
//                 the CPU backend (or "cpu_gflops" from the tiers file).
//                 The matmul's peak rate makes this a lower bound: a 4-layer,
//                 256-channel model at T=128 trained about 2.7x slower than
//                 compute_s + adam_s predicted (small matmuls, attention and
//                 the elementwise ops run below peak).
//   adam_s      = 28 bytes * params / host_update_gbps: the CPU Adam reads
//                 weight, gradient, m, v and writes weight, m, v, and is bound
//                 by host memory bandwidth (README "CPU Adam", `dsinf bench adam`).
//   nvme_read_s = nvme_read_bytes / nvme read GB/s, with per step
//                   working params on NVMe: every micro-batch reads each chunk
//                   in forward and again in backward, and the embedding chunk
//                   once more for the tied logits in forward:
//                   gradient_accumulation_steps * (2 * params + embedding);
//                   plus once more by the optimizer when they are the master copy;
//                 master, m, v on NVMe: each read once by the optimizer.
//   nvme_write_s = nvme_write_bytes / nvme write GB/s, with per step
//                 master, m, v on NVMe: each written once by the optimizer;
//                 working params on NVMe as a separate copy: written once
//                 (the updated weights).
//   On the CPU backend compute and Adam share the cores: cpu_s = compute_s + adam_s.
//   step_s   = max(cpu_s, nvme_read_s, nvme_write_s)   (everything overlapped)
//   serial_s = cpu_s + nvme_read_s + nvme_write_s      (nothing overlapped)
//   bound    = the term of the max: "cpu", "nvme_read" or "nvme_write".
// Host<->device copies are left out (memcpy on the CPU backend; no CUDA yet).
//
// Bandwidths come from, in order: --tiers FILE (a `dsinf bench tiers --out`
// JSON; tiers_source "file"), the cache $XDG_CACHE_HOME/dsinf/tiers.json or
// ~/.cache/dsinf/tiers.json ("cache"), else a quick in-process measurement
// (host update kernel on small arrays; NVMe with a small O_DIRECT file in the
// config's nvme_path when it names one) written to the cache ("measured").
// A tiers file may carry "cpu_gflops" (dsinf plan's own key; the cache does),
// else the matmul is timed. A tiers file without NVMe figures leaves the NVMe
// terms unknown (null) when the placement uses NVMe; the cache is then topped
// up with a quick NVMe measurement. The cache holds one NVMe measurement (its
// nvme_path is noted in it) and serves every config; delete it, or pass
// --tiers, to predict for another disk.
#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "trainer/config/config.h"
#include "trainer/config/runtime_spec.h"

namespace dsinf::trainer {

struct PlanOptions {
  bool json = false;       // stdout: one JSON object; human text on stderr
  std::string tiers_path;  // --tiers FILE; empty: cache, else measure
  RunEnvironment env;      // the device override (as train reads it)
};

// Measured bandwidths the prediction uses.
struct TierBandwidths {
  double host_update_gbps = 0;
  std::optional<double> nvme_read_gbps;  // nullopt: not measured
  std::optional<double> nvme_write_gbps;
  std::optional<double> cpu_gflops;  // nullopt: time a matmul
};

// Parses a `dsinf bench tiers` result (host_update_gbps > 0 required; nvme an
// object with read_gbps and write_gbps > 0, or null/absent; optional
// cpu_gflops > 0). kInvalidArgument starting with `name`.
absl::StatusOr<TierBandwidths> parse_tiers_json(const std::string& text, const std::string& name);
// Reads and parses --tiers FILE; errors start with "--tiers FILE".
absl::StatusOr<TierBandwidths> read_tiers_file(const std::string& path);

struct StepInputs {
  // The parameters the products run over, a frozen one (LoRA's base: no
  // weight gradient) counted as 2/3 of one; and those Adam updates.
  double params = 0;
  double trained_params = 0;
  double tokens_per_step = 0;
  double flops_per_param_token = 6;  // 8 with activation checkpointing
  double cpu_gflops = 0;
  double host_update_gbps = 0;
  double nvme_read_bytes = 0;
  double nvme_write_bytes = 0;
  std::optional<double> nvme_read_gbps;
  std::optional<double> nvme_write_gbps;
};

struct StepPrediction {
  double compute_s = 0;
  double adam_s = 0;
  std::optional<double> nvme_read_s;  // nullopt: bytes to move but no bandwidth measured
  std::optional<double> nvme_write_s;
  double cpu_s = 0;
  double step_s = 0;
  double serial_s = 0;
  std::string bound;  // "cpu", "nvme_read" or "nvme_write"
};

StepPrediction predict_step(const StepInputs& in);

// The `plan` job. kInvalidArgument (exit 2) for a budget too small (the
// message train gives) or a bad --tiers file (naming it).
absl::Status run_plan(const LoadedConfig& loaded, const PlanOptions& options);

}  // namespace dsinf::trainer
