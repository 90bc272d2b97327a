// Real text through the CLI, with real tokenizer files (scripts/fixtures.sh):
// `dsinf tokenize` writes the ids transformers.js's tokenizer gives, document
// after document; `dsinf template` renders and marks the assistant turns;
// chat and prompt/completion data train with the loss only where the data
// says, its masked mean equal to the float64 reference's; bad text input
// exits 2 naming the file and line. Skips where node, the fixtures or torch
// are missing.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "tests/cli/train_util.h"
#include "tests/test_util.h"

namespace dsinf::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string fixture(const std::string& family) {
  return std::string(DSINF_SOURCE_DIR) + "/.fixtures/tokenizers/" + family;
}
std::string modules() { return std::string(DSINF_SOURCE_DIR) + "/.fixtures/node_modules"; }

bool have_fixtures() {
  return fs::exists(fixture("llama3") + "/tokenizer.json") &&
         fs::exists(modules() + "/@lenml/tokenizers") &&
         std::system("node --version >/dev/null 2>&1") == 0;
}

#define SKIP_WITHOUT_FIXTURES()                                                           \
  if (!have_fixtures()) GTEST_SKIP() << "node or the npm fixtures are missing (run scripts/fixtures.sh)"

// The ids of each text as transformers.js's tokenizer encodes it (special tokens added).
std::vector<std::vector<int32_t>> reference_ids(const TempDir& dir, const std::string& family,
                                                const std::vector<std::string>& texts) {
  write_text(dir / "texts.json", json(texts).dump());
  const std::string script =
      "const {createRequire}=require('module');const r=createRequire('" + modules() +
      "/package.json');const {TokenizerLoader}=r('@lenml/tokenizers');const fs=require('fs');"
      "const d='" + fixture(family) + "/';const t=TokenizerLoader.fromPreTrained({tokenizerJSON:"
      "JSON.parse(fs.readFileSync(d+'tokenizer.json')),tokenizerConfig:JSON.parse("
      "fs.readFileSync(d+'tokenizer_config.json'))});console.log(JSON.stringify(JSON.parse("
      "fs.readFileSync('" + (dir / "texts.json") + "')).map(x=>t.encode(x))))";
  write_text(dir / "ref.js", script);
  const CommandResult r = run_command("node " + (dir / "ref.js"), dir.path());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.exit_code == 0 ? json::parse(r.out).get<std::vector<std::vector<int32_t>>>()
                          : std::vector<std::vector<int32_t>>{};
}

// A shard's header width and ids.
std::pair<int, std::vector<int32_t>> read_shard(const std::string& path) {
  const std::string bytes = read_text(path);
  EXPECT_GE(bytes.size(), 32u);
  const int width = static_cast<unsigned char>(bytes[12]);
  std::vector<int32_t> ids;
  for (size_t at = 32; at + width <= bytes.size(); at += width) {
    uint32_t v = 0;
    for (int b = width - 1; b >= 0; --b) v = (v << 8) | static_cast<unsigned char>(bytes[at + b]);
    ids.push_back(static_cast<int32_t>(v));
  }
  return {width, ids};
}

