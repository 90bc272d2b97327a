// dsinf generate and chat through the CLI: bad flags, a config without a
// tokenizer, a GPT-2 config and a bad JSONL line each exit 2 with one message
// naming the flag, key or file:line; with Llama 3's tokenizer and chat
// template (scripts/fixtures.sh; skipped without them) on a seeded Llama of
// its vocabulary: --json's objects, --in with prompts and conversations, the
// same tokens with parameters streamed from NVMe under a small device budget,
// a piped chat of two lines, /reset and /exit, and plan's key/value cache.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/cli/train_util.h"
#include "tests/test_util.h"

namespace dsinf::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string fixture() { return std::string(DSINF_SOURCE_DIR) + "/.fixtures/tokenizers/llama3"; }
bool have_fixture() { return fs::exists(fixture() + "/tokenizer_config.json"); }

// A seeded 2-layer Llama with Llama 3's vocabulary; its tokenizer when `tokenizer`.
json llama_config(const TempDir& dir, bool tokenizer) {
  json c = base_config(dir, dir / "out", 1);
  c["model"] = {{"type", "llama"},          {"hidden_size", 32},
                {"num_hidden_layers", 2},   {"num_attention_heads", 4},
                {"num_key_value_heads", 2}, {"intermediate_size", 48},
                {"vocab_size", 128256},     {"max_position_embeddings", 64}};
  c["data"]["seq_len"] = 16;
  if (tokenizer) c["data"]["tokenizer"] = fixture();
  return c;
}

std::string write_config(const TempDir& dir, const std::string& name, const json& config) {
  const std::string path = dir / (name + ".json");
  write_text(path, config.dump(2));
  return path;
}

// Exit 2 and one line on stderr containing `needle`.
void expect_bad_input(const CommandResult& r, const std::string& needle) {
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("dsinf:"), r.err.rfind("dsinf:")) << "one message: " << r.err;
}

TEST(Generate, BadFlagsExit2NamingTheFlag) {
  TempDir dir;
  const std::string config = write_config(dir, "c", llama_config(dir, false));
  expect_bad_input(run_dsinf("generate " + config, dir.path()), "--prompt");
  expect_bad_input(run_dsinf("generate " + config + " --prompt a --in b.jsonl", dir.path()),
                   "--prompt");
  expect_bad_input(run_dsinf("generate " + config + " --prompt a --temperature -1", dir.path()),
                   "--temperature");
  expect_bad_input(run_dsinf("generate " + config + " --prompt a --top-p 0", dir.path()),
                   "--top-p");
  expect_bad_input(run_dsinf("generate " + config + " --prompt a --top-k x", dir.path()),
                   "--top-k");
  expect_bad_input(run_dsinf("generate " + config + " --prompt a --max-new-tokens 0", dir.path()),
                   "--max-new-tokens");
  expect_bad_input(run_dsinf("generate " + config + " --prompt a --bogus", dir.path()), "--bogus");
  expect_bad_input(run_dsinf("chat " + config + " --prompt a", dir.path()), "--prompt");
  expect_bad_input(run_dsinf("generate --prompt a", dir.path()), "CONFIG");
}

TEST(Generate, NoTokenizerExit2NamingDataTokenizer) {
  TempDir dir;
  const std::string config = write_config(dir, "c", llama_config(dir, false));
  expect_bad_input(run_dsinf("generate " + config + " --prompt hello", dir.path()),
                   "data.tokenizer");
  expect_bad_input(run_dsinf("chat " + config, dir.path()), "data.tokenizer");
}

TEST(Generate, Gpt2Exit2NamingTheLlamaFamily) {
  TempDir dir;
  const std::string config = write_config(dir, "c", base_config(dir, dir / "out", 1));
  expect_bad_input(run_dsinf("generate " + config + " --prompt hello", dir.path()),
                   "generation supports the llama family");
}

