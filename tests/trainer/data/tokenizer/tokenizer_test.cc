// Unit tests of the tokenizer on small hand-written tokenizer.json files:
// load errors, the models and components, added-token flags and offsets.
#include "trainer/data/tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/trainer/data/tokenizer/test_tokenizers.h"

namespace dsinf::trainer::tokenizer_test {
namespace {

// --- Errors -------------------------------------------------------------------------------

TEST(TokenizerLoad, MissingFileIsNotFound) {
  auto tokenizer = Tokenizer::load("/nonexistent/dir/tokenizer.json");
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(tokenizer.status().message().find("/nonexistent/dir/tokenizer.json"),
            absl::string_view::npos);
  // A directory without a tokenizer.json.
  const fs::path empty = fs::temp_directory_path() / "dsinf_tokenizer_empty_dir";
  fs::create_directories(empty);
  EXPECT_EQ(Tokenizer::load(empty.string()).status().code(), absl::StatusCode::kNotFound);
}

TEST(TokenizerLoad, DirectoryHoldingTokenizerJson) {
  const std::string file = write_temp("tokenizer.json", byte_level_tokenizer().dump());
  auto tokenizer = Tokenizer::load(fs::path(file).parent_path().string());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->source(), file);
}

TEST(TokenizerLoad, MalformedJsonNamesTheFile) {
  for (const std::string contents :
       {"", "{", "{\"model\": ", "[1, 2", "nul", "{\"a\": \"\xff\"}"}) {
    const absl::Status status = load_error(contents);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << contents;
    EXPECT_NE(status.message().find("bad.json"), absl::string_view::npos) << status;
  }
}

TEST(TokenizerLoad, UnsupportedComponentNamedWithItsPath) {
  Json j = byte_level_tokenizer();
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", {{{"type", "Digits"}}, {{"type", "Whitespace"}}}}};
  absl::Status status = load_error(j.dump());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find(
                "bad.json: pre_tokenizer.pretokenizers[1]: type \"Whitespace\" is not supported"),
            absl::string_view::npos)
      << status;

  j = byte_level_tokenizer();
  j["model"]["type"] = "Unigram";
  status = load_error(j.dump());
  EXPECT_NE(status.message().find("model: type \"Unigram\" is not supported"),
            absl::string_view::npos)
      << status;

  j = byte_level_tokenizer();
  j["normalizer"] = {{"type", "Precompiled"}};
  EXPECT_NE(load_error(j.dump()).message().find("normalizer: type \"Precompiled\""),
            absl::string_view::npos);

  j = byte_level_tokenizer();
  j["decoder"] = {{"type", "WordPiece"}};
  EXPECT_NE(load_error(j.dump()).message().find("decoder: type \"WordPiece\""),
            absl::string_view::npos);

  j = byte_level_tokenizer();
  j["post_processor"] = {{"type", "Sequence"}, {"processors", {{{"type", "Fancy"}}}}};
  EXPECT_NE(load_error(j.dump()).message().find("post_processor.processors[0]: type \"Fancy\""),
            absl::string_view::npos);

  j = byte_level_tokenizer();
  j["model"]["dropout"] = 0.1;
  EXPECT_NE(load_error(j.dump()).message().find("model.dropout"), absl::string_view::npos);

  j = byte_level_tokenizer();
  j["model"]["continuing_subword_prefix"] = "##";
  EXPECT_NE(load_error(j.dump()).message().find("model.continuing_subword_prefix"),
            absl::string_view::npos);

  j = byte_level_tokenizer();
  j["truncation"] = {{"max_length", 10}};
  EXPECT_NE(load_error(j.dump()).message().find("truncation"), absl::string_view::npos);

  j = byte_level_tokenizer();
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"Regex", "\\bword\\b"}}},
                        {"behavior", "Isolated"},
                        {"invert", false}};
  EXPECT_NE(load_error(j.dump()).message().find("pre_tokenizer.pattern.Regex"),
            absl::string_view::npos);
}

