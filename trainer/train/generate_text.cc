#include "trainer/train/generate_text.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "trainer/data/text_data.h"

namespace dsinf::trainer {
namespace {

namespace fs = std::filesystem;

absl::Status fail(const Config& config, const std::string& key, const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat(config.source_path, ": ", key, ": ", message));
}

std::string directory_of(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) ? path : fs::path(path).parent_path().string();
}

// eos_token_id of DIR/config.json and DIR/generation_config.json (a number or
// a list), where they exist and parse.
void add_config_eos(const std::string& dir, std::vector<int32_t>& ids) {
  for (const char* name : {"config.json", "generation_config.json"}) {
    std::ifstream in(fs::path(dir) / name);
    if (!in) continue;
    const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("eos_token_id")) continue;
    const nlohmann::json& eos = j["eos_token_id"];
    for (const nlohmann::json& id : eos.is_array() ? eos : nlohmann::json::array({eos})) {
      if (id.is_number_integer()) ids.push_back(id.get<int32_t>());
    }
  }
}

void add_token(const Tokenizer& tokenizer, const std::string& content, std::vector<int32_t>& ids) {
  if (content.empty()) return;
  if (std::optional<int32_t> id = tokenizer.token_to_id(content)) ids.push_back(*id);
}

absl::Status open_chat(const Config& config, const TokenizerConfig& tc, GenerationText& text) {
  absl::StatusOr<ChatTemplate> parsed = ChatTemplate::parse(tc.chat_template, tc.source);
  if (!parsed.ok()) return fail(config, text.tokenizer_key, std::string(parsed.status().message()));
  text.chat_template = std::make_unique<ChatTemplate>(*std::move(parsed));
  text.chat.tokenizer = text.tokenizer.get();
  text.chat.chat_template = text.chat_template.get();
  text.chat.variables = template_variables(tc);
  absl::StatusOr<std::string> turn_end = chat_turn_end(text.chat);
  if (!turn_end.ok()) {
    return fail(config, text.tokenizer_key,
                absl::StrCat(tc.source, ": ", turn_end.status().message()));
  }
  text.chat.turn_end = *std::move(turn_end);
  add_token(*text.tokenizer, text.chat.turn_end, text.stop_ids);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GenerationText> open_generation_text(const Config& config, bool need_chat) {
  GenerationText text;
  std::string path = config.data.tokenizer;
  text.tokenizer_key = "data.tokenizer";
  std::error_code ec;
  if (path.empty() && config.model.init_from_directory &&
      fs::exists(fs::path(config.model.init_from) / "tokenizer.json", ec)) {
    path = config.model.init_from;
    text.tokenizer_key = "model.init_from";
  }
  if (path.empty()) {
    return fail(config, "data.tokenizer",
                "generation needs a tokenizer: set data.tokenizer to a tokenizer.json or its "
                "directory (or model.init_from to a Hugging Face directory with one)");
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::load(path);
  if (!tokenizer.ok()) return fail(config, text.tokenizer_key, std::string(tokenizer.status().message()));
  text.tokenizer = *std::move(tokenizer);
  if (text.tokenizer->vocab_size() > static_cast<size_t>(config.model.vocab_size)) {
    return fail(config, text.tokenizer_key,
                absl::StrCat("the tokenizer's ids reach ", text.tokenizer->vocab_size() - 1,
                             ", beyond model.vocab_size ", config.model.vocab_size));
  }
  const std::string dir = directory_of(path);
  absl::StatusOr<TokenizerConfig> tc = load_tokenizer_config(dir);
  if (!tc.ok() && tc.status().code() != absl::StatusCode::kNotFound) {
    return fail(config, text.tokenizer_key, std::string(tc.status().message()));
  }
  if (tc.ok()) add_token(*text.tokenizer, tc->eos_token, text.stop_ids);
  add_config_eos(dir, text.stop_ids);
  if (config.model.init_from_directory && config.model.init_from != dir) {
    add_config_eos(config.model.init_from, text.stop_ids);
  }
  if (need_chat) {
    if (!tc.ok() || tc->chat_template.empty()) {
      return fail(config, text.tokenizer_key,
                  absl::StrCat("chat needs a chat template, and '", dir,
                               "' has none (tokenizer_config.json's chat_template)"));
    }
    if (absl::Status s = open_chat(config, *tc, text); !s.ok()) return s;
  }
  std::sort(text.stop_ids.begin(), text.stop_ids.end());
  text.stop_ids.erase(std::unique(text.stop_ids.begin(), text.stop_ids.end()),
                      text.stop_ids.end());
  return text;
}

absl::StatusOr<std::vector<int32_t>> encode_prompt(const GenerationText& text,
                                                   const std::string& prompt) {
  absl::StatusOr<Encoding> encoding = text.tokenizer->encode(prompt, /*add_special_tokens=*/true);
  if (!encoding.ok()) return encoding.status();
  return std::move(encoding->ids);
}

absl::StatusOr<std::vector<int32_t>> encode_chat(const GenerationText& text,
                                                 const nlohmann::json& messages) {
  if (text.chat_template == nullptr) {
    return absl::InvalidArgumentError("messages need a chat template, and the tokenizer has none");
  }
  nlohmann::json context = text.chat.variables;
  context["messages"] = messages;
  context["add_generation_prompt"] = true;
  absl::StatusOr<std::string> rendered = text.chat_template->render(context);
  if (!rendered.ok()) return rendered.status();
  absl::StatusOr<Encoding> encoding =
      text.tokenizer->encode(*rendered, /*add_special_tokens=*/false);
  if (!encoding.ok()) return encoding.status();
  return std::move(encoding->ids);
}

}  // namespace dsinf::trainer
