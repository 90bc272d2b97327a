// A Hugging Face directory's config.json (model.init_from) and a PEFT
// adapter's adapter_config.json (model.adapter_from), read as the config
// reader reads them. The input's first byte picks which file it is.
#include "tests/fuzz/fuzz_util.h"
#include "trainer/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dsinf;
  if (size == 0) return 0;
  const bool adapter = data[0] & 1;
  const std::string dir = (fuzz::scratch() / (adapter ? "adapter" : "hf")).string();
  fuzz::write_input(adapter ? "adapter/adapter_config.json" : "hf/config.json", data + 1,
                    size - 1);
  const std::string corpus = fuzz::write_input("corpus.txt", data, 0);
  const std::string model =
      adapter ? R"("type": "llama", "hidden_size": 32, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64,
                 "vocab_size": 256, "max_position_embeddings": 64, "adapter_from": ")" +
                    dir + "\""
              : R"("init_from": ")" + dir + "\"";
  const std::string config = R"({"train_micro_batch_size_per_gpu": 1, "model": {)" + model +
                             R"(}, "data": {"path": ")" + corpus +
                             R"(", "seq_len": 16}, "train": {"steps": 1, "output_dir": ")" +
                             (fuzz::scratch() / "out").string() + R"("}})";
  const absl::StatusOr<trainer::LoadedConfig> loaded = trainer::parse_config(config, "fuzz.json");
  fuzz::check_contract(loaded.status());
  return 0;
}
