// The data a config names, as windows: token shards as they are; text with
// the model's tokenizer (data.tokenizer, or model.init_from's directory when
// it has a tokenizer.json) when there is one, else as bytes; and the SFT
// formats (data.format chat / prompt_completion), which need the tokenizer
// (and, for chat, its tokenizer_config.json's chat template).
#pragma once

#include <iosfwd>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "trainer/config/config.h"
#include "trainer/data/chat_template/chat_template.h"
#include "trainer/data/sft.h"
#include "trainer/data/tokenizer/tokenizer.h"
#include "trainer/data/windows.h"

namespace dsinf::trainer {

// tokenizer_config.json of a tokenizer's directory, with the chat template
// of chat_template.jinja beside it when the JSON has none.
absl::StatusOr<TokenizerConfig> load_tokenizer_config(const std::string& dir);

class DataLoader {
 public:
  // Reads the tokenizer and chat template the config's data needs.
  // kInvalidArgument naming the config and the key (data.tokenizer,
  // data.format, model.init_from) when they are missing or bad.
  static absl::StatusOr<DataLoader> open(const Config& config);

  // The windows of `path` (`key`: "data.path" or "data.eval_path", named in
  // messages). Warnings (truncated or dropped examples) go to `log`.
  absl::StatusOr<Windows> load(const std::string& path, const std::string& key,
                               std::ostream& log) const;

  // The tokenizer in use (null: byte-level text).
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }

 private:
  DataLoader() = default;
  absl::StatusOr<Windows> load_stream(const std::string& path, const std::string& key) const;
  absl::StatusOr<Windows> load_examples(const std::string& path, const std::string& key,
                                        std::ostream& log) const;
  absl::Status fail(const std::string& key, const std::string& message) const;
  // The chat template and the variables it is rendered with.
  absl::Status open_chat(const std::string& dir);
  // An id by token content, for padding and EOS ("" or unknown: none).
  std::optional<int32_t> id_of(const std::string& token) const;

  const Config* config_ = nullptr;
  std::string tokenizer_key_;  // the key that named the tokenizer
  std::string text_refusal_;   // without a tokenizer: why text cannot be bytes
  std::shared_ptr<Tokenizer> tokenizer_;
  TokenizerConfig tokenizer_config_;
  std::shared_ptr<ChatTemplate> chat_template_;
  ChatFormat chat_;
};

}  // namespace dsinf::trainer
