// The streaming pipeline against plain references: pieces are cut one at a
// time (regex cursor, splitter), the pre-tokenizers run depth first while
// later steps grow the arena, and long words are merged part by part. Each
// is compared with the simplest correct way of doing the same thing.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "tests/trainer/data/tokenizer/test_tokenizers.h"
#include "trainer/data/tokenizer/normalized.h"
#include "trainer/data/tokenizer/pre_tokenizers.h"
#include "trainer/data/tokenizer/regex.h"
#include "trainer/data/tokenizer/unicode.h"

namespace dsinf::trainer::tokenizer_test {
namespace {

using tokenizer_internal::Arena;
using tokenizer_internal::MatchRange;
using tokenizer_internal::Piece;
using tokenizer_internal::Regex;
using tokenizer_internal::Span;
using tokenizer_internal::SplitBehavior;
using tokenizer_internal::Splitter;

// Text with multi-byte characters, digits, runs of spaces and punctuation.
std::string mixed_text(size_t bytes, unsigned seed) {
  const std::vector<std::string> words = {"the",  "Über", "naïve", "東京", "42", "3.14159", "  ",
                                          "\n\n", "--",   "x",     "😀",    " ",  "don't",   "ΑΒΓ"};
  std::mt19937 random(seed);
  std::string text;
  while (text.size() < bytes) {
    text += words[random() % words.size()];
    if (random() % 3 != 0) text += ' ';
  }
  return text;
}

TEST(TokenizerPipeline, CursorGivesFindMatchesRangesWhileTheSubjectMoves) {
  const std::string text = mixed_text(20000, 1);
  for (const char* pattern : {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
                              "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
                              "\\s+(?!\\S)|\\s+",
                              "x*", " ", "\\p{N}"}) {
    auto regex = Regex::compile(pattern);
    ASSERT_TRUE(regex.ok()) << regex.status();
    std::vector<MatchRange> expected;
    ASSERT_TRUE((*regex)->find_matches(text, expected).ok());
    Regex::Cursor cursor(**regex, text.size());
    std::vector<MatchRange> got;
    MatchRange range;
    std::string moving = text;
    while (cursor.next(moving, range)) {
      got.push_back(range);
      moving = std::string(moving);  // a fresh copy: the old buffer is gone
    }
    ASSERT_TRUE(cursor.status().ok()) << cursor.status();
    ASSERT_EQ(got.size(), expected.size()) << pattern;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].begin, expected[i].begin) << pattern << " range " << i;
      EXPECT_EQ(got[i].end, expected[i].end) << pattern << " range " << i;
      EXPECT_EQ(got[i].is_match, expected[i].is_match) << pattern << " range " << i;
    }
  }
}

// Hugging Face's NormalizedString::split over all the ranges at once (the
// MergedWithNext case walks them backwards), as parts [begin, end).
std::vector<std::pair<uint32_t, uint32_t>> reference_split(const std::vector<MatchRange>& ranges,
                                                           SplitBehavior behavior, bool invert) {
  struct Part {
    uint32_t begin, end;
    bool remove;
  };
  std::vector<Part> parts;
  auto matched = [&](const MatchRange& m) { return m.is_match != invert; };
  bool previous = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const MatchRange& m : ranges) parts.push_back({m.begin, m.end, false});
      break;
    case SplitBehavior::kRemoved:
      for (const MatchRange& m : ranges) parts.push_back({m.begin, m.end, matched(m)});
      break;
    case SplitBehavior::kContiguous:
      for (const MatchRange& m : ranges) {
        if (matched(m) == previous && !parts.empty()) {
          parts.back().end = m.end;
        } else {
          parts.push_back({m.begin, m.end, false});
        }
        previous = matched(m);
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const MatchRange& m : ranges) {
        if (matched(m) && !previous && !parts.empty()) {
          parts.back().end = m.end;
        } else {
          parts.push_back({m.begin, m.end, false});
        }
        previous = matched(m);
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = ranges.rbegin(); it != ranges.rend(); ++it) {
        if (matched(*it) && !previous && !parts.empty()) {
          parts.back().begin = it->begin;
        } else {
          parts.push_back({it->begin, it->end, false});
        }
        previous = matched(*it);
      }
      std::reverse(parts.begin(), parts.end());
      break;
  }
  std::vector<std::pair<uint32_t, uint32_t>> out;
  for (const Part& p : parts) {
    if (!p.remove && p.begin != p.end) out.emplace_back(p.begin, p.end);
  }
  return out;
}

