// The Oniguruma-to-PCRE2 rewrite: each construct with Oniguruma's meaning.
#include "trainer/data/tokenizer/regex.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace dsinf::trainer::tokenizer_test {
namespace {

TEST(TokenizerRegex, OnigurumaMeaningsOnPcre2) {
  using tokenizer_internal::MatchRange;
  using tokenizer_internal::Regex;
  auto matches = [](std::string_view pattern, std::string_view subject) {
    auto regex = Regex::compile(pattern);
    EXPECT_TRUE(regex.ok()) << regex.status();
    std::vector<MatchRange> out;
    EXPECT_TRUE((*regex)->find_matches(subject, out).ok());
    std::vector<std::string> matched;
    for (const MatchRange& m : out) {
      if (m.is_match) matched.emplace_back(subject.substr(m.begin, m.end - m.begin));
    }
    return matched;
  };
  // \s: U+0085 yes, U+180E and U+FEFF no.
  EXPECT_EQ(matches("\\s",
                    "a\xC2\x85"
                    "b"),
            (std::vector<std::string>{"\xC2\x85"}));
  EXPECT_TRUE(matches("\\s", "\xE1\xA0\x8E\xEF\xBB\xBF").empty());
  EXPECT_EQ(matches("[^\\s\\p{L}]+", "\xE1\xA0\x8E!"), (std::vector<std::string>{"\xE1\xA0\x8E!"}));
  // \h is a hex digit; \w takes marks and every number.
  EXPECT_EQ(matches("\\h+", "xyz0fAg"), (std::vector<std::string>{"0fA"}));
  EXPECT_EQ(matches("\\w+", "e\xCC\x81\xC2\xB2 x"),
            (std::vector<std::string>{"e\xCC\x81\xC2\xB2", "x"}));
  // (?i:) folds the long s like Oniguruma.
  EXPECT_EQ(matches("(?i:'s)", "'S '\xC5\xBF"), (std::vector<std::string>{"'S", "'\xC5\xBF"}));
  // Empty matches: none right after a match (Oniguruma's find_iter).
  EXPECT_EQ(matches("a*", "baab").size(), 3u);
  // A long whitespace run through the GPT-2 lookahead stays linear and in stack.
  const std::string spaces(1 << 20, ' ');
  EXPECT_EQ(matches("\\s+(?!\\S)|\\s+", spaces + "x").size(), 2u);
  // PCRE2-only or differently-meant constructs are refused.
  for (const char* bad : {"\\bx", "[a-z&&[^aeiou]]", "[[:alpha:]]", "\\R", "\\Qx\\E", "[\\S]"}) {
    EXPECT_FALSE(Regex::compile(bad).ok()) << bad;
  }
}

// Llama 3's split pattern: only \s and \S change; the rest (the (?i:)
// group, \p{..}, the lookahead) PCRE2 reads as Oniguruma does.
TEST(TokenizerRegex, Llama3PatternRewrite) {
  const std::string space =
      "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
      "\\x{202F}\\x{205F}\\x{3000}";
  const std::string pattern =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  const std::string expected =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^" + space +
      "\\p{L}\\p{N}]+[\\r\\n]*|[" + space + "]*[\\r\\n]+|[" + space + "]+(?![^" + space + "])|[" +
      space + "]+";
  auto translated = tokenizer_internal::oniguruma_to_pcre2(pattern);
  ASSERT_TRUE(translated.ok()) << translated.status();
  EXPECT_EQ(*translated, expected);
  EXPECT_TRUE(tokenizer_internal::Regex::compile(pattern).ok());
}

}  // namespace
}  // namespace dsinf::trainer::tokenizer_test
