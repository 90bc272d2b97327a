// A tokenizer.json: loaded, then a fixed text encoded and decoded.
#include "tests/fuzz/fuzz_util.h"
#include "trainer/data/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dsinf;
  const std::string path = fuzz::write_input("tokenizer.json", data, size);
  absl::StatusOr<std::unique_ptr<trainer::Tokenizer>> tokenizer = trainer::Tokenizer::load(path);
  fuzz::check_contract(tokenizer.status());
  if (!tokenizer.ok()) return 0;
  const absl::StatusOr<trainer::Encoding> encoded = (*tokenizer)->encode(
      "Hello, world! 123 \xc3\xbc" "n\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9 \xf0\x9f\x98\x80 <s></s>  \n\t x");
  fuzz::check_contract(encoded.status());
  if (encoded.ok()) (void)(*tokenizer)->decode(encoded->ids);
  return 0;
}
