// Small tokenizer.json files written by hand for the tokenizer's tests, and
// helpers to load them and the real fixtures.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"
#include "trainer/data/tokenizer/tokenizer.h"

namespace dsinf::trainer::tokenizer_test {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// The real tokenizers scripts/fixtures.sh fetches.
inline const fs::path kFixtures = fs::path(DSINF_SOURCE_DIR) / ".fixtures/tokenizers";
inline const char* const kFamilies[] = {"llama2", "llama3", "qwen3", "gemma3", "deepseek_v3"};

// Writes `contents` to a fresh file under the test's temporary directory.
inline std::string write_temp(const std::string& name, const std::string& contents) {
  const fs::path dir =
      fs::temp_directory_path() / ("dsinf_tokenizer_test_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const fs::path path = dir / name;
  std::ofstream(path, std::ios::binary) << contents;
  return path.string();
}

// A byte-level BPE over a tiny vocabulary: every byte's GPT-2 character,
// plus a few merges. The components default to Llama 3's.
inline Json byte_level_tokenizer() {
  Json vocab = Json::object();
  std::vector<std::string> chars;
  auto byte_char = [](int b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    int next = 256;
    for (int k = 0; k < b; ++k) {
      if (!((k >= '!' && k <= '~') || (k >= 0xA1 && k <= 0xAC) || k >= 0xAE)) ++next;
    }
    const int cp = printable ? b : next;
    std::string s;
    if (cp < 0x80) {
      s.push_back(static_cast<char>(cp));
    } else {
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    return s;
  };
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"},   {"he", "ll"},  {"hell", "o"}, {"Ġ", "w"},
      {"o", "r"}, {"Ġw", "or"}, {"Ġwor", "l"}, {"Ġworl", "d"}};
  Json merge_list = Json::array();
  int next_id = 256;
  for (const auto& [a, b] : merges) {
    if (!vocab.contains(a + b)) vocab[a + b] = next_id++;
    merge_list.push_back(a + " " + b);
  }
  Json j;
  j["version"] = "1.0";
  j["added_tokens"] = Json::array();
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "ByteLevel"},
                        {"add_prefix_space", false},
                        {"trim_offsets", true},
                        {"use_regex", true}};
  j["post_processor"] = nullptr;
  j["decoder"] = {{"type", "ByteLevel"}};
  j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}};
  return j;
}

// A SentencePiece-style BPE (Llama 2's components) over a tiny vocabulary
// with byte fallback.
inline Json sentencepiece_tokenizer() {
  Json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  int id = 259;
  for (const char* t : {"▁", "a", "b", "c", "▁a", "ab", "▁ab", "é"}) vocab[t] = id++;
  Json j;
  j["version"] = "1.0";
  j["added_tokens"] = Json::array({
      {{"id", 0}, {"content", "<unk>"}, {"special", true}, {"normalized", false}},
      {{"id", 1}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
      {{"id", 2}, {"content", "</s>"}, {"special", true}, {"normalized", false}},
  });
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers",
                      {{{"type", "Prepend"}, {"prepend", "▁"}},
                       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}}}}};
  j["pre_tokenizer"] = nullptr;
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single",
       {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}};
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders",
                   {{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
                    {{"type", "ByteFallback"}},
                    {{"type", "Fuse"}},
                    {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  j["model"] = {{"type", "BPE"},
                {"vocab", vocab},
                {"unk_token", "<unk>"},
                {"fuse_unk", true},
                {"byte_fallback", true},
                {"dropout", nullptr},
                {"merges", Json::array({"▁ a", "a b", "▁a b"})}};
  return j;
}

inline std::unique_ptr<Tokenizer> load_json(const Json& j,
                                            const std::string& name = "tokenizer.json") {
  auto tokenizer = Tokenizer::load(write_temp(name, j.dump()));
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

inline absl::Status load_error(const std::string& contents) {
  auto tokenizer = Tokenizer::load(write_temp("bad.json", contents));
  EXPECT_FALSE(tokenizer.ok());
  return tokenizer.ok() ? absl::OkStatus() : tokenizer.status();
}

inline std::vector<int32_t> ids_of(const Tokenizer& tokenizer, std::string_view text,
                                   bool add_special = true) {
  auto encoding = tokenizer.encode(text, add_special);
  EXPECT_TRUE(encoding.ok()) << encoding.status();
  return encoding.ok() ? encoding->ids : std::vector<int32_t>{};
}

inline bool has_fixture(const std::string& family) {
  return fs::exists(kFixtures / family / "tokenizer.json");
}

}  // namespace dsinf::trainer::tokenizer_test
