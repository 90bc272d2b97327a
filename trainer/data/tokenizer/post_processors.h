// tokenizer.json "post_processor": TemplateProcessing (the single-sequence
// template), ByteLevel (offset trimming), RobertaProcessing, BertProcessing
// and Sequence. Anything else is refused at load.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/data/tokenizer/json_util.h"
#include "trainer/data/tokenizer/tokenizer.h"

namespace dsinf::trainer::tokenizer_internal {

// The token string of an id as encoding produced it (nullptr if none).
using TokenString = std::function<const std::string*(int32_t)>;

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // `text_bytes`: the input's size, where tokens added after the sequence sit.
  virtual void process(Encoding& encoding, bool add_special_tokens, uint32_t text_bytes,
                       const TokenString& token_string) const = 0;
  // Every id process may add (checked against the vocabulary at load).
  virtual std::vector<int32_t> added_ids() const { return {}; }
};

absl::StatusOr<std::unique_ptr<PostProcessor>> load_post_processor(const Json& value,
                                                                   std::string_view path);

}  // namespace dsinf::trainer::tokenizer_internal
