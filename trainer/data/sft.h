// Supervised fine-tuning examples: conversations rendered with the model's
// chat template (loss on the assistant turns) and prompt/completion pairs
// (loss on the completion), tokenized, then one window each -- truncated or
// dropped when longer than the window, padded when shorter, with every
// position that carries no loss masked (kernels::kIgnoreTarget).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "trainer/data/chat_template/chat_template.h"
#include "trainer/data/tokenizer/tokenizer.h"
#include "trainer/data/windows.h"

namespace dsinf::trainer {

// One tokenized example: its ids, and per id whether it is trained (its
// prediction from the ids before it carries loss).
struct Example {
  std::vector<int32_t> ids;
  std::vector<uint8_t> trained;
};

// What the chat format needs: the tokenizer, the template, and the variables
// Hugging Face passes it besides the messages (bos_token, eos_token, ...).
struct ChatFormat {
  const Tokenizer* tokenizer = nullptr;
  const ChatTemplate* chat_template = nullptr;
  nlohmann::json variables = nlohmann::json::object();
  // The text that ends an assistant turn (e.g. "<|im_end|>"), found by
  // chat_turn_end(): trained with the turn, as the model must learn to stop.
  std::string turn_end;
};

// The variables Hugging Face renders a chat template with besides the
// messages: tools and documents (None), and the special tokens the tokenizer
// names (bos_token, eos_token, pad_token, unk_token; those it has).
nlohmann::json template_variables(const TokenizerConfig& config);

// The template's end of an assistant turn: a probe conversation rendered
// with a marker as the assistant's content, the text after the marker cut
// after its first special token. kInvalidArgument when there is none.
absl::StatusOr<std::string> chat_turn_end(const ChatFormat& format);

// The conversation rendered (no generation prompt) and tokenized whole
// without added special tokens, as apply_chat_template(tokenize=True) does.
// Assistant message i's turn starts where the conversation rendered up to it
// with the generation prompt ends, and ends after the next turn_end; its
// tokens (by where they start) are trained. kInvalidArgument when the
// template fails or the turns cannot be located.
absl::StatusOr<Example> chat_example(const ChatFormat& format, const nlohmann::json& messages);

// prompt + completion tokenized together (with the post-processor's special
// tokens); the tokens starting inside the completion, and any appended after
// it (EOS), are trained.
absl::StatusOr<Example> prompt_completion_example(const Tokenizer& tokenizer,
                                                  std::string_view prompt,
                                                  std::string_view completion);

struct WindowingOptions {
  int T = 1;
  bool drop_long = false;  // data.truncation "drop"; else the tail is cut ("right")
  int32_t pad_id = 0;      // the input id of padded positions
};
struct WindowingStats {
  int64_t examples = 0;
  int64_t truncated = 0;  // cut to the window
  int64_t dropped_long = 0;
  int64_t dropped_untrained = 0;  // no trained target left in the window
};

// One window per example: inputs ids[0, T), targets ids[j + 1] where trained.
Windows window_examples(const std::vector<Example>& examples, const WindowingOptions& options,
                        WindowingStats* stats);

enum class ExampleFormat { kChat, kPromptCompletion };

// The examples of a JSONL file or directory (one per non-blank line):
// {"messages": [{"role", "content"}, ...]} or {"prompt", "completion"},
// tokenized in parallel. kInvalidArgument naming `key`, the file and the line.
absl::StatusOr<std::vector<Example>> read_examples(const std::string& path, const std::string& key,
                                                   ExampleFormat format, const ChatFormat& chat);

}  // namespace dsinf::trainer
