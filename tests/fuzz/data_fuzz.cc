// Training data files: token shards and text (load_tokens), JSONL documents
// and JSON lines (read_documents, read_json_lines).
#include "tests/fuzz/fuzz_util.h"
#include "trainer/data/data.h"
#include "trainer/data/documents.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dsinf;
  const std::string shard = fuzz::write_input("data.bin", data, size);
  fuzz::check_contract(trainer::load_tokens(shard, 256, "data.path").status());
  const std::string jsonl = fuzz::write_input("data.jsonl", data, size);
  fuzz::check_contract(trainer::read_documents(jsonl, "data.path").status());
  fuzz::check_contract(trainer::read_json_lines(jsonl, "data.path").status());
  return 0;
}
