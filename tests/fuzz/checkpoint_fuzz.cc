// A dsinf checkpoint file, or a partitioned checkpoint's manifest (an input
// starting with '{'), loaded against a small GPT-2's layout into memory.
#include <map>
#include <memory>
#include <vector>

#include "tests/fuzz/fuzz_util.h"
#include "trainer/config/config.h"
#include "trainer/models/model.h"
#include "trainer/train/checkpoint.h"

namespace {

using namespace dsinf;

// Chunks in memory, as the runtime would hold them.
class MemoryState final : public actors::CheckpointState {
 public:
  explicit MemoryState(const std::vector<memory::ChunkLayout>& layouts) : layouts_(layouts) {}
  absl::Status read_class(int cls, size_t c, std::byte* host) override {
    std::vector<std::byte>& b = buffer(cls, c);
    std::copy(b.begin(), b.end(), host);
    return absl::OkStatus();
  }
  absl::Status write_class(int cls, size_t c, const std::byte* host) override {
    if (c >= layouts_.size() || cls < 0 || cls > 2) std::abort();  // the loader checked these
    std::vector<std::byte>& b = buffer(cls, c);
    std::copy(host, host + b.size(), b.begin());
    return absl::OkStatus();
  }
  bool has_optimizer() const override { return true; }
  int64_t optimizer_steps() const override { return steps_; }
  void set_optimizer_steps(int64_t steps) override { steps_ = steps; }
  bool saves_in_background() const override { return false; }
  void begin_snapshot() override {}
  absl::Status read_snapshot(int cls, size_t c, std::byte* host) override {
    return read_class(cls, c, host);
  }
  void snapshot_chunk_read(size_t) override {}
  void end_snapshot() override {}

 private:
  std::vector<std::byte>& buffer(int cls, size_t c) {
    std::vector<std::byte>& b = buffers_[{cls, c}];
    b.resize(layouts_[c].bytes());
    return b;
  }
  const std::vector<memory::ChunkLayout>& layouts_;
  std::map<std::pair<int, size_t>, std::vector<std::byte>> buffers_;
  int64_t steps_ = 0;
};

struct Model {
  trainer::Config config;
  std::vector<memory::ChunkLayout> layouts;
};

const Model& model() {
  static const Model m = [] {
    const std::string corpus = fuzz::write_input("corpus.txt", nullptr, 0);
    absl::StatusOr<trainer::LoadedConfig> loaded = trainer::parse_config(
        R"({"train_micro_batch_size_per_gpu": 1, "model": {"n_layer": 1, "n_head": 2,
            "n_embd": 16, "n_positions": 16, "vocab_size": 256}, "data": {"path": ")" +
            corpus + R"("}, "train": {"steps": 1, "output_dir": "out"}})",
        "fuzz.json");
    if (!loaded.ok()) std::abort();
    absl::StatusOr<std::unique_ptr<trainer::Model>> made = trainer::make_model(loaded->config.model);
    if (!made.ok()) std::abort();
    return Model{loaded->config, (*made)->layouts()};
  }();
  return m;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Model& m = model();
  const std::string path = fuzz::write_input("ckpt/ckpt-00000001.dsinf", data, size);
  MemoryState state(m.layouts);
  fuzz::check_contract(
      trainer::load_checkpoint(path, m.config.model, m.layouts, state).status());
  return 0;
}
