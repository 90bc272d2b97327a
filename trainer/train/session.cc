#include "trainer/train/session.h"

#include <filesystem>
#include <iostream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "memory/util/crc32c.h"
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

namespace {

// Passes every write on, taking a CRC32C of each frozen chunk's weights as
// they go in: the base's fingerprint, at no extra read.
class FingerprintingSource final : public actors::ChunkSource {
 public:
  FingerprintingSource(actors::ChunkSource& inner, const std::vector<memory::ChunkLayout>& layouts)
      : inner_(inner), layouts_(layouts), crcs_(layouts.size(), 0) {}
  absl::StatusOr<const float*> acquire_params(size_t c) override {
    return inner_.acquire_params(c);
  }
  absl::Status release_params(size_t c) override { return inner_.release_params(c); }
  absl::Status accumulate_grads(size_t c, const float* visit) override {
    return inner_.accumulate_grads(c, visit);
  }
  absl::Status write_params(size_t c, const float* host) override {
    if (!layouts_[c].trainable()) {
      crcs_[c] = util::crc32c(host, layouts_[c].numel_padded() * sizeof(float));
    }
    return inner_.write_params(c, host);
  }
  absl::Status read_chunk(size_t c, bool gradients, float* host) override {
    return inner_.read_chunk(c, gradients, host);
  }
  // "crc32c:<hex>/<chunks>": every frozen chunk's CRC, in chunk order, under one CRC.
  std::string fingerprint() const {
    uint32_t crc = 0;
    size_t frozen = 0;
    for (size_t c = 0; c < layouts_.size(); ++c) {
      if (layouts_[c].trainable()) continue;
      crc = util::crc32c_extend(crc, &crcs_[c], sizeof(crcs_[c]));
      ++frozen;
    }
    return frozen == 0 ? std::string() : absl::StrFormat("crc32c:%08x/%d", crc, frozen);
  }

 private:
  actors::ChunkSource& inner_;
  const std::vector<memory::ChunkLayout>& layouts_;
  std::vector<uint32_t> crcs_;
};

absl::Status with_key(const Config& config, const char* key, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat(config.source_path, ": ", key, ": ", status.message()));
}

absl::Status load_adapter_from(const Config& config, Session& session) {
  const std::string file =
      (std::filesystem::path(config.model.adapter_from) / "adapter_model.safetensors").string();
  absl::StatusOr<std::unique_ptr<TensorReader>> adapter = open_weights(file);
  if (!adapter.ok()) return with_key(config, "model.adapter_from", adapter.status());
  return with_key(config, "model.adapter_from",
                  session.model->load_adapter(**adapter, *session.runtime));
}

}  // namespace

absl::Status load_start_weights(const Config& config, Session& session) {
  const std::vector<memory::ChunkLayout> layouts = session.model->layouts();
  FingerprintingSource source(*session.runtime, layouts);
  if (!config.model.init_from.empty()) {
    absl::StatusOr<std::unique_ptr<TensorReader>> weights = open_weights(config.model.init_from);
    absl::Status status =
        weights.ok() ? session.model->load_hf(**weights, source) : weights.status();
    if (!status.ok()) return with_key(config, "model.init_from", status);
    session.weights_source = config.model.init_from;
  } else {
    session.weights_source =
        absl::StrCat("seeded initialisation (model.seed ", config.model.seed, ")");
    if (absl::Status s = session.model->init_random(config.model.seed, source); !s.ok()) return s;
  }
  session.base_fingerprint = source.fingerprint();
  if (config.model.adapter_from.empty()) return absl::OkStatus();
  if (absl::Status s = load_adapter_from(config, session); !s.ok()) return s;
  session.weights_source += " + adapter " + config.model.adapter_from;
  return absl::OkStatus();
}

absl::StatusOr<TrainState> load_session_checkpoint(const Config& config, Session& session,
                                                   const std::string& path) {
  // A LoRA checkpoint holds the adapters; the base comes first.
  if (session.model->base_chunks() > 0) {
    if (absl::Status s = load_start_weights(config, session); !s.ok()) return s;
  }
  absl::StatusOr<TrainState> state =
      load_checkpoint(path, config.model, session.model->layouts(), *session.runtime);
  if (!state.ok()) return state.status();
  if (state->base_fingerprint != session.base_fingerprint) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": the adapters were trained on a base with fingerprint ",
        state->base_fingerprint.empty() ? "(none)" : state->base_fingerprint,
        ", but model.init_from gives ",
        session.base_fingerprint.empty() ? "(none)" : session.base_fingerprint,
        " (resume against the base the run started from)"));
  }
  session.weights_source = session.model->base_chunks() > 0
                               ? absl::StrCat(session.weights_source, " + ", path)
                               : path;
  return state;
}

absl::Status load_inference_weights(const Config& config, Session& session) {
  absl::StatusOr<std::optional<std::string>> latest =
      find_latest_checkpoint(config.train.output_dir);
  if (!latest.ok()) return latest.status();
  if (!latest->has_value()) return load_start_weights(config, session);
  return load_session_checkpoint(config, session, **latest).status();
}

namespace {
bool g_primary = true;
std::ostream& null_stream() {
  static std::ostream sink(nullptr);  // no buffer: every write is dropped
  return sink;
}
}  // namespace

void set_primary_output(bool primary) { g_primary = primary; }
bool primary_output() { return g_primary; }

std::ostream& human(bool json) {
  if (!g_primary) return null_stream();
  return json ? std::cerr : std::cout;
}

void emit_json(const nlohmann::json& object) {
  if (g_primary) std::cout << object.dump() << std::endl;
}

}  // namespace dsinf::trainer
