// The generation loop (trainer/train/generate.h) over a scripted decoder: it
// stops at a stop id (kept in the tokens, left out of the text), at
// max_new_tokens and at the window; a second prompt sharing a prefix with
// what the cache holds reuses it and appends only the rest; a prompt past the
// window is refused. Needs Llama 3's tokenizer (scripts/fixtures.sh) for text.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "trainer/train/generate.h"

namespace dsinf::trainer {
namespace {

// Position p's logits favour token 1000 + p, or `stop_id` at position stop_at.
class ScriptedDecoder final : public Decoder {
 public:
  ScriptedDecoder(int window, int stop_at, int32_t stop_id)
      : window_(window), stop_at_(stop_at), stop_id_(stop_id) {}
  int max_positions() const override { return window_; }
  int vocab_size() const override { return 128256; }
  size_t kv_cache_bytes() const override { return 0; }
  size_t device_bytes() const override { return 0; }
  absl::Status bind(kernels::Backend*, actors::ChunkSource*) override { return absl::OkStatus(); }
  int position() const override { return position_; }
  void truncate(int positions) override { position_ = std::min(position_, positions); }
  absl::Status append(const std::vector<int32_t>& tokens, std::vector<float>& logits) override {
    appended.push_back(tokens);
    position_ += static_cast<int>(tokens.size());
    logits.assign(vocab_size(), 0.0f);
    logits[position_ == stop_at_ ? stop_id_ : 1000 + position_] = 1.0f;
    return absl::OkStatus();
  }
  std::vector<std::vector<int32_t>> appended;

 private:
  int window_, stop_at_;
  int32_t stop_id_;
  int position_ = 0;
};

class GeneratorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = std::string(DSINF_SOURCE_DIR) + "/.fixtures/tokenizers/llama3";
    if (!std::filesystem::exists(dir + "/tokenizer.json")) {
      GTEST_SKIP() << "the tokenizer fixtures are missing (scripts/fixtures.sh)";
    }
    auto t = Tokenizer::load(dir);
    ASSERT_TRUE(t.ok()) << t.status();
    tokenizer_ = *std::move(t);
  }
  absl::StatusOr<GenerationResult> run(Generator& g, const std::vector<int32_t>& prompt,
                                       int max_new, std::string* streamed) {
    GenerateOptions options;
    options.max_new_tokens = max_new;
    options.stop_ids = {kStop};
    Sampler greedy(options.sampling);
    return g.run(prompt, options, greedy, *tokenizer_,
                 [&](std::string_view piece) { streamed->append(piece); });
  }
  static constexpr int32_t kStop = 128009;  // <|eot_id|>
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(GeneratorTest, StopsAtTheStopIdMaxNewTokensAndTheWindow) {
  ScriptedDecoder d(/*window=*/12, /*stop_at=*/6, kStop);
  Generator g(d);
  std::string text;
  absl::StatusOr<GenerationResult> r = run(g, {1, 2, 3}, 100, &text);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stop, StopReason::kEos);
  EXPECT_EQ(r->tokens, (std::vector<int32_t>{1003, 1004, 1005, kStop}));
  EXPECT_EQ(r->text, tokenizer_->decode({1003, 1004, 1005}));
  EXPECT_EQ(text, r->text);
  EXPECT_EQ(r->decode_passes, 3);

  ScriptedDecoder d2(12, -1, kStop);
  Generator g2(d2);
  text.clear();
  r = run(g2, {1, 2, 3}, 2, &text);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stop, StopReason::kMaxTokens);
  EXPECT_EQ(r->tokens.size(), 2u);
  text.clear();
  r = run(g2, {7, 8, 9, 10}, 100, &text);  // positions 4..11, then the window is full
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stop, StopReason::kWindow);
  EXPECT_EQ(r->tokens.size(), 9u);
  EXPECT_EQ(d2.position(), 12);
  EXPECT_EQ(r->text, tokenizer_->decode(r->tokens));
}

TEST_F(GeneratorTest, ASharedPrefixIsNotComputedAgain) {
  ScriptedDecoder d(64, -1, kStop);
  Generator g(d);
  std::string text;
  ASSERT_TRUE(run(g, {1, 2, 3, 4}, 3, &text).ok());  // caches 1 2 3 4 1004 1005
  d.appended.clear();
  absl::StatusOr<GenerationResult> r = run(g, {1, 2, 3, 4, 1004, 9, 9}, 1, &text);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->reused_tokens, 5);
  ASSERT_EQ(d.appended.size(), 1u);
  EXPECT_EQ(d.appended[0], (std::vector<int32_t>{9, 9}));
  // The same prompt again: its last token is appended again for the logits.
  d.appended.clear();
  r = run(g, {1, 2, 3, 4, 1004, 9, 9}, 1, &text);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->reused_tokens, 6);
  EXPECT_EQ(d.appended[0], (std::vector<int32_t>{9}));
  g.reset();
  EXPECT_EQ(d.position(), 0);
}

TEST_F(GeneratorTest, APromptPastTheWindowIsRefused) {
  ScriptedDecoder d(4, -1, kStop);
  Generator g(d);
  std::string text;
  EXPECT_EQ(run(g, {1, 2, 3, 4, 5}, 1, &text).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(run(g, {}, 1, &text).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dsinf::trainer
