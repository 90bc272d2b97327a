// Text generation over a config's model: the runtime holding its weights
// where the config places them (device, host or NVMe, streamed chunk by chunk
// within memory.device_budget_bytes) with a decoder's key/value cache in the
// device arena beside them, and the loop that extends a prompt token by
// token, streaming the text as it comes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/config/config.h"
#include "trainer/config/runtime_spec.h"
#include "trainer/data/tokenizer/tokenizer.h"
#include "trainer/models/model.h"
#include "trainer/train/sampling.h"
#include "trainer/train/session.h"

namespace dsinf::trainer {

// Members end in reverse order: the decoder's buffers go back to the arena
// before the runtime that holds it ends.
struct GenerationSession {
  std::unique_ptr<actors::ModelDef> runtime_model;  // what the runtime was planned for
  Session session;
  std::unique_ptr<Decoder> decoder;  // bound to session.runtime's backend and chunks
};

// The config's model with the weights eval uses (load_inference_weights) and
// a decoder bound to its runtime. The runtime plans the decoder's device bytes
// (the key/value cache and a pass's buffers) in place of training's
// activations, so they fit memory.device_budget_bytes with the parameter
// slots. kUnimplemented for a family without generation; kInvalidArgument
// naming the config when it cannot fit.
absl::StatusOr<std::unique_ptr<GenerationSession>> open_generation(const Config& config,
                                                                  const RunEnvironment& env);

enum class StopReason { kEos, kMaxTokens, kWindow };
const char* stop_reason_name(StopReason reason);

struct GenerateOptions {
  int max_new_tokens = 128;
  SamplingOptions sampling;
  std::vector<int32_t> stop_ids;  // EOS and end-of-turn tokens
};

struct GenerationResult {
  std::vector<int32_t> tokens;  // the new tokens, a stop token included
  std::string text;             // their text, the stop token and special tokens left out
  int prompt_tokens = 0;
  int reused_tokens = 0;  // prompt tokens whose cache entries a previous call left
  StopReason stop = StopReason::kMaxTokens;
  double prefill_s = 0;  // the prompt's pass: the first token's logits
  double decode_s = 0;   // the passes of the later tokens
  int decode_passes = 0;
  // New tokens a second after the prompt's pass (the decode passes' rate).
  double tokens_per_s() const { return decode_s > 0 ? decode_passes / decode_s : 0; }
};

// Text of token ids as they are generated: each push returns what can be
// printed now -- never half a UTF-8 character or a replacement character
// that the next token may complete. Each push decodes only the tokens since
// the last printed piece and the few before them (their text is the prefix
// taken off, so a decoder that strips a leading space strips it there), as
// text-generation-inference does: linear in the tokens, not quadratic.
class TextStream {
 public:
  explicit TextStream(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  std::string push(int32_t id);
  std::string finish();  // whatever is left
  const std::string& text() const { return text_; }  // every piece returned

 private:
  std::string decode(size_t begin, size_t end) const;

  const Tokenizer& tokenizer_;
  std::vector<int32_t> ids_;
  size_t prefix_offset_ = 0;  // ids_[prefix_offset_, read_offset_): printed, decoded again
  size_t read_offset_ = 0;    // ids_ from here: not printed yet
  std::string text_;
};

// The bytes of `text` up to its last complete UTF-8 character, leaving out a
// trailing U+FFFD (an incomplete byte sequence a decoder replaced).
size_t printable_prefix(std::string_view text);

// Extends prompts on one decoder, reusing the cache of the longest common
// prefix with what it computed last (a chat's earlier turns, a shared system
// prompt).
class Generator {
 public:
  explicit Generator(Decoder& decoder) : decoder_(decoder) {}
  // `on_text` receives the printable text as it is produced. kInvalidArgument
  // when the prompt is empty or does not fit the model's positions.
  absl::StatusOr<GenerationResult> run(const std::vector<int32_t>& prompt,
                                       const GenerateOptions& options, Sampler& sampler,
                                       const Tokenizer& tokenizer,
                                       const std::function<void(std::string_view)>& on_text);
  void reset();

 private:
  // Brings the cache to hold `prompt` and returns its last token's logits.
  absl::Status prefill(const std::vector<int32_t>& prompt, GenerationResult& result);

  Decoder& decoder_;
  std::vector<int32_t> cached_;  // the tokens the cache holds
  std::vector<float> logits_;
};

}  // namespace dsinf::trainer
