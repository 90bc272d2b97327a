// tokenizer.json "pre_tokenizer": ByteLevel, Split, Metaspace, Digits and
// Sequence. Anything else is refused at load.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainer/data/tokenizer/json_util.h"
#include "trainer/data/tokenizer/normalized.h"

namespace dsinf::trainer::tokenizer_internal {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits every piece that is not an added token; added tokens pass through
  // in place.
  virtual absl::Status pre_tokenize(Arena& arena, std::vector<Piece>& pieces) const = 0;
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> load_pre_tokenizer(const Json& value,
                                                                 std::string_view path);

}  // namespace dsinf::trainer::tokenizer_internal
