// The config reader over whole JSON documents: a LoadedConfig or a status
// naming the key or the line.
#include "tests/fuzz/fuzz_util.h"
#include "trainer/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dsinf;
  const absl::StatusOr<trainer::LoadedConfig> loaded =
      trainer::parse_config(std::string(fuzz::as_text(data, size)), "fuzz.json");
  fuzz::check_contract(loaded.status());
  return 0;
}
