// Token data: byte-level text, directories in sorted order, token shards and
// their validation, and the seeded window sampler.

#include <algorithm>
#include <set>

#include "kernels/ops.h"
#include "tests/test_util.h"
#include "trainer/data/data.h"
#include "trainer/data/sft.h"
#include "trainer/data/windows.h"

namespace dsinf::trainer {
namespace {

using testing::TempDir;
using testing::write_text;

TEST(Data, TextIsByteLevel) {
  TempDir dir;
  write_text(dir / "a.txt", "Hi\xff");
  auto tokens = load_tokens(dir / "a.txt", 256, "data.path");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(*tokens, (std::vector<int32_t>{'H', 'i', 255}));
}

TEST(Data, JsonLinesAreTheirTextsConcatenated) {
  TempDir dir;
  write_text(dir / "d.jsonl", "{\"text\": \"ab\", \"id\": 1}\n\n  \n{\"text\": \"\\u00e9\"}\n");
  auto tokens = load_tokens(dir / "d.jsonl", 256, "data.path");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(*tokens, (std::vector<int32_t>{'a', 'b', 0xc3, 0xa9}));  // e-acute in UTF-8
  for (const std::string bad : {"{\"text\": 3}\n", "[1]\n", "{\"txt\": \"a\"}\n", "{bad\n"}) {
    write_text(dir / "bad.jsonl", "{\"text\": \"ok\"}\n" + bad);
    auto refused = load_tokens(dir / "bad.jsonl", 256, "data.path");
    ASSERT_FALSE(refused.ok()) << bad;
    EXPECT_NE(refused.status().message().find("bad.jsonl' line 2"), std::string::npos)
        << refused.status();
  }
}

TEST(Data, TextIsRefusedWhenTheModelHasItsOwnTokenizer) {
  TempDir dir;
  write_text(dir / "a.txt", "Hi");
  auto refused = load_tokens(dir / "a.txt", 256, "data.path", "give token shards");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("is text, not a dsinf token shard: give token shards"),
            std::string::npos)
      << refused.status();
}

TEST(Data, DirectoryIsReadInSortedNameOrder) {
  TempDir dir;
  std::filesystem::create_directory(dir / "d");
  write_text(dir / "d/b", "BB");
  write_text(dir / "d/a", "A");
  write_text(dir / "d/c", "C");
  std::filesystem::create_directory(dir / "d/sub");  // not a regular file: skipped
  auto tokens = load_tokens(dir / "d", 256, "data.path");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(*tokens, (std::vector<int32_t>{'A', 'B', 'B', 'C'}));
}

TEST(Data, EmptyDirectoryIsInvalid) {
  TempDir dir;
  std::filesystem::create_directory(dir / "empty");
  auto tokens = load_tokens(dir / "empty", 256, "data.path");
  EXPECT_EQ(tokens.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(tokens.status().message().find("data.path"), std::string::npos);
}

TEST(Data, ShardRoundTripNarrowAndWide) {
  TempDir dir;
  const std::vector<int32_t> narrow = {0, 1, 50256, 65535, 7};
  ASSERT_TRUE(write_token_shard(dir / "n.bin", narrow).ok());
  EXPECT_EQ(std::filesystem::file_size(dir / "n.bin"), 32u + 2 * narrow.size());
  auto n = load_tokens(dir / "n.bin", 65536, "data.path");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, narrow);
  const std::vector<int32_t> wide = {70000, 3};
  ASSERT_TRUE(write_token_shard(dir / "w.bin", wide).ok());
  EXPECT_EQ(std::filesystem::file_size(dir / "w.bin"), 32u + 4 * wide.size());
  auto w = load_tokens(dir / "w.bin", 70001, "data.path");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(*w, wide);
}

TEST(Data, ShardTokenOutsideVocabularyIsInvalid) {
  TempDir dir;
  ASSERT_TRUE(write_token_shard(dir / "s.bin", {1, 2, 300}).ok());
  auto tokens = load_tokens(dir / "s.bin", 256, "data.eval_path");
  ASSERT_EQ(tokens.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(tokens.status().message().find("data.eval_path"), std::string::npos);
  EXPECT_NE(tokens.status().message().find(dir / "s.bin"), std::string::npos);
  EXPECT_NE(tokens.status().message().find("300"), std::string::npos);
}

TEST(Data, TruncatedShardIsInvalid) {
  TempDir dir;
  ASSERT_TRUE(write_token_shard(dir / "s.bin", {1, 2, 3, 4}).ok());
  std::string bytes = testing::read_text(dir / "s.bin");
  write_text(dir / "s.bin", bytes.substr(0, bytes.size() - 1));
  auto tokens = load_tokens(dir / "s.bin", 256, "data.path");
  EXPECT_EQ(tokens.status().code(), absl::StatusCode::kInvalidArgument);
  write_text(dir / "h.bin", bytes.substr(0, 20));  // header cut short
  EXPECT_EQ(load_tokens(dir / "h.bin", 256, "data.path").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Data, WindowsFollowTheDefinition) {
  EXPECT_EQ(num_windows(0, 4), 0);
  EXPECT_EQ(num_windows(4, 4), 0);  // needs T + 1 tokens for one window
  EXPECT_EQ(num_windows(5, 4), 1);
  EXPECT_EQ(num_windows(9, 4), 2);
  std::vector<int32_t> tokens(9);
  for (int i = 0; i < 9; ++i) tokens[i] = i;
  const Windows windows = Windows::stream(tokens, 4);
  EXPECT_EQ(windows.count(), 2);
  WindowSampler sampler(&windows, 1);
  std::set<std::vector<int32_t>> seen;
  for (int k = 0; k < 2; ++k) {
    std::vector<int32_t> in(4), tgt(4);
    sampler.next_batch(1, in.data(), tgt.data());
    for (int t = 0; t < 4; ++t) EXPECT_EQ(tgt[t], in[t] + 1);
    EXPECT_EQ(in[0] % 4, 0);
    seen.insert(in);
  }
  EXPECT_EQ(seen.size(), 2u);  // one epoch visits every window once
}

TEST(Data, SamplerIsSeededAndRestorable) {
  std::vector<int32_t> tokens(1001);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i % 256);
  auto draw = [&](WindowSampler& s, int batches) {
    std::vector<int32_t> all, in(3 * 10), tgt(3 * 10);
    for (int b = 0; b < batches; ++b) {
      s.next_batch(3, in.data(), tgt.data());
      all.insert(all.end(), in.begin(), in.end());
    }
    return all;
  };
  const Windows windows = Windows::stream(tokens, 10);
  WindowSampler a(&windows, 5), b(&windows, 5), c(&windows, 6);
  const std::vector<int32_t> first = draw(a, 50);  // crosses epochs (100 windows)
  EXPECT_EQ(first, draw(b, 50));
  EXPECT_NE(first, draw(c, 50));
  // Restoring a position mid-run continues the same stream.
  WindowSampler straight(&windows, 5);
  draw(straight, 37);
  const SamplerState mid = straight.state();
  const std::vector<int32_t> rest = draw(straight, 20);
  WindowSampler resumed(&windows, 5);
  ASSERT_TRUE(resumed.restore(mid).ok());
  EXPECT_EQ(draw(resumed, 20), rest);
  EXPECT_EQ(resumed.restore({0, 101}).code(), absl::StatusCode::kInvalidArgument);
}

// SFT windows, against masks written out by hand: example ids x0..x4 with
// x3, x4 trained give targets [-, -, x3, x4] then padding.
TEST(Data, ExampleWindowsMaskPromptsAndPaddingAndTruncate) {
  const int32_t I = kernels::kIgnoreTarget;
  std::vector<Example> examples = {
      {{10, 11, 12, 13, 14}, {0, 0, 0, 1, 1}},          // fits T = 6 with padding
      {{20, 21, 22, 23, 24, 25, 26, 27, 28}, {0, 1, 1, 1, 1, 1, 1, 1, 1}},  // longer: cut
      {{30, 31, 32}, {0, 0, 0}},                        // nothing trained: left out
      {{40, 41, 42, 43, 44, 45, 46, 47, 48}, {0, 0, 0, 0, 0, 0, 0, 1, 1}},  // trained part cut off
  };
  WindowingOptions o;
  o.T = 6;
  o.pad_id = 99;
  WindowingStats stats;
  const Windows w = window_examples(examples, o, &stats);
  ASSERT_EQ(w.count(), 2);
  EXPECT_EQ(stats.examples, 4);
  EXPECT_EQ(stats.truncated, 1);
  EXPECT_EQ(stats.dropped_untrained, 2);
  std::vector<int32_t> in(6), tg(6);
  w.copy(0, in.data(), tg.data());
  EXPECT_EQ(in, (std::vector<int32_t>{10, 11, 12, 13, 14, 99}));
  EXPECT_EQ(tg, (std::vector<int32_t>{I, I, 13, 14, I, I}));
  w.copy(1, in.data(), tg.data());
  EXPECT_EQ(in, (std::vector<int32_t>{20, 21, 22, 23, 24, 25}));
  EXPECT_EQ(tg, (std::vector<int32_t>{21, 22, 23, 24, 25, 26}));
  o.drop_long = true;
  const Windows dropped = window_examples(examples, o, &stats);
  EXPECT_EQ(dropped.count(), 1);
  EXPECT_EQ(stats.dropped_long, 2);
}

}  // namespace
}  // namespace dsinf::trainer
