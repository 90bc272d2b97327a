#include "trainer/data/tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>

namespace dsinf::trainer {
namespace {

TEST(Tokenizer, Smoke) {
  const char* family = std::getenv("TOK_FAMILY");
  const char* text = std::getenv("TOK_TEXT");
  if (!family || !text) GTEST_SKIP();
  auto tok = Tokenizer::load(std::string(DSINF_SOURCE_DIR) + "/.fixtures/tokenizers/" + family);
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto enc = (*tok)->encode(text);
  ASSERT_TRUE(enc.ok()) << enc.status();
  for (size_t i = 0; i < enc->ids.size(); ++i)
    std::cout << enc->ids[i] << " [" << enc->offsets[i].first << "," << enc->offsets[i].second
              << ") ";
  std::cout << "\n" << (*tok)->decode(enc->ids) << "\n";
}

}  // namespace
}  // namespace dsinf::trainer
