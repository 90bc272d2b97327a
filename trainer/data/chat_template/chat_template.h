// Chat templates: the Jinja source in a model's tokenizer_config.json
// ("chat_template"), rendered natively for the subset real templates use
// (see chat_template.cc). A construct outside it is refused at parse time,
// naming it and its line -- never rendered approximately.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace dsinf::trainer {

// What tokenizer_config.json says beside the tokenizer itself.
struct TokenizerConfig {
  std::string source;         // the file read
  std::string chat_template;  // the default template; empty when there is none
  // Special tokens by content ("" when absent); each may be written as a
  // string or as an added-token object {"content": ...}.
  std::string bos_token, eos_token, pad_token, unk_token;
};

// `path`: tokenizer_config.json, or a directory holding one. kNotFound when
// missing; kInvalidArgument naming the file and key when malformed. A list
// of named templates gives the one named "default".
absl::StatusOr<TokenizerConfig> read_tokenizer_config(const std::string& path);

class ChatTemplate {
 public:
  // kInvalidArgument naming `origin`, the line and the construct when the
  // source is not Jinja or uses what this renderer does not implement.
  static absl::StatusOr<ChatTemplate> parse(std::string_view source, std::string origin);
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;
  ~ChatTemplate();

  // Renders with `context`'s keys as the template's variables: typically
  // "messages" (a list of {"role", "content", ...}), "add_generation_prompt",
  // "bos_token", "eos_token". Thread-safe. kInvalidArgument for
  // raise_exception (its message) and for errors of evaluation (naming the
  // line), e.g. a filter applied to a value of the wrong type;
  // kResourceExhausted past a render's limits (64 MiB of output, 20M
  // evaluation steps). nlohmann::json sorts object keys, so dicts iterate
  // (and tojson prints them) sorted; jinja::render_program_ordered
  // (program.h) keeps the caller's order, as transformers does.
  absl::StatusOr<std::string> render(const nlohmann::json& context) const;

  struct Program;

 private:
  explicit ChatTemplate(std::shared_ptr<const Program> program);
  std::shared_ptr<const Program> program_;
};

}  // namespace dsinf::trainer
