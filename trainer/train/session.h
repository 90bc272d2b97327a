// What every job starts with: the config's model, the runtime that holds it,
// and where its weights came from; and the token data a job reads.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "actors/runtime/runtime.h"
#include "nlohmann/json.hpp"
#include "trainer/config/config.h"
#include "trainer/config/runtime_spec.h"
#include "trainer/models/model.h"

namespace dsinf::trainer {

struct Session {
  std::unique_ptr<Model> model;
  std::unique_ptr<actors::Runtime> runtime;  // after model: it ends first
  std::string weights_source;                // the checkpoint, file or seed the weights came from
  // LoRA: the frozen base's identity, a CRC32C of its weights as they were
  // loaded (empty without a frozen base).
  std::string base_fingerprint;
};

// The model and its runtime; `training` false holds parameters only.
// `fp32_weights` keeps the working weights in fp32 even with bf16/fp16 on
// (export: the checkpoint's master weights, not their rounded copy).
// kInvalidArgument naming the config and the key when it cannot fit.
absl::StatusOr<Session> open_session(const Config& config, const RunEnvironment& env,
                                     bool training, bool fp32_weights = false);

// The weights a run starts from: model.init_from, else the seeded
// initialisation; with LoRA, then model.adapter_from. Sets weights_source and
// base_fingerprint. Errors name the key.
absl::Status load_start_weights(const Config& config, Session& session);
// A checkpoint's state into the session (a LoRA checkpoint's adapters over
// the base load_start_weights gave): kInvalidArgument when it was trained on
// another base.
absl::StatusOr<struct TrainState> load_session_checkpoint(const Config& config, Session& session,
                                                          const std::string& path);
// The weights eval and export use: the newest checkpoint in output_dir, else
// model.init_from, else the seeded initialisation.
absl::Status load_inference_weights(const Config& config, Session& session);

// Human lines go to stdout, or to stderr when stdout carries JSON. Among
// several ranks only rank 0 prints them (set_primary_output(false) elsewhere).
void set_primary_output(bool primary);
bool primary_output();
std::ostream& human(bool json);
void emit_json(const nlohmann::json& object);

}  // namespace dsinf::trainer
