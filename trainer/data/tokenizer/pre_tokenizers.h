// tokenizer.json "pre_tokenizer": ByteLevel, Split, Metaspace, Digits and
// Sequence. Anything else is refused at load.
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainer/data/tokenizer/json_util.h"
#include "trainer/data/tokenizer/normalized.h"

namespace dsinf::trainer::tokenizer_internal {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits `piece` (not an added token), passing its parts to `sink` in
  // order as they are cut.
  virtual absl::Status pre_tokenize(Arena& arena, Piece piece, PieceSink sink) const = 0;
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> load_pre_tokenizer(const Json& value,
                                                                 std::string_view path);

}  // namespace dsinf::trainer::tokenizer_internal
