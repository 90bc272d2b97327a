// What generation needs of text: the config's tokenizer (data.tokenizer,
// else model.init_from's directory when it has a tokenizer.json), its chat
// template, and the ids that end a generation -- the EOS tokens of
// tokenizer_config.json, config.json and generation_config.json, and the
// template's end of turn (e.g. <|eot_id|>, <|im_end|>).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "trainer/config/config.h"
#include "trainer/data/chat_template/chat_template.h"
#include "trainer/data/sft.h"
#include "trainer/data/tokenizer/tokenizer.h"

namespace dsinf::trainer {

struct GenerationText {
  std::unique_ptr<Tokenizer> tokenizer;
  std::string tokenizer_key;  // the config key that named it
  std::unique_ptr<ChatTemplate> chat_template;  // null: the tokenizer has none
  ChatFormat chat;                              // its variables and turn end
  std::vector<int32_t> stop_ids;                // EOS ids, and the turn end's with a template
};

// kInvalidArgument naming the config and data.tokenizer when there is no
// tokenizer or it is unreadable, or (need_chat) when it has no chat template.
absl::StatusOr<GenerationText> open_generation_text(const Config& config, bool need_chat);

// A plain prompt as tokenizer(text) encodes it (with the BOS the
// post-processor adds).
absl::StatusOr<std::vector<int32_t>> encode_prompt(const GenerationText& text,
                                                   const std::string& prompt);
// A conversation rendered with the template and add_generation_prompt, tokenized
// without added special tokens, as apply_chat_template(tokenize=True) does.
absl::StatusOr<std::vector<int32_t>> encode_chat(const GenerationText& text,
                                                 const nlohmann::json& messages);

}  // namespace dsinf::trainer