TEST(TokenizerPipeline, SplitterMatchesTheWholeRangeSplit) {
  std::mt19937 random(7);
  for (int trial = 0; trial < 2000; ++trial) {
    // Random ranges covering [0, n): matches (some empty, some adjacent) and gaps.
    std::vector<MatchRange> ranges;
    uint32_t at = 0;
    const int count = int(random() % 8);
    for (int i = 0; i < count; ++i) {
      const uint32_t length = random() % 3;
      const bool is_match = random() % 2 == 0;
      if (!is_match && length == 0) continue;
      ranges.push_back({at, at + length, is_match});
      at += length;
    }
    if (ranges.empty()) ranges.push_back({0, 0, false});
    const Piece piece{100, 100 + at};
    for (SplitBehavior behavior :
         {SplitBehavior::kRemoved, SplitBehavior::kIsolated, SplitBehavior::kMergedWithPrevious,
          SplitBehavior::kMergedWithNext, SplitBehavior::kContiguous}) {
      for (bool invert : {false, true}) {
        std::vector<std::pair<uint32_t, uint32_t>> got;
        auto collect = [&](const Piece& part) {
          got.emplace_back(part.begin - piece.begin, part.end - piece.begin);
          return absl::OkStatus();
        };
        Splitter splitter(piece, behavior, invert, collect);
        for (const MatchRange& range : ranges) ASSERT_TRUE(splitter.add(range).ok());
        ASSERT_TRUE(splitter.finish().ok());
        EXPECT_EQ(got, reference_split(ranges, behavior, invert))
            << "trial " << trial << " behavior " << int(behavior) << " invert " << invert;
      }
    }
  }
}

TEST(TokenizerPipeline, InputBytesAlignToTheirCharacters) {
  const std::string text = "aé東😀";  // 1, 2, 3 and 4 bytes
  Arena arena(text);
  const std::vector<Span> expected = {{0, 1}, {1, 3},  {1, 3},  {3, 6},  {3, 6},
                                      {3, 6}, {6, 10}, {6, 10}, {6, 10}, {6, 10}};
  for (uint32_t i = 0; i < text.size(); ++i) {
    EXPECT_EQ(arena.byte_span(i).begin, expected[i].begin) << i;
    EXPECT_EQ(arena.byte_span(i).end, expected[i].end) << i;
  }
  // A copy keeps them.
  tokenizer_internal::PieceBuilder builder(arena, text.size());
  builder.copy(1, 6);
  const Piece copy = builder.finish(Piece{});
  EXPECT_EQ(piece_text(arena, copy), "é東");
  EXPECT_EQ(arena.byte_span(copy.begin + 2).begin, 3u);
  EXPECT_EQ(arena.byte_span(copy.begin + 4).end, 6u);
}

// The pieces a pre-tokenizer passes on: text and original range.
struct CutPiece {
  std::string text;
  uint32_t begin, end;
  bool byte_mapped;
  bool operator==(const CutPiece&) const = default;
};

std::vector<CutPiece> pre_tokenize(const tokenizer_internal::PreTokenizer& step, Arena& arena,
                                   const std::vector<Piece>& pieces, std::vector<Piece>* out) {
  std::vector<CutPiece> cut;
  for (const Piece& piece : pieces) {
    const absl::Status status = step.pre_tokenize(arena, piece, [&](const Piece& part) {
      if (out != nullptr) out->push_back(part);
      const Span span = part.empty() ? Span{0, 0} : original_span(arena, part.begin, part.end);
      cut.push_back({std::string(piece_text(arena, part)), span.begin, span.end, part.byte_mapped});
      return absl::OkStatus();
    });
    EXPECT_TRUE(status.ok()) << status;
  }
  return cut;
}

