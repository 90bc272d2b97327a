// dsinf's Llama-family model against an independent float64 PyTorch model
// (tests/trainer/models/torch_llama.py): the loss and every parameter
// gradient of one batch, for each family and its variants, each loaded from
// a sharded bf16 Hugging Face directory through the config reader.
#include <cmath>
#include <filesystem>

#include "kernels/backend.h"
#include "tests/test_util.h"
#include "tests/trainer/models/device_chunks.h"
#include "trainer/config/config.h"
#include "trainer/models/hf_weights.h"
#include "trainer/models/llama/llama.h"
#include "trainer/models/safetensors.h"

namespace dsinf::trainer {
namespace {

using testing::TempDir;

struct Case {
  const char* name;
  const char* args;  // torch_llama.py golden options
  int seq, batch;
};

std::string llama_script() {
  return std::string("/usr/bin/python3 ") + DSINF_SOURCE_DIR +
         "/tests/trainer/models/torch_llama.py";
}

// The model config the dsinf config reader makes of a run whose
// model.init_from is `model_dir`.
ModelConfig read_model_config(const TempDir& dir, const std::string& model_dir, int seq,
                              int batch) {
  testing::write_text(dir / "data.bin", std::string(4096, 'a'));
  const std::string text =
      absl::StrCat(R"({"train_batch_size": )", batch, R"(, "train_micro_batch_size_per_gpu": )",
                   batch, R"(, "model": {"init_from": ")", model_dir, R"("}, "data": {"path": ")",
                   dir / "data.bin", R"(", "seq_len": )", seq,
                   R"(}, "train": {"steps": 1, "output_dir": ")", dir / "out", R"("}})");
  absl::StatusOr<LoadedConfig> loaded = parse_config(text, "test.json");
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return loaded.ok() ? loaded->config.model : ModelConfig{};
}

class LlamaGoldenTest : public ::testing::TestWithParam<Case> {};

TEST_P(LlamaGoldenTest, LossAndEveryGradientMatchPyTorch) {
  if (!testing::have_torch()) GTEST_SKIP() << "python3-torch is not installed";
  const Case c = GetParam();
  TempDir dir;
  const testing::CommandResult gen =
      testing::run_command(absl::StrCat(llama_script(), " golden --out ", dir.path(), " ", c.args,
                                        " --seq ", c.seq, " --batch ", c.batch),
                           dir.path());
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  const ModelConfig config = read_model_config(dir, dir / "model", c.seq, c.batch);
  ASSERT_EQ(config.seq_len, c.seq);

  auto backend = kernels::make_cpu_backend({});
  const LlamaModel def(config);
  testing::DeviceChunks chunks(backend.get(), def.layouts());
  auto program = LlamaProgram::create(backend.get(), config, c.batch);
  ASSERT_TRUE(program.ok()) << program.status();
  (*program)->set_chunk_source(&chunks);
  auto weights = HfWeights::open(dir / "model");
  ASSERT_TRUE(weights.ok()) << weights.status();
  ASSERT_TRUE(def.load_hf(**weights, chunks).ok());

  auto expected = SafetensorsFile::open(dir / "expected.safetensors");
  ASSERT_TRUE(expected.ok()) << expected.status();
  auto inputs64 = expected->read_int("inputs");
  auto targets64 = expected->read_int("targets");
  ASSERT_TRUE(inputs64.ok() && targets64.ok());
  std::vector<int32_t> inputs(inputs64->begin(), inputs64->end());
  std::vector<int32_t> targets(targets64->begin(), targets64->end());

  ASSERT_TRUE(chunks.zero_grads().ok());
  auto loss = (*program)->forward(inputs.data(), targets.data(), c.batch);
  ASSERT_TRUE(loss.ok()) << loss.status();
  auto expected_loss = expected->read_f32("loss", {1});
  ASSERT_TRUE(expected_loss.ok());
  EXPECT_NEAR(*loss, (*expected_loss)[0], 1e-5 * std::abs((*expected_loss)[0]));
  ASSERT_TRUE((*program)->backward(1.0f / static_cast<float>(inputs.size())).ok());

  auto grads = def.export_hf(chunks, /*gradients=*/true);
  ASSERT_TRUE(grads.ok());
  size_t compared = 0;
  for (const HostTensor& g : *grads) {
    auto ref = expected->read_f32("grad." + g.name, g.shape);
    ASSERT_TRUE(ref.ok()) << ref.status();
    double max_ref = 0, max_err = 0;
    for (size_t i = 0; i < g.data.size(); ++i) {
      max_ref = std::max(max_ref, std::abs(static_cast<double>((*ref)[i])));
      max_err = std::max(max_err, std::abs(static_cast<double>(g.data[i]) - (*ref)[i]));
    }
    ASSERT_GT(max_ref, 0.0) << g.name << ": reference gradient is all zero";
    // fp32 against float64: errors of a few ulp of the largest entry.
    EXPECT_LT(max_err / max_ref, 2e-4) << g.name << " max abs err " << max_err;
    ++compared;
  }
  // Every gradient the reference has was compared (no tensor left out).
  size_t reference_grads = 0;
  for (const std::string& name : expected->names()) reference_grads += name.starts_with("grad.");
  EXPECT_EQ(compared, reference_grads);
}

INSTANTIATE_TEST_SUITE_P(
    Families, LlamaGoldenTest,
    ::testing::Values(
        Case{"llama_gqa_untied", "--family llama --heads 4 --kv-heads 2", 16, 2},
        Case{"llama_llama3_rope_tied",
             "--family llama --heads 4 --kv-heads 1 --rope-scaling llama3 --tie", 24, 1},
        Case{"llama_linear_rope_biases",
             "--family llama --heads 2 --kv-heads 2 --bias "
             "--rope-scaling linear --layers 1",
             8, 3},
        Case{"mistral_head_dim", "--family mistral --heads 4 --kv-heads 2 --head-dim 16", 16, 2},
        Case{"qwen2_biases", "--family qwen2 --heads 4 --kv-heads 4", 12, 2},
        Case{"qwen3_qk_norm", "--family qwen3 --heads 4 --kv-heads 2 --head-dim 12", 16, 2}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace dsinf::trainer
