// The real fixtures from two threads at once, and random bytes and random
// UTF-8 through every tokenizer: a status or ids, never a crash.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/trainer/data/tokenizer/test_tokenizers.h"

namespace dsinf::trainer::tokenizer_test {
namespace {

TEST(TokenizerThreads, SameIdsFromTwoThreads) {
  if (!has_fixture("llama3")) GTEST_SKIP() << "fixtures absent: run scripts/fixtures.sh";
  auto tokenizer = Tokenizer::load((kFixtures / "llama3").string());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  std::vector<std::string> texts;
  std::mt19937 rng(7);
  const std::vector<std::string> words = {"the", " quick", " brown", " fox", ",",  " 12345",
                                          "\n",  " naïve", " 你好",  " 😀",   "  ", " don't"};
  for (int i = 0; i < 400; ++i) {
    std::string text;
    for (int k = 0; k < 50; ++k) text += words[rng() % words.size()];
    texts.push_back(text);
  }
  std::vector<std::vector<int32_t>> serial;
  for (const std::string& text : texts) serial.push_back(ids_of(**tokenizer, text));
  // Fresh tokenizers so the threads race on an empty cache.
  auto shared = Tokenizer::load((kFixtures / "llama3").string());
  ASSERT_TRUE(shared.ok());
  std::vector<std::vector<int32_t>> results[2];
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = 0; i < texts.size(); ++i) {
        const size_t k = t == 0 ? i : texts.size() - 1 - i;
        auto encoding = (*shared)->encode(texts[k]);
        results[t].push_back(encoding.ok() ? encoding->ids : std::vector<int32_t>{-1});
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(results[0][i], serial[i]) << i;
    EXPECT_EQ(results[1][texts.size() - 1 - i], serial[i]) << i;
  }
}

// Random bytes and random UTF-8 through every fixture: a status or ids, never
// a crash; valid UTF-8 always encodes, and byte-level families decode it back.
TEST(TokenizerFuzz, RandomInputNeverCrashes) {
  std::vector<std::pair<std::string, std::unique_ptr<Tokenizer>>> tokenizers;
  tokenizers.emplace_back("byte_level", load_json(byte_level_tokenizer()));
  tokenizers.emplace_back("sentencepiece", load_json(sentencepiece_tokenizer()));
  for (const std::string family : {"llama2", "llama3", "qwen3", "gemma3", "deepseek_v3"}) {
    if (!has_fixture(family)) continue;
    auto t = Tokenizer::load((kFixtures / family).string());
    ASSERT_TRUE(t.ok()) << t.status();
    tokenizers.emplace_back(family, *std::move(t));
  }
  std::mt19937 rng(12345);
  const std::vector<uint32_t> interesting = {
      0x0,    0x9,    0xA,    0xD,    ' ',     '\'',   's',      '1',     '<',
      '|',    '>',    0x85,   0xA0,   0x301,   0x1100, 0x1161,   0x11A8,  0x2581,
      0x3000, 0x4F60, 0xFEFF, 0xFF5C, 0x1F600, 0x200D, 0x10FFFF, 0xE01EF, 0x0E01};
  auto append_utf8 = [](std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out.push_back(char(cp));
    } else if (cp < 0x800) {
      out += {char(0xC0 | (cp >> 6)), char(0x80 | (cp & 0x3F))};
    } else if (cp < 0x10000) {
      out += {char(0xE0 | (cp >> 12)), char(0x80 | ((cp >> 6) & 0x3F)), char(0x80 | (cp & 0x3F))};
    } else {
      out += {char(0xF0 | (cp >> 18)), char(0x80 | ((cp >> 12) & 0x3F)),
              char(0x80 | ((cp >> 6) & 0x3F)), char(0x80 | (cp & 0x3F))};
    }
  };
  for (int round = 0; round < 300; ++round) {
    std::string bytes, utf8;
    const int length = rng() % 64;
    for (int i = 0; i < length; ++i) bytes.push_back(static_cast<char>(rng() & 0xFF));
    for (int i = 0; i < length; ++i) {
      uint32_t cp;
      switch (rng() % 4) {
        case 0:
          cp = interesting[rng() % interesting.size()];
          break;
        case 1:
          cp = 0x20 + rng() % 0x5F;
          break;
        default:
          cp = rng() % 0x110000;
          if (cp >= 0xD800 && cp < 0xE000) cp = 'x';
      }
      append_utf8(utf8, cp);
    }
    for (const auto& [name, tokenizer] : tokenizers) {
      ASSERT_NE(tokenizer, nullptr);
      auto from_bytes = tokenizer->encode(bytes);
      if (from_bytes.ok()) (void)tokenizer->decode(from_bytes->ids);
      auto from_utf8 = tokenizer->encode(utf8);
      ASSERT_TRUE(from_utf8.ok()) << name << ": " << from_utf8.status();
      for (int32_t id : from_utf8->ids) {
        ASSERT_GE(id, 0);
        ASSERT_LT(static_cast<size_t>(id), tokenizer->vocab_size());
      }
      if (name == "llama3" || name == "byte_level") {
        EXPECT_EQ(tokenizer->decode(from_utf8->ids), utf8) << name << " round " << round;
      }
    }
  }
}

}  // namespace
}  // namespace dsinf::trainer::tokenizer_test
