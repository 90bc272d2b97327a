// A sharded Hugging Face directory's model.safetensors.index.json beside one
// real shard: the index checked against the shards, then a tensor read.
#include "tests/fuzz/fuzz_util.h"
#include "trainer/models/hf_weights.h"
#include "trainer/models/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dsinf;
  static const bool shard = [] {
    std::filesystem::create_directories(fuzz::scratch() / "hf");
    const std::vector<float> w(8, 0.5f);
    const absl::Status s = trainer::write_safetensors(
        (fuzz::scratch() / "hf/model-00001-of-00001.safetensors").string(),
        {{"model.embed_tokens.weight", {2, 4}, w.data()}}, {});
    return s.ok();
  }();
  if (!shard) std::abort();
  fuzz::write_input("hf/model.safetensors.index.json", data, size);
  absl::StatusOr<std::unique_ptr<trainer::HfWeights>> weights =
      trainer::HfWeights::open((fuzz::scratch() / "hf").string());
  fuzz::check_contract(weights.status());
  if (!weights.ok()) return 0;
  for (const std::string& name : (*weights)->names()) {
    fuzz::check_contract((*weights)->read_f32(name, {}).status());
  }
  return 0;
}