TEST(Generate, BadJsonlLineExit2NamingFileAndLine) {
  if (!have_fixture()) GTEST_SKIP() << "the tokenizer fixtures are missing (scripts/fixtures.sh)";
  TempDir dir;
  const std::string config = write_config(dir, "c", llama_config(dir, true));
  const std::string in = dir / "prompts.jsonl";
  write_text(in, "{\"prompt\": \"hi\"}\n{\"text\": \"hi\"}\n");
  expect_bad_input(run_dsinf("generate " + config + " --in " + in, dir.path()), in + ":2");
  write_text(in, "{\"prompt\": \"hi\"}\n\nnot json\n");
  expect_bad_input(run_dsinf("generate " + config + " --in " + in, dir.path()), in + ":3");
  write_text(in, "{\"messages\": []}\n");
  expect_bad_input(run_dsinf("generate " + config + " --in " + in, dir.path()), in + ":1");
  expect_bad_input(run_dsinf("generate " + config + " --in " + (dir / "missing.jsonl"), dir.path()),
                   "missing.jsonl");
}

std::vector<json> generate_json(const TempDir& dir, const std::string& config,
                                const std::string& args) {
  const CommandResult r = run_dsinf("generate " + config + " --json " + args, dir.path());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return json_lines(r.out);
}

TEST(Generate, JsonObjectsPromptsAndConversations) {
  if (!have_fixture()) GTEST_SKIP() << "the tokenizer fixtures are missing (scripts/fixtures.sh)";
  TempDir dir;
  const std::string config = write_config(dir, "c", llama_config(dir, true));
  const std::vector<json> one =
      generate_json(dir, config, "--prompt 'The capital of France is' --max-new-tokens 6");
  ASSERT_EQ(one.size(), 1u);
  const json& r = one[0];
  for (const char* key : {"text", "tokens", "prompt_tokens", "new_tokens", "tokens_per_s", "stop"}) {
    EXPECT_TRUE(r.contains(key)) << key << " in " << r.dump();
  }
  EXPECT_EQ(r["new_tokens"].get<size_t>(), r["tokens"].size());
  EXPECT_LE(r["new_tokens"].get<int>(), 6);
  EXPECT_EQ(r["prompt_tokens"].get<int>(), 5);  // 5 words (this tokenizer.json adds no BOS)
  EXPECT_TRUE(r["stop"] == "max_new_tokens" || r["stop"] == "eos") << r["stop"];
  // Greedy is deterministic; a seed repeats a sampled continuation.
  const std::vector<json> again =
      generate_json(dir, config, "--prompt 'The capital of France is' --max-new-tokens 6");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0]["tokens"], r["tokens"]);
  EXPECT_EQ(again[0]["text"], r["text"]);
  const std::string sampled = "--prompt 'Once' --max-new-tokens 8 --temperature 1.5 --top-k 50";
  const std::vector<json> a = generate_json(dir, config, sampled + " --seed 3");
  const std::vector<json> b = generate_json(dir, config, sampled + " --seed 3");
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(a[0]["tokens"], b[0]["tokens"]);

  const std::string in = dir / "prompts.jsonl";
  write_text(in,
             "{\"prompt\": \"Hello\"}\n"
             "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi there\"}]}\n");
  const std::vector<json> both = generate_json(dir, config, "--in " + in + " --max-new-tokens 3");
  ASSERT_EQ(both.size(), 2u);
  // The conversation's prompt: the template's header tokens around the message.
  EXPECT_GT(both[1]["prompt_tokens"].get<int>(), 8);
}

