#include "trainer/train/generate.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "memory/util/check.h"

namespace dsinf::trainer {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The runtime's layer program while a decoder runs the model: no passes.
class NoPasses final : public actors::LayerProgram {
 public:
  void set_chunk_source(actors::ChunkSource*) override {}
  absl::StatusOr<float> forward(const int32_t*, const int32_t*, int) override {
    return absl::FailedPreconditionError("a generation runtime runs no training passes");
  }
  double last_loss_sum() const override { return 0; }
  absl::Status backward(float) override {
    return absl::FailedPreconditionError("a generation runtime runs no training passes");
  }
};

// The model as the runtime plans it for generation: its chunks, with the
// decoder's device bytes in place of training's activations.
class GenerationModelDef final : public actors::ModelDef {
 public:
  GenerationModelDef(const Model& model, size_t decoder_bytes)
      : model_(model), decoder_bytes_(decoder_bytes) {}
  std::string describe() const override { return model_.describe(); }
  std::vector<memory::ChunkLayout> layouts() const override { return model_.layouts(); }
  size_t num_parameters() const override { return model_.num_parameters(); }
  int seq_len() const override { return model_.seq_len(); }
  int vocab_size() const override { return model_.vocab_size(); }
  double flops_per_token() const override { return model_.flops_per_token(); }
  size_t activation_bytes(int) const override { return decoder_bytes_; }
  absl::StatusOr<std::unique_ptr<actors::LayerProgram>> instantiate(kernels::Backend*,
                                                                    int) const override {
    return std::make_unique<NoPasses>();
  }
  absl::Status init_random(uint64_t seed, actors::ChunkSource& chunks) const override {
    return model_.init_random(seed, chunks);
  }