TEST(Tokenize, ShardHoldsTheReferenceIdsDocumentAfterDocument) {
  SKIP_WITHOUT_FIXTURES();
  TempDir dir;
  const std::vector<std::string> texts = {"Hello world! It's 2026.\r\n  Ünïcödé ok",
                                          "second\tdocument 12345 \xF0\x9F\x98\x80", "third"};
  write_text(dir / "a.txt", texts[0]);
  write_text(dir / "b.jsonl", json{{"text", texts[1]}}.dump() + "\n\n" +
                                  json{{"text", texts[2]}}.dump() + "\n");
  // EOS: Llama 3's <|end_of_text|> is 128001, Llama 2's </s> is 2 (their published vocabularies).
  struct Case {
    const char* family;
    int width;
    int32_t eos;
  };
  for (const auto& [family, width, eos] : {Case{"llama3", 4, 128001}, Case{"llama2", 2, 2}}) {
    SCOPED_TRACE(family);
    const std::vector<std::vector<int32_t>> want = reference_ids(dir, family, texts);
    ASSERT_EQ(want.size(), 3u);
    const std::string out = dir / (std::string(family) + ".bin");
    const CommandResult r = run_dsinf("tokenize --tokenizer " + fixture(family) + " --in " +
                                          (dir / "a.txt") + " " + (dir / "b.jsonl") + " --out " +
                                          out + " --append-eos --json",
                                      dir.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const json summary = json_lines(r.out).back();
    EXPECT_EQ(summary["documents"], 3);
    const auto [got_width, ids] = read_shard(out);
    EXPECT_EQ(got_width, width);
    // Each document's ids, then tokenizer_config.json's EOS.
    std::vector<int32_t> expected;
    for (const std::vector<int32_t>& doc : want) {
      expected.insert(expected.end(), doc.begin(), doc.end());
      expected.push_back(eos);
    }
    EXPECT_EQ(ids, expected);
    EXPECT_EQ(summary["tokens"], ids.size());
  }
}

TEST(Tokenize, BadInputExitsTwoNamingFileAndLineAndWritesNothing) {
  SKIP_WITHOUT_FIXTURES();
  TempDir dir;
  write_text(dir / "bad.jsonl", "{\"text\": \"ok\"}\n{\"txt\": 1}\n");
  const std::string out = dir / "out.bin";
  const std::string tok = " --tokenizer " + fixture("qwen3") + " --out " + out;
  CommandResult r = run_dsinf("tokenize" + tok + " --in " + (dir / "bad.jsonl"), dir.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("bad.jsonl' line 2"), std::string::npos) << r.err;
  write_text(dir / "junk.jsonl", "not json\n");
  r = run_dsinf("tokenize" + tok + " --in " + (dir / "junk.jsonl"), dir.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("junk.jsonl' line 1"), std::string::npos) << r.err;
  write_text(dir / "latin1.txt", "caf\xE9");
  r = run_dsinf("tokenize" + tok + " --in " + (dir / "latin1.txt"), dir.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("latin1.txt"), std::string::npos) << r.err;
  write_text(dir / "tokenizer.json", "{\"model\": {\"type\": \"Unigram\"}}");
  r = run_dsinf("tokenize --tokenizer " + (dir / "tokenizer.json") + " --out " + out + " --in " +
                    (dir / "latin1.txt"),
                dir.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("tokenizer.json"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
}

// Text tokenized on the fly trains to the same bytes as its `dsinf tokenize` shard.
TEST(Tokenize, TrainingOnTextEqualsTrainingOnItsShard) {
  SKIP_WITHOUT_FIXTURES();
  TempDir dir;
  std::string text;
  for (int i = 0; i < 300; ++i) text += "Line " + std::to_string(i) + ": the quick brown fox, again.\n";
  write_text(dir / "doc.txt", text);
  const CommandResult tok = run_dsinf("tokenize --tokenizer " + fixture("llama2") + " --in " +
                                          (dir / "doc.txt") + " --out " + (dir / "doc.bin"),
                                      dir.path());
  ASSERT_EQ(tok.exit_code, 0) << tok.err;
  auto config = [&](const std::string& data, const std::string& out) {
    json c = base_config(dir, out, 2);
    c["model"] = {{"type", "llama"}, {"hidden_size", 32}, {"num_hidden_layers", 1},
                  {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"intermediate_size", 48},
                  {"vocab_size", 32000}, {"max_position_embeddings", 64}};
    c["data"] = {{"path", data}, {"seq_len", 32}, {"tokenizer", fixture("llama2")}};
    return c;
  };
  write_text(dir / "text.json", config(dir / "doc.txt", dir / "from_text").dump());
  write_text(dir / "shard.json", config(dir / "doc.bin", dir / "from_shard").dump());
  for (const char* name : {"text", "shard"}) {
    const CommandResult r = run_dsinf("train " + (dir / (std::string(name) + ".json")), dir.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  const std::string a = checkpoint(dir / "from_text", 2);
  ASSERT_GT(a.size(), 4096u);
  EXPECT_TRUE(a == checkpoint(dir / "from_shard", 2));
}

// ---- SFT ----

std::string llama_script() {
  return std::string("/usr/bin/python3 ") + DSINF_SOURCE_DIR + "/tests/trainer/models/torch_llama.py";
}

// A random 2-layer Llama with Llama 3's vocabulary, tokenizer and chat template in `dir`/model.
void make_chat_model(const TempDir& dir) {
  const CommandResult gen = run_command(llama_script() + " golden --out " + dir.path() +
                                            " --vocab 128256 --hidden 32 --layers 2 --heads 4 "
                                            "--kv-heads 2 --inter 48 --seq 4 --batch 1 --seed 3",
                                        dir.path());
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    fs::copy_file(fixture("llama3") + "/" + f, dir / ("model/" + std::string(f)));
  }
}

// The token strings of ids, from tokenizer.json's vocabulary and added tokens.
std::vector<std::string> pieces(const std::string& tokenizer_json, const std::vector<int32_t>& ids) {
  const json t = json::parse(read_text(tokenizer_json));
  std::map<int32_t, std::string> by_id;
  for (const auto& [piece, id] : t["model"]["vocab"].items()) by_id[id.get<int32_t>()] = piece;
  for (const json& a : t["added_tokens"]) by_id[a["id"].get<int32_t>()] = a["content"];
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(by_id[id]);
  return out;
}

json sft_config(const TempDir& dir, const std::string& data, const std::string& format,
                const std::string& out, int steps) {
  json c = base_config(dir, out, steps);
  c["model"] = {{"init_from", dir / "model"}};
  c["data"] = {{"path", data}, {"format", format}, {"seq_len", 48}};
  c["train_micro_batch_size_per_gpu"] = 2;
  c["gradient_accumulation_steps"] = 1;
  return c;
}

// Llama 3's template renders each message as a header, the content and <|eot_id|>
// (and always ends with an assistant header): the trained tokens are each
// assistant answer and its <|eot_id|>, written out here.
TEST(Sft, ChatMaskIsTheAssistantTurnsAndItsMaskedLossMatchesTheReference) {
  SKIP_WITHOUT_FIXTURES();
  if (!have_torch()) GTEST_SKIP() << "python3-torch is not installed";
  TempDir dir;
  make_chat_model(dir);
  const json messages = json::array({{{"role", "user"}, {"content", "Hi there"}},
                                     {{"role", "assistant"}, {"content", "Hello!"}},
                                     {{"role", "user"}, {"content", "Bye"}},
                                     {{"role", "assistant"}, {"content", "See you."}}});
  write_text(dir / "conversation.json", messages.dump());
  const CommandResult shown = run_dsinf(
      "template --tokenizer " + (dir / "model") + " --in " + (dir / "conversation.json") + " --json",
      dir.path());
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  const json example = json::parse(shown.out);
  const std::string user = "<|start_header_id|>user<|end_header_id|>\n\n";
  const std::string assistant = "<|start_header_id|>assistant<|end_header_id|>\n\n";
  EXPECT_EQ(example["text"], "<|begin_of_text|>" + user + "Hi there<|eot_id|>" + assistant +
                                 "Hello!<|eot_id|>" + user + "Bye<|eot_id|>" + assistant +
                                 "See you.<|eot_id|>" + assistant);
  const std::vector<int32_t> ids = example["ids"].get<std::vector<int32_t>>();
  const std::vector<int> trained = example["trained"].get<std::vector<int>>();
  ASSERT_EQ(ids.size(), trained.size());
  std::vector<int32_t> trained_ids;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (trained[i]) trained_ids.push_back(ids[i]);
  }
  EXPECT_EQ(pieces(dir / "model/tokenizer.json", trained_ids),
            (std::vector<std::string>{"Hello", "!", "<|eot_id|>", "See", "\u0120you", ".",
                                      "<|eot_id|>"}));
  // The masked mean over those targets, against the float64 reference.
  write_text(dir / "chat.jsonl", json{{"messages", messages}}.dump() + "\n");
  write_text(dir / "examples.json", json::array({example}).dump());
  write_text(dir / "eval.json", sft_config(dir, dir / "chat.jsonl", "chat", dir / "out", 1).dump());
  const CommandResult ours = run_dsinf("eval " + (dir / "eval.json") + " --json", dir.path());
  ASSERT_EQ(ours.exit_code, 0) << ours.err;
  const json got = json_lines(ours.out).back();
  EXPECT_EQ(got["tokens"], trained_ids.size());
  const CommandResult ref = run_command(llama_script() + " eval --dir " + (dir / "model") +
                                            " --examples " + (dir / "examples.json") + " --seq 48",
                                        dir.path());
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  const double want = json::parse(ref.out)["loss"].get<double>();
  EXPECT_NEAR(got["loss"].get<double>(), want, 1e-4 * want);
}

// prompt + completion: the prompt carries no loss; the completion does.
TEST(Sft, PromptCompletionTrainsTheCompletionOnly) {
  SKIP_WITHOUT_FIXTURES();
  if (!have_torch()) GTEST_SKIP() << "python3-torch is not installed";
  TempDir dir;
  make_chat_model(dir);
  write_text(dir / "pc.jsonl", json{{"prompt", "Question: two plus two?"}, {"completion", " Four"}}.dump() + "\n");
  write_text(dir / "pc.json", sft_config(dir, dir / "pc.jsonl", "prompt_completion", dir / "out", 1).dump());
  const CommandResult r = run_dsinf("eval " + (dir / "pc.json") + " --json", dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // " Four" is one piece of Llama 3's vocabulary ("\u0120Four"), and this tokenizer.json's
  // post-processor appends nothing.
  EXPECT_EQ(json_lines(r.out).back()["tokens"], 1);
}

// 40 short conversations; 30 steps of chat SFT bring the loss down.
TEST(Sft, ChatFineTuneLossFalls) {
  SKIP_WITHOUT_FIXTURES();
  if (!have_torch()) GTEST_SKIP() << "python3-torch is not installed";
  TempDir dir;
  make_chat_model(dir);
  std::string lines;
  for (int i = 0; i < 40; ++i) {
    const int a = i % 7, b = i % 5;
    lines += json{{"messages", json::array({{{"role", "user"}, {"content", "What is " + std::to_string(a) + " plus " + std::to_string(b) + "?"}},
                                            {{"role", "assistant"}, {"content", "It is " + std::to_string(a + b) + "."}}})}}
                 .dump() +
             "\n";
  }
  write_text(dir / "chat.jsonl", lines);
  json c = sft_config(dir, dir / "chat.jsonl", "chat", dir / "out", 30);
  c["optimizer"]["params"]["lr"] = 1e-2;
  c["scheduler"]["params"] = {{"total_num_steps", 30}, {"warmup_num_steps", 2}, {"warmup_max_lr", 1e-2}};
  write_text(dir / "train.json", c.dump());
  const CommandResult r = run_dsinf("train " + (dir / "train.json") + " --json", dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<double> losses;
  for (const json& line : json_lines(r.out)) {
    if (line.value("event", "") == "step") losses.push_back(line["loss"].get<double>());
  }
  ASSERT_EQ(losses.size(), 30u);
  const double first = (losses[0] + losses[1] + losses[2]) / 3;
  const double last = (losses[27] + losses[28] + losses[29]) / 3;
  EXPECT_LT(last, 0.7 * first) << "first " << first << ", last " << last;
}

TEST(Sft, BadChatDataExitsTwoNamingFileAndLine) {
  SKIP_WITHOUT_FIXTURES();
  if (!have_torch()) GTEST_SKIP() << "python3-torch is not installed";
  TempDir dir;
  make_chat_model(dir);
  const json good = {{"messages", json::array({{{"role", "user"}, {"content", "a"}}, {{"role", "assistant"}, {"content", "b"}}})}};
  struct Case {
    std::string name, text, expect;
  };
  for (const Case& k : {Case{"notjson", good.dump() + "\n{oops\n", "line 2: not valid JSON"},
                        Case{"nomessages", "{\"msgs\": []}\n", "line 1"},
                        Case{"roles", json{{"messages", json::array({{{"content", "a"}}})}}.dump() + "\n", "line 1: \"messages\" must be"},
                        Case{"empty", "\n\n", "no example"}}) {
    SCOPED_TRACE(k.name);
    write_text(dir / (k.name + ".jsonl"), k.text);
    write_text(dir / (k.name + ".json"), sft_config(dir, dir / (k.name + ".jsonl"), "chat", dir / k.name, 1).dump());
    const CommandResult r = run_dsinf("train " + (dir / (k.name + ".json")), dir.path());
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find(k.expect), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir / k.name));
  }
  // chat data without a tokenizer names data.format.
  json c = sft_config(dir, dir / "roles.jsonl", "chat", dir / "x", 1);
  c["model"] = {{"type", "llama"}, {"hidden_size", 32}, {"num_hidden_layers", 1}, {"num_attention_heads", 4},
                {"intermediate_size", 48}, {"vocab_size", 32000}, {"max_position_embeddings", 64}};
  write_text(dir / "notok.json", c.dump());
  const CommandResult r = run_dsinf("train " + (dir / "notok.json"), dir.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("data.format"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace dsinf::testing