TEST(TokenizerLoad, MalformedFilesReturnStatus) {
  const Json base = byte_level_tokenizer();
  auto expect_refused = [&](Json j, const std::string& where) {
    const absl::Status status = load_error(j.dump());
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << where;
    EXPECT_NE(status.message().find(where), absl::string_view::npos) << status;
  };
  Json j = base;
  j["model"]["vocab"]["Ġ"] = "zero";
  expect_refused(j, "model.vocab.Ġ: expected a non-negative integer");
  j = base;
  j["model"]["vocab"]["x"] = -1;
  expect_refused(j, "model.vocab.x");
  j = base;
  j["model"]["vocab"]["x"] = 1e300;
  expect_refused(j, "model.vocab.x");
  j = base;
  j["model"]["vocab"]["x"] = 99999999999999ull;
  expect_refused(j, "model.vocab.x: 99999999999999 is larger");
  j = base;
  j["model"]["merges"].push_back("nosuch token");
  expect_refused(j, "model.merges[9]: token \"nosuch\" is not in model.vocab");
  j = base;
  j["model"]["merges"].push_back("a b c");
  expect_refused(j, "model.merges[9]");
  j = base;
  j["model"]["merges"].push_back(Json::array({"a"}));
  expect_refused(j, "model.merges[9]");
  j = base;
  j["model"]["merges"] = "not a list";
  expect_refused(j, "model.merges: expected an array");
  j = base;
  j["model"].erase("vocab");
  expect_refused(j, "model.vocab: missing");
  j = base;
  j.erase("model");
  expect_refused(j, "model: missing");
  j = base;
  j["added_tokens"] = Json::array({{{"id", 5}, {"content", 7}}});
  expect_refused(j, "added_tokens[0].content: expected a string");
  j = base;
  j["added_tokens"] = Json::array({{{"id", -5}, {"content", "<x>"}}});
  expect_refused(j, "added_tokens[0].id");
  j = base;
  j["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  expect_refused(j, "pre_tokenizer.pattern.Regex: regex does not compile");
  j = base;
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Sideways"}};
  expect_refused(j, "pre_tokenizer.behavior");
  j = base;
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single",
                          {{{"SpecialToken", {{"id", "<nope>"}, {"type_id", 0}}}},
                           {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                         {"special_tokens", Json::object()}};
  expect_refused(j, "post_processor.special_tokens.<nope>: missing");
  j = base;
  j["post_processor"] = {
      {"type", "BertProcessing"}, {"cls", {"[CLS]", 5000}}, {"sep", {"[SEP]", 1}}};
  expect_refused(j, "post_processor: adds id 5000, which is no token of the vocabulary");
  j = base;
  j["decoder"] = {{"type", "Strip"}, {"content", "ab"}, {"start", 1}, {"stop", 0}};
  expect_refused(j, "decoder.content: expected a single character");
  expect_refused(Json::array(), "(root): expected an object");
  j = base;
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "Replace"}}}}};
  expect_refused(j, "normalizer.normalizers[0].pattern: missing");
}

