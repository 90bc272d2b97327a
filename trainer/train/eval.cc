#include "trainer/train/eval.h"

#include <algorithm>
#include <iostream>

#include "absl/strings/str_format.h"
#include "trainer/data/text_data.h"
#include "trainer/train/jobs.h"
#include "trainer/train/session.h"

namespace dsinf::trainer {

absl::StatusOr<EvalResult> evaluate(actors::LayerProgram& model, const Windows& windows,
                                    int max_batch) {
  EvalResult result;
  result.windows = windows.count();
  const int T = windows.T();
  std::vector<int32_t> inputs(static_cast<size_t>(max_batch) * T), targets(inputs.size());
  double sum = 0;
  for (int64_t w = 0; w < result.windows; w += max_batch) {
    const int B = static_cast<int>(std::min<int64_t>(max_batch, result.windows - w));
    for (int b = 0; b < B; ++b) {
      windows.copy(w + b, inputs.data() + static_cast<size_t>(b) * T,
                   targets.data() + static_cast<size_t>(b) * T);
    }
    absl::StatusOr<float> loss = model.forward(inputs.data(), targets.data(), B);
    if (!loss.ok()) return loss.status();
    sum += model.last_loss_sum();
    for (size_t i = 0; i < static_cast<size_t>(B) * T; ++i) result.tokens += targets[i] >= 0;
  }
  result.loss = result.tokens > 0 ? sum / static_cast<double>(result.tokens) : 0.0;
  return result;
}

absl::Status run_eval(const LoadedConfig& loaded, const RunOptions& options) {
  const Config& config = loaded.config;
  const bool own = !config.data.eval_path.empty();
  const std::string& path = own ? config.data.eval_path : config.data.path;
  absl::StatusOr<DataLoader> loader = DataLoader::open(config);
  if (!loader.ok()) return loader.status();
  absl::StatusOr<Windows> windows =
      loader->load(path, own ? "data.eval_path" : "data.path", std::cerr);
  if (!windows.ok()) return windows.status();
  absl::StatusOr<Session> session = open_session(config, options.env, /*training=*/false);
  if (!session.ok()) return session.status();
  if (absl::Status s = load_inference_weights(config, *session); !s.ok()) return s;
  absl::StatusOr<EvalResult> result =
      evaluate(session->runtime->model(), *windows,
               static_cast<int>(config.train_micro_batch_size_per_gpu));
  if (!result.ok()) return result.status();
  human(options.json) << absl::StrFormat(
      "eval loss %.6f over %d tokens (%d windows) of %s; weights: %s\n", result->loss,
      result->tokens, result->windows, path, session->weights_source);
  if (options.json) {
    emit_json({{"loss", result->loss},
               {"tokens", result->tokens},
               {"windows", result->windows},
               {"weights", session->weights_source}});
  }
  return absl::OkStatus();
}

}  // namespace dsinf::trainer
