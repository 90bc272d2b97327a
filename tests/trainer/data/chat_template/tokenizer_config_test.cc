// read_tokenizer_config: the template (a string, or the "default" of a list
// of named ones, or chat_template.jinja beside the config), the special
// tokens as strings or added-token objects, and the errors for what is
// missing or malformed.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "trainer/data/chat_template/chat_template.h"

namespace dsinf::trainer {
namespace {

namespace fs = std::filesystem;

fs::path write_config(const std::string& name, const std::string& json) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("chat_template_config_" + name);
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer_config.json") << json;
  return dir;
}

TEST(ChatTemplateTokenizerConfig, ReadsStringTemplateAndTokens) {
  const fs::path dir =
      write_config("string", R"({"chat_template": "{{ bos_token }}", "bos_token": "<s>",
                    "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": false},
                    "pad_token": null})");
  absl::StatusOr<TokenizerConfig> config = read_tokenizer_config(dir.string());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->source, (dir / "tokenizer_config.json").string());
  EXPECT_EQ(config->chat_template, "{{ bos_token }}");
  EXPECT_EQ(config->bos_token, "<s>");
  EXPECT_EQ(config->eos_token, "</s>");
  EXPECT_EQ(config->pad_token, "");
  EXPECT_EQ(config->unk_token, "");
  // The file itself, not only its directory.
  EXPECT_TRUE(read_tokenizer_config((dir / "tokenizer_config.json").string()).ok());
}

TEST(ChatTemplateTokenizerConfig, TakesTheDefaultOfNamedTemplates) {
  const fs::path dir =
      write_config("list", R"({"chat_template": [{"name": "tool_use", "template": "T"},
                                    {"name": "default", "template": "D"}]})");
  absl::StatusOr<TokenizerConfig> config = read_tokenizer_config(dir.string());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->chat_template, "D");
}

TEST(ChatTemplateTokenizerConfig, ReadsChatTemplateJinjaBesideTheConfig) {
  const fs::path dir = write_config("jinja_file", R"({"eos_token": "</s>"})");
  std::ofstream(dir / "chat_template.jinja") << "{{ messages|length }}";
  absl::StatusOr<TokenizerConfig> config = read_tokenizer_config(dir.string());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->chat_template, "{{ messages|length }}");
}

TEST(ChatTemplateTokenizerConfig, ReportsMissingAndMalformedFiles) {
  const fs::path missing = fs::path(::testing::TempDir()) / "chat_template_config_none";
  EXPECT_EQ(read_tokenizer_config(missing.string()).status().code(), absl::StatusCode::kNotFound);

  const fs::path bad_json = write_config("bad_json", "{not json");
  absl::Status status = read_tokenizer_config(bad_json.string()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(status.message()),
            (bad_json / "tokenizer_config.json").string() + ": not valid JSON");

  const fs::path bad_template = write_config("bad_template", R"({"chat_template": 3})");
  status = read_tokenizer_config(bad_template.string()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(status.message()),
            (bad_template / "tokenizer_config.json").string() +
                ": \"chat_template\" must be a string or a list of {\"name\", \"template\"}");

  const fs::path bad_token = write_config("bad_token", R"({"bos_token": {"id": 1}})");
  status = read_tokenizer_config(bad_token.string()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(status.message()),
            (bad_token / "tokenizer_config.json").string() +
                ": \"bos_token\" must be a string or an added token {\"content\": ...}");
}

TEST(ChatTemplateTokenizerConfig, ReadsTheFixtures) {
  const fs::path root = fs::path(DSINF_SOURCE_DIR) / ".fixtures/tokenizers";
  if (!fs::exists(root / "deepseek_v3/tokenizer_config.json")) {
    GTEST_SKIP() << "the tokenizer fixtures are missing (run scripts/fixtures.sh)";
  }
  absl::StatusOr<TokenizerConfig> deepseek = read_tokenizer_config((root / "deepseek_v3").string());
  ASSERT_TRUE(deepseek.ok()) << deepseek.status();
  EXPECT_EQ(deepseek->bos_token, "<｜begin▁of▁sentence｜>");  // an added-token object
  EXPECT_FALSE(deepseek->chat_template.empty());
  absl::StatusOr<TokenizerConfig> llama2 = read_tokenizer_config((root / "llama2").string());
  ASSERT_TRUE(llama2.ok()) << llama2.status();
  EXPECT_EQ(llama2->chat_template, "");  // this config has none
  EXPECT_EQ(llama2->unk_token, "<unk>");
}

}  // namespace
}  // namespace dsinf::trainer