// The pieces streamed to stdout add up to the text decoded at once (--json's), whole UTF-8
// characters at a time; the tokens/s line follows them.
TEST(Generate, StreamedTextIsTheDecodedText) {
  if (!have_fixture()) GTEST_SKIP() << "the tokenizer fixtures are missing (scripts/fixtures.sh)";
  TempDir dir;
  const std::string config = write_config(dir, "c", llama_config(dir, true));
  for (const char* prompt : {"'Bonjour, ça va'", "'日本語のテキスト'"}) {
    const std::string args = std::string("--prompt ") + prompt + " --max-new-tokens 24";
    const std::vector<json> j = generate_json(dir, config, args + " --temperature 2 --seed 5");
    const CommandResult r =
        run_dsinf("generate " + config + " " + args + " --temperature 2 --seed 5", dir.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(j.size(), 1u);
    const std::string text = j[0]["text"];
    EXPECT_EQ(r.out.substr(0, text.size() + 1), text + "\n");
    EXPECT_NE(r.out.find("tokens/s", text.size()), std::string::npos) << r.out;
  }
}

TEST(Generate, StreamedFromNvmeGivesTheInMemoryTokens) {
  if (!have_fixture()) GTEST_SKIP() << "the tokenizer fixtures are missing (scripts/fixtures.sh)";
  TempDir dir;
  json c = llama_config(dir, true);
  const std::string args = "--prompt 'Offloading changes where bytes live' --max-new-tokens 10";
  const std::vector<json> in_memory = generate_json(dir, write_config(dir, "mem", c), args);
  // The embedding and lm_head (16 MiB each) take turns in two slots beside the decoder.
  fs::create_directories(dir / "swap");
  c["zero_optimization"] = {{"stage", 3},
                            {"offload_param", offload("nvme", dir / "swap")},
                            {"stage3_param_persistence_threshold", 0}};
  c["zero_optimization"]["offload_param"]["max_in_cpu"] = 0;
  c["zero_optimization"]["offload_param"]["buffer_count"] = 2;
  c["memory"] = {{"device_budget_bytes", 36 << 20}};
  const std::vector<json> streamed = generate_json(dir, write_config(dir, "nvme", c), args);
  ASSERT_EQ(in_memory.size(), 1u);
  ASSERT_EQ(streamed.size(), 1u);
  EXPECT_EQ(streamed[0]["tokens"], in_memory[0]["tokens"]);
  EXPECT_EQ(streamed[0]["text"], in_memory[0]["text"]);
}

TEST(Chat, PipedLinesResetAndExit) {
  if (!have_fixture()) GTEST_SKIP() << "the tokenizer fixtures are missing (scripts/fixtures.sh)";
  TempDir dir;
  const std::string config = write_config(dir, "c", llama_config(dir, true));
  write_text(dir / "input.txt", "Hello\nHow are you?\n/reset\nHello\n/exit\nnever read\n");
  const CommandResult r = run_command(dsinf_binary() + " chat " + config +
                                          " --json --max-new-tokens 4 < " + (dir / "input.txt"),
                                      dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<json> answers = json_lines(r.out);
  ASSERT_EQ(answers.size(), 3u) << r.out;
  // The second turn carries the first and reuses its cache; /reset starts over.
  EXPECT_GT(answers[1]["prompt_tokens"].get<int>(), answers[0]["prompt_tokens"].get<int>());
  EXPECT_GT(answers[1]["reused_tokens"].get<int>(), 0);
  EXPECT_EQ(answers[2]["tokens"], answers[0]["tokens"]);
  EXPECT_EQ(answers[2]["prompt_tokens"], answers[0]["prompt_tokens"]);
  EXPECT_NE(r.err.find("new conversation"), std::string::npos) << r.err;
  // Without --json the answers stream to stdout as text.
  const CommandResult text = run_command(
      dsinf_binary() + " chat " + config + " --max-new-tokens 4 < " + (dir / "input.txt"),
      dir.path());
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.err.find("tokens/s"), std::string::npos) << text.err;
}

TEST(Plan, ShowsTheGenerationKeyValueCache) {
  TempDir dir;
  const std::string config = write_config(dir, "c", llama_config(dir, false));
  // 2 x 2 layers x 64 positions x 2 kv heads x 8 x 4 bytes.
  const size_t kv = 2 * 2 * 64 * 2 * 8 * 4;
  const CommandResult r = run_dsinf("plan " + config + " --json", dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<json> lines = json_lines(r.out);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back()["bytes"]["device"]["generation_kv_cache"].get<size_t>(), kv)
      << lines.back().dump();
  const CommandResult human = run_dsinf("plan " + config, dir.path());
  ASSERT_EQ(human.exit_code, 0) << human.err;
  EXPECT_NE(human.out.find("key/value cache"), std::string::npos) << human.out;
}

}  // namespace
}  // namespace dsinf::testing
