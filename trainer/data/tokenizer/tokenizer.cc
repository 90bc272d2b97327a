// Placeholder until the implementation lands (being written now).
#include "trainer/data/tokenizer/tokenizer.h"

namespace dsinf::trainer {

struct Tokenizer::Impl {
  std::string source;
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::load(const std::string& path) {
  return absl::UnimplementedError(path + ": tokenizer.json is not supported yet");
}
absl::StatusOr<Encoding> Tokenizer::encode(std::string_view, bool) const {
  return absl::UnimplementedError("encode");
}
std::string Tokenizer::decode(absl::Span<const int32_t>, bool) const { return {}; }
size_t Tokenizer::vocab_size() const { return 0; }
std::optional<int32_t> Tokenizer::token_to_id(std::string_view) const { return std::nullopt; }
std::optional<std::string> Tokenizer::id_to_token(int32_t) const { return std::nullopt; }
bool Tokenizer::is_special(int32_t) const { return false; }
const std::string& Tokenizer::source() const { return impl_->source; }

}  // namespace dsinf::trainer
