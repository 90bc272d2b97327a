#include "trainer/train/session.h"

#include <iostream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "trainer/models/hf_weights.h"
#include "trainer/train/checkpoint.h"

namespace dsinf::trainer {

absl::StatusOr<Session> open_session(const Config& config, const RunEnvironment& env,
                                     bool training, bool fp32_weights) {
  Session session;
  absl::StatusOr<std::unique_ptr<Model>> model = make_model(config.model);
  if (!model.ok()) {
    return absl::Status(model.status().code(),
                        absl::StrCat(config.source_path, ": ", model.status().message()));
  }
  session.model = *std::move(model);
  absl::StatusOr<actors::RuntimeSpec> spec = runtime_spec(config, env, training);
  if (!spec.ok()) return spec.status();
  if (fp32_weights) spec->placement.working_dtype = kernels::DType::kF32;
  absl::StatusOr<std::unique_ptr<actors::Runtime>> runtime =
      actors::Runtime::create(*spec, *session.model);
  if (!runtime.ok()) return runtime.status();
  session.runtime = *std::move(runtime);
  return session;
}

absl::Status load_init_from(const Config& config, Session& session) {
  absl::StatusOr<std::unique_ptr<TensorReader>> weights = open_weights(config.model.init_from);
  absl::Status status =
      weights.ok() ? session.model->load_hf(**weights, *session.runtime) : weights.status();
  if (status.ok()) {
    session.weights_source = config.model.init_from;
    return status;
  }
  return absl::Status(status.code(),
                      absl::StrCat(config.source_path, ": model.init_from: ", status.message()));
}

absl::Status load_inference_weights(const Config& config, Session& session) {
  absl::StatusOr<std::optional<std::string>> latest =
      find_latest_checkpoint(config.train.output_dir);
  if (!latest.ok()) return latest.status();
  if (latest->has_value()) {
    absl::StatusOr<TrainState> state =
        load_checkpoint(**latest, config.model, session.model->layouts(), *session.runtime);
    if (!state.ok()) return state.status();
    session.weights_source = **latest;
    return absl::OkStatus();
  }
  if (!config.model.init_from.empty()) return load_init_from(config, session);
  session.weights_source =
      absl::StrCat("seeded initialisation (model.seed ", config.model.seed, ")");
  return session.model->init_random(config.model.seed, *session.runtime);
}

std::ostream& human(bool json) { return json ? std::cerr : std::cout; }

void emit_json(const nlohmann::json& object) { std::cout << object.dump() << std::endl; }

}  // namespace dsinf::trainer
