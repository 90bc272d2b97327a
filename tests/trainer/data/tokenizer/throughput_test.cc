// Encoding throughput on English text (disabled; run with
//   trainer_tokenizer_test --gtest_also_run_disabled_tests --gtest_filter='*Throughput*').
// Prints MB/s and tokens/s; asserts nothing about time.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/trainer/data/tokenizer/test_tokenizers.h"

namespace dsinf::trainer::tokenizer_test {
namespace {

// English text: the license texts every Debian machine has, cut into
// documents of about 4 KiB.
std::vector<std::string> english_documents() {
  std::string all;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator("/usr/share/common-licenses", error)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    all.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::vector<std::string> documents;
  for (size_t at = 0; at < all.size();) {
    size_t end = std::min(all.size(), at + 4096);
    while (end < all.size() && all[end] != '\n') ++end;
    documents.push_back(all.substr(at, end - at));
    at = end;
  }
  return documents;
}

// Single-thread MB/s with an empty and a warm word cache, and two threads,
// for Llama 3 (the target: >= 6 MB/s on one thread) and then the others.
TEST(TokenizerThroughput, DISABLED_EnglishText) {
  const std::vector<std::string> documents = english_documents();
  if (documents.empty()) GTEST_SKIP() << "no text under /usr/share/common-licenses";
  size_t bytes_per_pass = 0;
  for (const std::string& d : documents) bytes_per_pass += d.size();
  std::printf("English text: %zu documents, %.2f MB (/usr/share/common-licenses)\n",
              documents.size(), bytes_per_pass / 1e6);
  using Clock = std::chrono::steady_clock;
  for (const std::string family : {"llama3", "qwen3", "deepseek_v3", "llama2", "gemma3"}) {
    if (!has_fixture(family)) continue;
    auto tokenizer = Tokenizer::load((kFixtures / family).string());
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    auto run = [&](const char* label, int passes, int threads) {
      const auto start = Clock::now();
      std::vector<std::thread> pool;
      std::vector<size_t> counts(threads, 0);
      for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
          for (int p = 0; p < passes; ++p) {
            for (size_t i = t; i < documents.size(); i += threads) {
              auto encoding = (*tokenizer)->encode(documents[i]);
              counts[t] += encoding.ok() ? encoding->ids.size() : 0;
            }
          }
        });
      }
      for (auto& thread : pool) thread.join();
      size_t tokens = 0;
      for (size_t c : counts) tokens += c;
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      const double bytes = double(bytes_per_pass) * passes;
      std::printf("  %-12s %-28s %7.2f MB/s  %6.2f M tokens/s  (%.2f bytes/token)\n",
                  family.c_str(), label, bytes / seconds / 1e6, tokens / seconds / 1e6,
                  bytes / tokens);
    };
    run("1 thread, empty cache", 1, 1);
    run("1 thread, warm cache", 5, 1);
    run("2 threads, warm cache", 5, 2);
  }
}

// One large document against the same text cut into documents of about
// 2 MB: encoding must be linear in the document, so the ratio of the two
// MB/s should stay near 1 as the document grows. The text is
// $DSINF_TOKENIZER_LARGE_TEXT, else /tmp/licenses.txt (make it with
//   cat /usr/share/common-licenses/* /usr/share/doc/*/copyright > /tmp/licenses.txt),
// else the license texts repeated to 24 MB. Single thread, warm cache, best of 2.
TEST(TokenizerThroughput, DISABLED_LargeDocument) {
  const char* env = std::getenv("DSINF_TOKENIZER_LARGE_TEXT");
  std::string text;
  {
    std::ifstream in(env != nullptr ? env : "/tmp/licenses.txt", std::ios::binary);
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (text.empty()) {
    std::string unit;
    for (const std::string& d : english_documents()) unit += d;
    if (unit.empty()) GTEST_SKIP() << "no text";
    while (text.size() < (24u << 20)) text += unit;
  }
  using Clock = std::chrono::steady_clock;
  for (const std::string family : {"llama3", "qwen3", "deepseek_v3", "llama2", "gemma3"}) {
    if (!has_fixture(family)) continue;
    auto tokenizer = Tokenizer::load((kFixtures / family).string());
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    for (size_t bytes : {size_t{8} << 20, text.size()}) {
      std::string_view document = std::string_view(text).substr(0, std::min(bytes, text.size()));
      while (!document.empty() &&
             (static_cast<unsigned char>(text[document.size()]) & 0xC0) == 0x80) {
        document.remove_suffix(1);  // cut at a character boundary
      }
      std::vector<std::string_view> chunks;  // ~2 MB each, cut after a newline
      for (size_t at = 0; at < document.size();) {
        size_t end = std::min(document.size(), at + (size_t{2} << 20));
        while (end < document.size() && document[end - 1] != '\n') ++end;
        chunks.push_back(document.substr(at, end - at));
        at = end;
      }
      // Best MB/s of two passes over `parts` (the first warms the cache too).
      auto mb_per_s = [&](const std::vector<std::string_view>& parts) {
        double best = 0;
        for (int pass = 0; pass < 2; ++pass) {
          const auto start = Clock::now();
          for (std::string_view part : parts) {
            auto encoding = (*tokenizer)->encode(part);
            EXPECT_TRUE(encoding.ok()) << encoding.status();
          }
          const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
          best = std::max(best, document.size() / seconds / 1e6);
        }
        return best;
      };
      const double chunked = mb_per_s(chunks);
      const double whole = mb_per_s({document});
      std::printf("  %-12s %6.2f MB: %3zu documents %7.2f MB/s, one document %7.2f MB/s (%.2fx)\n",
                  family.c_str(), document.size() / 1e6, chunks.size(), chunked, whole,
                  whole / chunked);
    }
  }
}

}  // namespace
}  // namespace dsinf::trainer::tokenizer_test
