// `dsinf export`: the weights as safetensors with Hugging Face names.
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "memory/util/format.h"
#include "trainer/models/safetensors.h"
#include "trainer/train/jobs.h"
#include "trainer/train/session.h"

namespace dsinf::trainer {

absl::Status run_export(const LoadedConfig& loaded, const std::string& out_path,
                        const RunOptions& options) {
  namespace fs = std::filesystem;
  const Config& config = loaded.config;
  std::error_code ec;
  const fs::path parent = fs::absolute(out_path, ec).parent_path();
  if (out_path.empty() || fs::is_directory(out_path, ec) || !fs::is_directory(parent, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--out: '", out_path, "' must name a file in an existing directory"));
  }
  absl::StatusOr<Session> session = open_session(config, options.env, /*training=*/false);
  if (!session.ok()) return session.status();
  if (absl::Status s = load_inference_weights(config, *session); !s.ok()) return s;
  absl::StatusOr<std::vector<HostTensor>> tensors =
      session->model->export_hf(*session->runtime, /*gradients=*/false);
  if (!tensors.ok()) return tensors.status();
  std::vector<TensorToWrite> to_write;
  size_t bytes = 0;
  for (const HostTensor& t : *tensors) {
    to_write.push_back({t.name, t.shape, t.data.data()});
    bytes += t.data.size() * sizeof(float);
  }
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"dsinf_model", session->model->shape_text()},
      {"dsinf_weights", session->weights_source}};
  if (absl::Status s = write_safetensors(out_path, to_write, metadata); !s.ok()) return s;
  human(options.json) << absl::StrFormat("exported %d tensors (%s) from %s to %s\n",
                                         to_write.size(), util::format_bytes(bytes),
                                         session->weights_source, out_path);
  if (options.json) {
    emit_json({{"file", out_path},
               {"tensors", to_write.size()},
               {"bytes", bytes},
               {"weights", session->weights_source}});
  }
  return absl::OkStatus();
}

}  // namespace dsinf::trainer
