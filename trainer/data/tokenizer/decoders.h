// tokenizer.json "decoder": ByteLevel, ByteFallback, Fuse, Strip, Replace,
// Metaspace and Sequence. Anything else is refused at load.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/data/tokenizer/json_util.h"

namespace dsinf::trainer::tokenizer_internal {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Hugging Face's decode_chain: token strings in, strings out (joined by the
  // caller).
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

absl::StatusOr<std::unique_ptr<Decoder>> load_decoder(const Json& value, std::string_view path);

}  // namespace dsinf::trainer::tokenizer_internal
