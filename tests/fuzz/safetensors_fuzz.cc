// A safetensors file: its header checked at open, then its small tensors read.
#include "tests/fuzz/fuzz_util.h"
#include "trainer/models/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dsinf;
  const std::string path = fuzz::write_input("model.safetensors", data, size);
  absl::StatusOr<trainer::SafetensorsFile> file = trainer::SafetensorsFile::open(path);
  fuzz::check_contract(file.status());
  if (!file.ok()) return 0;
  int read = 0;
  for (const auto& [name, entry] : file->entries()) {
    if (++read > 16) break;
    if (entry.end - entry.begin > (1u << 20)) continue;  // the header's sizes were checked
    fuzz::check_contract(file->read_f32(name, {}).status());
  }
  return 0;
}