 private:
  const Model& model_;
  size_t decoder_bytes_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GenerationSession>> open_generation(const Config& config,
                                                                  const RunEnvironment& env) {
  auto g = std::make_unique<GenerationSession>();
  absl::StatusOr<std::unique_ptr<Model>> model = make_model(config.model);
  absl::StatusOr<std::unique_ptr<Decoder>> decoder =
      model.ok() ? make_decoder(config.model) : model.status();
  if (!decoder.ok()) {
    return absl::Status(decoder.status().code(),
                        absl::StrCat(config.source_path, ": ", decoder.status().message()));
  }
  g->session.model = *std::move(model);
  g->runtime_model =
      std::make_unique<GenerationModelDef>(*g->session.model, (*decoder)->device_bytes());
  absl::StatusOr<actors::RuntimeSpec> spec = runtime_spec(config, env, /*training=*/false);
  if (!spec.ok()) return spec.status();
  absl::StatusOr<std::unique_ptr<actors::Runtime>> runtime =
      actors::Runtime::create(*spec, *g->runtime_model);
  if (!runtime.ok()) return runtime.status();
  g->session.runtime = *std::move(runtime);
  if (absl::Status s = load_inference_weights(config, g->session); !s.ok()) return s;
  g->decoder = *std::move(decoder);
  actors::Runtime& rt = *g->session.runtime;
  if (absl::Status s = g->decoder->bind(&rt.backend(), &rt); !s.ok()) return s;
  return g;
}

const char* stop_reason_name(StopReason reason) {
  switch (reason) {
    case StopReason::kEos:
      return "eos";
    case StopReason::kMaxTokens:
      return "max_new_tokens";
    case StopReason::kWindow:
      return "window";
  }
  return "?";
}

size_t printable_prefix(std::string_view text) {
  size_t end = text.size();
  // Back to the start of the last character (at most 3 continuation bytes).
  size_t start = end;
  while (start > 0 && end - start < 4 && (static_cast<unsigned char>(text[start - 1]) & 0xC0) == 0x80) {
    --start;
  }
  if (start > 0) {
    const unsigned char lead = static_cast<unsigned char>(text[start - 1]);
    const size_t need = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (end - (start - 1) < need) end = start - 1;  // incomplete: wait for the rest
  }
  const std::string_view replacement = "\xEF\xBF\xBD";
  if (text.substr(0, end).ends_with(replacement)) end -= replacement.size();
  return end;
}

std::string TextStream::decode(size_t begin, size_t end) const {
  return tokenizer_.decode(absl::MakeConstSpan(ids_).subspan(begin, end - begin),
                           /*skip_special_tokens=*/true);
}

std::string TextStream::push(int32_t id) {
  ids_.push_back(id);
  const std::string before = decode(prefix_offset_, read_offset_);
  const std::string now = decode(prefix_offset_, ids_.size());
  const size_t end = printable_prefix(now);
  // An incomplete character (or nothing new): wait for the next token.
  if (end < now.size() || end <= before.size()) return "";
  std::string piece = now.substr(before.size());
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  text_ += piece;
  return piece;
}

std::string TextStream::finish() {
  const std::string before = decode(prefix_offset_, read_offset_);
  const std::string now = decode(prefix_offset_, ids_.size());
  prefix_offset_ = read_offset_ = ids_.size();
  if (now.size() <= before.size()) return "";
  std::string rest = now.substr(before.size());
  text_ += rest;
  return rest;
}

void Generator::reset() {
  cached_.clear();
  decoder_.truncate(0);
}

absl::Status Generator::prefill(const std::vector<int32_t>& prompt, GenerationResult& result) {
  // The cache's entries of a common prefix stay; at least one token is appended for the logits.
  size_t common = 0;
  while (common < cached_.size() && common + 1 < prompt.size() && cached_[common] == prompt[common]) {
    ++common;
  }
  decoder_.truncate(static_cast<int>(common));
  cached_.resize(common);
  const std::vector<int32_t> rest(prompt.begin() + common, prompt.end());
  const auto start = Clock::now();
  if (absl::Status s = decoder_.append(rest, logits_); !s.ok()) return s;
  result.prefill_s = seconds_since(start);
  result.reused_tokens = static_cast<int>(common);
  cached_ = prompt;
  return absl::OkStatus();
}

absl::StatusOr<GenerationResult> Generator::run(
    const std::vector<int32_t>& prompt, const GenerateOptions& options, Sampler& sampler,
    const Tokenizer& tokenizer, const std::function<void(std::string_view)>& on_text) {
  const int window = decoder_.max_positions();
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  if (prompt.size() > static_cast<size_t>(window)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the prompt has ", prompt.size(), " tokens, more than the model's ", window,
        " positions (max_position_embeddings)"));
  }
  GenerationResult result;
  result.prompt_tokens = static_cast<int>(prompt.size());
  if (absl::Status s = prefill(prompt, result); !s.ok()) return s;
  TextStream stream(tokenizer);
  const auto start = Clock::now();
  while (true) {
    const int32_t token = sampler.next(logits_);
    result.tokens.push_back(token);
    if (std::find(options.stop_ids.begin(), options.stop_ids.end(), token) !=
        options.stop_ids.end()) {
      result.stop = StopReason::kEos;
      break;
    }
    if (std::string piece = stream.push(token); !piece.empty()) on_text(piece);
    if (static_cast<int>(result.tokens.size()) >= options.max_new_tokens) {
      result.stop = StopReason::kMaxTokens;
      break;
    }
    if (decoder_.position() >= window) {
      result.stop = StopReason::kWindow;
      break;
    }
    if (absl::Status s = decoder_.append({token}, logits_); !s.ok()) return s;
    cached_.push_back(token);
    ++result.decode_passes;
  }
  result.decode_s = seconds_since(start);
  if (std::string rest = stream.finish(); !rest.empty()) on_text(rest);
  // The whole text decoded at once (the stream's pieces add up to it).
  const size_t kept = result.tokens.size() - (result.stop == StopReason::kEos ? 1 : 0);
  result.text = tokenizer.decode(absl::MakeConstSpan(result.tokens).first(kept),
                                 /*skip_special_tokens=*/true);
  return result;
}

}  // namespace dsinf::trainer
