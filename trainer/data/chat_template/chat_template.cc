// Placeholder until the implementation lands (being written now).
#include "trainer/data/chat_template/chat_template.h"

namespace dsinf::trainer {

struct ChatTemplate::Program {};

absl::StatusOr<TokenizerConfig> read_tokenizer_config(const std::string& path) {
  return absl::UnimplementedError(path + ": tokenizer_config.json is not supported yet");
}
ChatTemplate::ChatTemplate(std::shared_ptr<const Program> program) : program_(std::move(program)) {}
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;
ChatTemplate::~ChatTemplate() = default;
absl::StatusOr<ChatTemplate> ChatTemplate::parse(std::string_view, std::string origin) {
  return absl::UnimplementedError(origin + ": chat templates are not supported yet");
}
absl::StatusOr<std::string> ChatTemplate::render(const nlohmann::json&) const {
  return absl::UnimplementedError("render");
}

}  // namespace dsinf::trainer