TEST(TokenizerEncode, InvalidUtf8NamesTheOffset) {
  auto tokenizer = load_json(byte_level_tokenizer());
  ASSERT_NE(tokenizer, nullptr);
  for (const auto& [text, offset] :
       std::vector<std::pair<std::string, size_t>>{{"ab\xff", 2},
                                                   {"\xc3", 0},
                                                   {"ok \xc3\xa9 then \xe2\x82", 11},
                                                   {"\xed\xa0\x80 surrogate", 0},
                                                   {"x\xc0\xaf overlong", 1},
                                                   {"\xf4\x90\x80\x80 too big", 0}}) {
    auto encoding = tokenizer->encode(text);
    ASSERT_FALSE(encoding.ok()) << text;
    EXPECT_EQ(encoding.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(encoding.status().message().find("byte offset " + std::to_string(offset)),
              absl::string_view::npos)
        << encoding.status();
  }
}

// --- Models and components -----------------------------------------------------------------

TEST(TokenizerEncode, ByteLevelMergesAndDecode) {
  auto tokenizer = load_json(byte_level_tokenizer());
  ASSERT_NE(tokenizer, nullptr);
  const auto hello = tokenizer->token_to_id("hello");
  const auto world = tokenizer->token_to_id("Ġworld");
  ASSERT_TRUE(hello && world);
  EXPECT_EQ(ids_of(*tokenizer, "hello world"), (std::vector<int32_t>{*hello, *world}));
  EXPECT_EQ(tokenizer->decode(ids_of(*tokenizer, "héllo wörld\n\t!")), "héllo wörld\n\t!");
  EXPECT_EQ(tokenizer->id_to_token(*hello), "hello");
  EXPECT_EQ(tokenizer->vocab_size(), 256u + 9u);
}

TEST(TokenizerEncode, ByteFallbackAndUnk) {
  auto tokenizer = load_json(sentencepiece_tokenizer());
  ASSERT_NE(tokenizer, nullptr);
  const int32_t bos = 1, space = *tokenizer->token_to_id("▁");
  const int32_t ab = *tokenizer->token_to_id("▁ab"), c = *tokenizer->token_to_id("c");
  EXPECT_EQ(ids_of(*tokenizer, "abc"), (std::vector<int32_t>{bos, ab, c}));
  // 'z' is not in the vocabulary: its byte, <0x7A>; '€' is three bytes.
  EXPECT_EQ(ids_of(*tokenizer, "z€", false),
            (std::vector<int32_t>{space, 3 + 0x7A, 3 + 0xE2, 3 + 0x82, 3 + 0xAC}));
  EXPECT_EQ(tokenizer->decode(ids_of(*tokenizer, "z€ abc é"), true), "z€ abc é");
  // Byte tokens that do not form UTF-8 decode to one U+FFFD each.
  EXPECT_EQ(tokenizer->decode({3 + 0xE2, 3 + 0x82}), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(tokenizer->decode({3 + 0xE2, 3 + 0x82, 3 + 0xAC}), "€");

  // Without byte fallback: one fused <unk> for the run of unknown characters.
  Json j = sentencepiece_tokenizer();
  j["model"]["byte_fallback"] = false;
  auto no_fallback = load_json(j, "no_fallback.json");
  ASSERT_NE(no_fallback, nullptr);
  EXPECT_EQ(ids_of(*no_fallback, "azzzb", false),
            (std::vector<int32_t>{*tokenizer->token_to_id("▁a"), 0, *tokenizer->token_to_id("b")}));
  j["model"]["fuse_unk"] = false;
  auto no_fuse = load_json(j, "no_fuse.json");
  ASSERT_NE(no_fuse, nullptr);
  EXPECT_EQ(ids_of(*no_fuse, "azzb", false).size(), 4u);
}

TEST(TokenizerEncode, SpecialTokensAndDecodeSkip) {
  auto tokenizer = load_json(sentencepiece_tokenizer());
  ASSERT_NE(tokenizer, nullptr);
  const std::vector<int32_t> ids = ids_of(*tokenizer, "ab</s>");
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
  EXPECT_TRUE(tokenizer->is_special(1));
  EXPECT_FALSE(tokenizer->is_special(*tokenizer->token_to_id("▁a")));
  EXPECT_EQ(tokenizer->decode(ids), "<s> ab</s>");
  EXPECT_EQ(tokenizer->decode(ids, true), "ab");
  // Out-of-range ids are skipped.
  EXPECT_EQ(tokenizer->decode({-5, 1 << 30, *tokenizer->token_to_id("▁ab")}), "ab");
  EXPECT_EQ(ids_of(*tokenizer, "", true), (std::vector<int32_t>{1}));
  EXPECT_TRUE(ids_of(*tokenizer, "", false).empty());
}

// lstrip/rstrip take the whitespace beside a token into it; single_word
// keeps a token from matching inside a word.
TEST(TokenizerEncode, AddedTokenFlags) {
  Json j = byte_level_tokenizer();
  // Ids follow the model's 265 tokens, as Hugging Face numbers them.
  j["added_tokens"] = Json::array({
      {{"id", 265}, {"content", "<L>"}, {"lstrip", true}, {"special", true}},
      {{"id", 266}, {"content", "<R>"}, {"rstrip", true}, {"special", true}},
      {{"id", 267}, {"content", "cat"}, {"single_word", true}, {"normalized", false}},
      {{"id", 268}, {"content", "<N>"}, {"normalized", true}},
  });
  auto tokenizer = load_json(j, "flags.json");
  ASSERT_NE(tokenizer, nullptr);
  auto encoding = tokenizer->encode("a  <L>  b");
  ASSERT_TRUE(encoding.ok());
  // "a" "<L>"(with the two spaces before) "Ġ" "Ġb": lstrip takes only the left.
  ASSERT_GE(encoding->ids.size(), 2u);
  EXPECT_EQ(encoding->ids[1], 265);
  EXPECT_EQ(encoding->offsets[1], (std::pair<uint32_t, uint32_t>{1, 6}));
  encoding = tokenizer->encode("a  <R>  b");
  ASSERT_TRUE(encoding.ok());
  const auto r = std::find(encoding->ids.begin(), encoding->ids.end(), 266);
  ASSERT_NE(r, encoding->ids.end());
  EXPECT_EQ(encoding->offsets[r - encoding->ids.begin()], (std::pair<uint32_t, uint32_t>{3, 8}));
  EXPECT_EQ(encoding->ids.back(), 'b');  // "b" alone: the spaces went to <R>
  // single_word: "cat" alone or beside punctuation, not inside "concatenate".
  auto count = [&](std::string_view text) {
    const auto ids = ids_of(*tokenizer, text);
    return std::count(ids.begin(), ids.end(), 267);
  };
  EXPECT_EQ(count("cat"), 1);
  EXPECT_EQ(count("a cat, a dog"), 1);
  EXPECT_EQ(count("concatenate"), 0);
  EXPECT_EQ(count("cats"), 0);
  EXPECT_EQ(count("(cat)"), 1);
  // A normalized token matches in the normalized text.
  EXPECT_EQ(ids_of(*tokenizer, "x<N>y"), (std::vector<int32_t>{'x', 268, 'y'}));
  EXPECT_FALSE(tokenizer->is_special(268));
  EXPECT_TRUE(tokenizer->is_special(265));
  EXPECT_EQ(tokenizer->vocab_size(), 269u);

  // An id the file states against Hugging Face's numbering: Hugging Face's
  // wins (it only warns).
  j["added_tokens"] = Json::array({{{"id", 300}, {"content", "<X>"}, {"special", true}}});
  auto renumbered = load_json(j, "renumbered.json");
  ASSERT_NE(renumbered, nullptr);
  EXPECT_EQ(renumbered->token_to_id("<X>"), 265);
}

TEST(TokenizerEncode, NormalizersAndPreTokenizers) {
  Json j = byte_level_tokenizer();
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers",
                      {{{"type", "NFKC"}},
                       {{"type", "Lowercase"}},
                       {{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}}}}};
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "Digits"}, {"individual_digits", true}},
                          {{"type", "ByteLevel"}, {"add_prefix_space", false}}}}};
  auto tokenizer = load_json(j, "norm.json");
  ASSERT_NE(tokenizer, nullptr);
  // NFKC folds the ligature and the fullwidth digit; Lowercase; Strip.
  EXPECT_EQ(tokenizer->decode(ids_of(*tokenizer,
                                     "  \xEF\xAC\x81NE \xEF\xBC\x95"
                                     "12  ")),
            "fine 512");
  // individual_digits: every digit its own token.
  EXPECT_EQ(ids_of(*tokenizer, "123"), (std::vector<int32_t>{'1', '2', '3'}));

  // Metaspace: spaces become ▁, split before each.
  Json m = sentencepiece_tokenizer();
  m["normalizer"] = nullptr;
  m["pre_tokenizer"] = {
      {"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "always"}, {"split", true}};
  auto metaspace = load_json(m, "metaspace.json");
  ASSERT_NE(metaspace, nullptr);
  EXPECT_EQ(ids_of(*metaspace, "ab ab", false),
            (std::vector<int32_t>{*metaspace->token_to_id("▁ab"), *metaspace->token_to_id("▁ab")}));
}

TEST(TokenizerEncode, SplitBehaviors) {
  struct Case {
    const char* behavior;
    bool invert;
    std::vector<std::string> pieces;
  };
  const std::vector<Case> cases = {
      {"Removed", false, {"the", "final", "countdown"}},
      {"Isolated", false, {"the", "-", "final", "-", "-", "countdown"}},
      {"MergedWithPrevious", false, {"the-", "final-", "-", "countdown"}},
      {"MergedWithNext", false, {"the", "-final", "-", "-countdown"}},
      {"Contiguous", false, {"the", "-", "final", "--", "countdown"}},
      {"Removed", true, {"-", "-", "-"}},
  };
  for (const Case& c : cases) {
    // ignore_merges and every expected piece in the vocabulary: each piece
    // comes out as one token, any other split as several.
    Json j = byte_level_tokenizer();
    j["model"]["ignore_merges"] = true;
    int id = 1000;
    for (const std::string& piece : c.pieces) {
      if (!j["model"]["vocab"].contains(piece)) j["model"]["vocab"][piece] = id++;
    }
    j["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"String", "-"}}},
           {"behavior", c.behavior},
           {"invert", c.invert}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
    auto tokenizer = load_json(j, std::string("split_") + c.behavior + ".json");
    ASSERT_NE(tokenizer, nullptr);
    std::vector<std::string> tokens;
    for (int32_t t : ids_of(*tokenizer, "the-final--countdown")) {
      tokens.push_back(tokenizer->id_to_token(t).value_or("?"));
    }
    EXPECT_EQ(tokens, c.pieces) << c.behavior << (c.invert ? " inverted" : "");
  }
}

// --- Offsets ------------------------------------------------------------------------------

// Every non-special token's offsets lie in the text, in order; their union
// covers every byte of the text that is not whitespace-stripped away.
void check_offsets(const Tokenizer& tokenizer, const std::string& text) {
  auto encoding = tokenizer.encode(text);
  ASSERT_TRUE(encoding.ok()) << encoding.status();
  ASSERT_EQ(encoding->ids.size(), encoding->offsets.size());
  std::vector<bool> covered(text.size(), false);
  uint32_t previous_begin = 0;
  for (size_t i = 0; i < encoding->ids.size(); ++i) {
    const auto [begin, end] = encoding->offsets[i];
    ASSERT_LE(begin, end) << i;
    ASSERT_LE(end, text.size()) << i;
    if (begin == end) {  // added by the post-processor
      EXPECT_TRUE(tokenizer.is_special(encoding->ids[i])) << i;
      continue;
    }
    EXPECT_GE(begin, previous_begin) << "token " << i << " of \"" << text << "\"";
    previous_begin = begin;
    for (uint32_t k = begin; k < end; ++k) covered[k] = true;
  }
  for (size_t k = 0; k < text.size(); ++k) {
    EXPECT_TRUE(covered[k]) << "byte " << k << " of \"" << text << "\" is in no token";
  }
}

TEST(TokenizerOffsets, PiecesCoverTheText) {
  auto tokenizer = load_json(byte_level_tokenizer());
  ASSERT_NE(tokenizer, nullptr);
  const std::string text = "hello world, héllo  wörld!\n";
  auto encoding = tokenizer->encode(text);
  ASSERT_TRUE(encoding.ok());
  std::string joined;
  for (const auto& [begin, end] : encoding->offsets) joined += text.substr(begin, end - begin);
  // Byte-level tokens may split a character: both halves name the whole one.
  EXPECT_EQ(joined, "hello world, hééllo  wöörld!\n");
  check_offsets(*tokenizer, text);

  for (const std::string family : {"llama2", "llama3", "qwen3", "gemma3", "deepseek_v3"}) {
    if (!has_fixture(family)) continue;
    auto real = Tokenizer::load((kFixtures / family).string());
    ASSERT_TRUE(real.ok()) << real.status();
    for (const std::string sample :
         {"Hello world", "  two  spaces\tand\ttabs\r\n", "cafe\xCC\x81 caf\xC3\xA9 \xEF\xAC\x81",
          "<|begin_of_text|>x<s>y<|im_start|>z",
          "\xE4\xBD\xA0\xE5\xA5\xBD 123456 \xF0\x9F\x98\x80"}) {
      SCOPED_TRACE(family);
      check_offsets(**real, sample);
    }
  }
}

// Llama 2 prepends ▁: it belongs to the first character.
TEST(TokenizerOffsets, PrependedMetaspaceMapsToTheFirstCharacter) {
  auto tokenizer = load_json(sentencepiece_tokenizer());
  ASSERT_NE(tokenizer, nullptr);
  auto encoding = tokenizer->encode("ab c");
  ASSERT_TRUE(encoding.ok());
  // <s> "▁ab" "▁" "c": the first ▁ is the "a" of "ab", the second the space.
  ASSERT_EQ(encoding->ids.size(), 4u);
  EXPECT_EQ(encoding->offsets[0], (std::pair<uint32_t, uint32_t>{0, 0}));
  EXPECT_EQ(encoding->offsets[1], (std::pair<uint32_t, uint32_t>{0, 2}));
  EXPECT_EQ(encoding->offsets[2], (std::pair<uint32_t, uint32_t>{2, 3}));
  EXPECT_EQ(encoding->offsets[3], (std::pair<uint32_t, uint32_t>{3, 4}));
}

}  // namespace
}  // namespace dsinf::trainer::tokenizer_test