// A Sequence passes each part on to the next step at once; that must equal
// running the steps one after the other over all pieces, also when the later
// steps copy pieces (and so move the arena) while an earlier one is cutting.
TEST(TokenizerPipeline, DepthFirstSequenceEqualsStepsInTurn) {
  const Json pattern = {{"Regex", "\\p{L}+|\\p{N}+|\\s+|[^\\s\\p{L}\\p{N}]+"}};
  const std::vector<Json> steps = {
      {{"type", "Digits"}, {"individual_digits", false}},
      {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}},
      {{"type", "Split"}, {"pattern", pattern}, {"behavior", "MergedWithNext"}, {"invert", false}},
      {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "always"}, {"split", true}},
      {{"type", "Digits"}, {"individual_digits", true}},
  };
  const std::string text = mixed_text(300000, 3);
  Arena arena(text);
  auto sequence =
      tokenizer_internal::load_pre_tokenizer({{"type", "Sequence"}, {"pretokenizers", steps}}, "p");
  ASSERT_TRUE(sequence.ok()) << sequence.status();
  const std::vector<CutPiece> depth_first =
      pre_tokenize(**sequence, arena, {arena.input()}, nullptr);

  Arena in_turn_arena(text);
  std::vector<Piece> pieces = {in_turn_arena.input()};
  std::vector<CutPiece> in_turn;
  for (const Json& json : steps) {
    auto step = tokenizer_internal::load_pre_tokenizer(json, "p");
    ASSERT_TRUE(step.ok()) << step.status();
    std::vector<Piece> next;
    in_turn = pre_tokenize(**step, in_turn_arena, pieces, &next);
    pieces = std::move(next);
  }
  ASSERT_GT(depth_first.size(), 10000u);
  EXPECT_TRUE(depth_first == in_turn);
}

// Byte-pair encoding the plain way: merge the lowest-ranked adjacent pair
// (leftmost first) until none is left.
std::vector<std::string> reference_bpe(
    const std::vector<std::string>& characters,
    const std::map<std::pair<std::string, std::string>, int>& ranks) {
  std::vector<std::string> symbols = characters;
  for (;;) {
    int best = INT_MAX;
    size_t at = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      auto it = ranks.find({symbols[i], symbols[i + 1]});
      if (it != ranks.end() && it->second < best) {
        best = it->second;
        at = i;
      }
    }
    if (best == INT_MAX) return symbols;
    symbols[at] += symbols[at + 1];
    symbols.erase(symbols.begin() + at + 1);
  }
}

// A word far longer than the cache takes (a document with no pre-tokenizer)
// is merged part by part between characters no merge joins: the same tokens
// and offsets as merging it whole.
TEST(TokenizerPipeline, LongWordsMergeLikeTheWholeWord) {
  Json vocab = Json::object();
  const std::vector<std::string> characters = {"▁", "a", "b", "c", "d"};
  int id = 0;
  for (const std::string& c : characters) vocab[c] = id++;
  // "▁" joins only before letters; "d" joins nothing after it, "c" only "c".
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"a", "b"}, {"▁", "a"},  {"▁a", "b"},  {"ab", "c"}, {"c", "c"}, {"▁", "c"},
      {"b", "b"}, {"bb", "a"}, {"▁ab", "c"}, {"cc", "c"}, {"▁", "d"}, {"a", "d"}};
  Json merge_list = Json::array();
  std::map<std::pair<std::string, std::string>, int> ranks;
  for (const auto& [left, right] : merges) {
    if (!vocab.contains(left + right)) vocab[left + right] = id++;
    ranks.emplace(std::pair{left, right}, int(merge_list.size()));
    merge_list.push_back(left + " " + right);
  }
  Json j;
  j["version"] = "1.0";
  j["added_tokens"] = Json::array();
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = nullptr;
  j["post_processor"] = nullptr;
  j["decoder"] = nullptr;
  j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}};
  auto tokenizer = load_json(j, "long_words.json");
  ASSERT_NE(tokenizer, nullptr);

  std::mt19937 random(5);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<std::string> text_characters;
    std::string text;
    const size_t length = 300 + random() % 3000;
    while (text_characters.size() < length) {
      // Mostly letters; runs of one character now and then.
      const std::string& c = characters[random() % characters.size()];
      for (unsigned k = random() % 5 == 0 ? 1 + random() % 6 : 1; k > 0; --k) {
        text_characters.push_back(c);
        text += c;
      }
    }
    const std::vector<std::string> expected = reference_bpe(text_characters, ranks);
    auto encoding = tokenizer->encode(text, false);
    ASSERT_TRUE(encoding.ok()) << encoding.status();
    std::vector<std::string> tokens;
    uint32_t at = 0;
    for (size_t i = 0; i < encoding->ids.size(); ++i) {
      tokens.push_back(tokenizer->id_to_token(encoding->ids[i]).value_or("?"));
      EXPECT_EQ(encoding->offsets[i].first, at) << "trial " << trial << " token " << i;
      at += uint32_t(tokens.back().size());
      EXPECT_EQ(encoding->offsets[i].second, at) << "trial " << trial << " token " << i;
    }
    EXPECT_EQ(tokens, expected) << "trial " << trial;
  }
}

}  // namespace
}  // namespace dsinf::trainer::tokenizer_test
