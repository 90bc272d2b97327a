// tokenizer.json "normalizer": NFC, NFD, NFKC, NFKD, Lowercase, Strip,
// StripAccents, Prepend, Replace (String or Regex pattern) and Sequence.
// Anything else is refused at load.
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainer/data/tokenizer/json_util.h"
#include "trainer/data/tokenizer/normalized.h"

namespace dsinf::trainer::tokenizer_internal {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Replaces `piece` (not byte_mapped) by its normalized copy in the arena.
  virtual absl::Status normalize(Arena& arena, Piece& piece) const = 0;
};

// The "pattern" member of `object` ({"String": s} or {"Regex": r}), compiled;
// shared by Replace, Split and the Replace decoder.
absl::StatusOr<std::unique_ptr<Regex>> load_pattern(const Json& object, std::string_view path);

// `value` is the "normalizer" object at JSON path `path`.
absl::StatusOr<std::unique_ptr<Normalizer>> load_normalizer(const Json& value,
                                                            std::string_view path);

}  // namespace dsinf::trainer::tokenizer_internal
