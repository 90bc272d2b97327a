// dsinf's GPT-2 against an independent PyTorch implementation (float64, HF
// names and layouts): the loss and every parameter gradient of one batch.
#include <cmath>

#include "kernels/backend.h"
#include "tests/test_util.h"
#include "tests/trainer/models/device_chunks.h"
#include "trainer/models/gpt2/gpt2.h"
#include "trainer/models/safetensors.h"

namespace dsinf::trainer {
namespace {

using testing::TempDir;

struct GoldenShape {
  int n_layer, n_head, n_embd, n_positions, vocab, batch;
};

class Gpt2GoldenTest : public ::testing::TestWithParam<GoldenShape> {};

TEST_P(Gpt2GoldenTest, LossAndEveryGradientMatchPyTorch) {
  if (!testing::have_torch()) GTEST_SKIP() << "python3-torch is not installed";
  const GoldenShape shape = GetParam();
  TempDir dir;
  const testing::CommandResult gen = testing::run_command(
      testing::torch_script() + " golden --out " + dir.path() + " --n_layer " +
          std::to_string(shape.n_layer) + " --n_head " + std::to_string(shape.n_head) +
          " --n_embd " + std::to_string(shape.n_embd) + " --n_positions " +
          std::to_string(shape.n_positions) + " --vocab " + std::to_string(shape.vocab) +
          " --batch " + std::to_string(shape.batch),
      dir.path());
  ASSERT_EQ(gen.exit_code, 0) << gen.err;

  ModelConfig config;
  config.n_layer = shape.n_layer;
  config.n_head = shape.n_head;
  config.n_embd = shape.n_embd;
  config.n_positions = shape.n_positions;
  config.vocab_size = shape.vocab;
  auto backend = kernels::make_cpu_backend({});
  const Gpt2Model def(config);
  testing::DeviceChunks chunks(backend.get(), def.layouts());
  auto model = Gpt2Program::create(backend.get(), config, shape.batch);
  ASSERT_TRUE(model.ok()) << model.status();
  (*model)->set_chunk_source(&chunks);
  auto weights = SafetensorsFile::open(dir / "weights.safetensors");
  ASSERT_TRUE(weights.ok()) << weights.status();
  ASSERT_TRUE(def.load_hf(*weights, chunks).ok());

  auto expected = SafetensorsFile::open(dir / "expected.safetensors");
  ASSERT_TRUE(expected.ok()) << expected.status();
  auto inputs64 = expected->read_int("inputs");
  auto targets64 = expected->read_int("targets");
  ASSERT_TRUE(inputs64.ok() && targets64.ok());
  std::vector<int32_t> inputs(inputs64->begin(), inputs64->end());
  std::vector<int32_t> targets(targets64->begin(), targets64->end());

  ASSERT_TRUE(chunks.zero_grads().ok());
  auto loss = (*model)->forward(inputs.data(), targets.data(), shape.batch);
  ASSERT_TRUE(loss.ok()) << loss.status();
  auto expected_loss = expected->read_f32("loss", {1});
  ASSERT_TRUE(expected_loss.ok());
  EXPECT_NEAR(*loss, (*expected_loss)[0], 1e-5 * std::abs((*expected_loss)[0]));
  ASSERT_TRUE((*model)->backward(1.0f / static_cast<float>(inputs.size())).ok());

  auto grads = def.export_hf(chunks, /*gradients=*/true);
  ASSERT_TRUE(grads.ok());
  ASSERT_EQ(grads->size(), 4u + 12u * shape.n_layer);
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
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, Gpt2GoldenTest,
                         ::testing::Values(GoldenShape{2, 2, 16, 8, 300, 3},
                                           GoldenShape{1, 4, 32, 16, 256, 2},
                                           GoldenShape{3, 1, 8, 5, 257, 1}),
                         [](const ::testing::TestParamInfo<GoldenShape>& info) {
                           const GoldenShape& s = info.param;
                           return "L" + std::to_string(s.n_layer) + "H" + std::to_string(s.n_head) +
                                  "C" + std::to_string(s.n_embd) + "T" +
                                  std::to_string(s.n_positions) + "V" + std::to_string(s.vocab) +
                                  "B" + std::to_string(s.batch);
                         });

}  // namespace
}  // namespace dsinf::trainer
