// LoRA on the Llama family against the tests' own float64 PyTorch LoRA
// (tests/trainer/models/torch_lora.py): the loss and the gradient of every
// adapter tensor, with the base loaded from a sharded bf16 Hugging Face
// directory and the adapters from a PEFT adapter directory, through the
// config reader. Also: fresh adapters leave the base's loss unchanged bit for
// bit, the frozen base gets no gradient, and dropout masks repeat with their key.
#include <cmath>
#include <cstring>
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
  const char* args;       // torch_lora.py golden options
  const char* lora_json;  // a lora section ("" : the adapter's adapter_config.json alone)
  int seq, batch;
};

std::string lora_script() {
  return std::string("/usr/bin/python3 ") + DSINF_SOURCE_DIR +
         "/tests/trainer/models/torch_lora.py";
}

absl::StatusOr<LoadedConfig> read_config(const TempDir& dir, const std::string& model_json,
                                         const std::string& lora_json, int seq, int batch) {
  testing::write_text(dir / "data.bin", std::string(4096, 'a'));
  return parse_config(
      absl::StrCat(R"({"train_batch_size": )", batch, R"(, "train_micro_batch_size_per_gpu": )",
                   batch, R"(, "model": )", model_json,
                   lora_json[0] != '\0' ? absl::StrCat(R"(, "lora": )", lora_json) : "",
                   R"(, "data": {"path": ")", dir / "data.bin", R"(", "seq_len": )", seq,
                   R"(}, "train": {"steps": 1, "output_dir": ")", dir / "out", R"("}})"),
      "test.json");
}

struct Batch {
  std::vector<int32_t> inputs, targets;
};

Batch read_batch(const SafetensorsFile& expected) {
  auto inputs = expected.read_int("inputs");
  auto targets = expected.read_int("targets");
  EXPECT_TRUE(inputs.ok() && targets.ok());
  if (!inputs.ok() || !targets.ok()) return {};
  return {{inputs->begin(), inputs->end()}, {targets->begin(), targets->end()}};
}

class LlamaLoraGoldenTest : public ::testing::TestWithParam<Case> {};

TEST_P(LlamaLoraGoldenTest, LossAndEveryAdapterGradientMatchPyTorch) {
  if (!testing::have_torch()) GTEST_SKIP() << "python3-torch is not installed";
  const Case c = GetParam();
  TempDir dir;
  const testing::CommandResult gen = testing::run_command(
      absl::StrCat(lora_script(), " golden --out ", dir.path(), " ", c.args, " --seq ", c.seq,
                   " --batch ", c.batch),
      dir.path());
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  auto loaded = read_config(dir,
                            absl::StrCat(R"({"init_from": ")", dir / "model",
                                         R"(", "adapter_from": ")", dir / "adapter", R"("})"),
                            c.lora_json, c.seq, c.batch);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const ModelConfig& config = loaded->config.model;
  ASSERT_TRUE(config.lora.enabled);

  auto backend = kernels::make_cpu_backend({});
  const LlamaModel def(config);
  const std::vector<memory::ChunkLayout> layouts = def.layouts();
  testing::DeviceChunks chunks(backend.get(), layouts);
  auto program = LlamaProgram::create(backend.get(), config, c.batch);
  ASSERT_TRUE(program.ok()) << program.status();
  (*program)->set_chunk_source(&chunks);
  auto weights = HfWeights::open(dir / "model");
  ASSERT_TRUE(weights.ok()) << weights.status();
  ASSERT_TRUE(def.load_hf(**weights, chunks).ok());
  auto adapter = SafetensorsFile::open(dir / "adapter/adapter_model.safetensors");
  ASSERT_TRUE(adapter.ok()) << adapter.status();
  ASSERT_TRUE(def.load_adapter(*adapter, chunks).ok());

  auto expected = SafetensorsFile::open(dir / "expected.safetensors");
  ASSERT_TRUE(expected.ok()) << expected.status();
  Batch batch = read_batch(*expected);
  ASSERT_TRUE(chunks.zero_grads().ok());
  auto loss = (*program)->forward(batch.inputs.data(), batch.targets.data(), c.batch);
  ASSERT_TRUE(loss.ok()) << loss.status();
  auto expected_loss = expected->read_f32("loss", {1});
  ASSERT_TRUE(expected_loss.ok());
  EXPECT_NEAR(*loss, (*expected_loss)[0], 1e-5 * std::abs((*expected_loss)[0]));
  ASSERT_TRUE((*program)->backward(1.0f / static_cast<float>(batch.inputs.size())).ok());

  size_t compared = 0;
  for (size_t chunk = 0; chunk < layouts.size(); ++chunk) {
    auto grads = def.export_chunk(chunks, chunk, /*gradients=*/true);
    ASSERT_TRUE(grads.ok());
    // The frozen base has no gradient.
    if (chunk < def.base_chunks()) {
      EXPECT_TRUE(grads->empty()) << "chunk " << chunk;
    }
    for (const HostTensor& g : *grads) {
      auto ref = expected->read_f32("grad." + g.name, g.shape);
      ASSERT_TRUE(ref.ok()) << ref.status();
      double max_ref = 0, max_err = 0;
      for (size_t i = 0; i < g.data.size(); ++i) {
        max_ref = std::max(max_ref, std::abs(static_cast<double>((*ref)[i])));
        max_err = std::max(max_err, std::abs(static_cast<double>(g.data[i]) - (*ref)[i]));
      }
      ASSERT_GT(max_ref, 0.0) << g.name << ": reference gradient is all zero";
      EXPECT_LT(max_err / max_ref, 2e-4) << g.name << " max abs err " << max_err;
      ++compared;
    }
  }
  size_t reference_grads = 0;
  for (const std::string& name : expected->names()) reference_grads += name.starts_with("grad.");
  EXPECT_EQ(compared, reference_grads);
  EXPECT_GT(compared, 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Adapters, LlamaLoraGoldenTest,
    ::testing::Values(
        Case{"all_linear_gqa", "--family llama --heads 4 --kv-heads 2", "", 16, 2},
        Case{"rslora_qv_lm_head_copy",
             "--family llama --r 3 --alpha 6 --rslora --targets q_proj,v_proj --save-lm-head",
             R"({"r": 3, "lora_alpha": 6, "use_rslora": true, "target_modules": ["v_proj",
                 "q_proj"], "modules_to_save": ["lm_head"]})",
             12, 2},
        Case{"qwen3_biases_attention_only",
             "--family qwen3 --heads 4 --kv-heads 2 --head-dim 12 --bias "
             "--targets q_proj,k_proj,v_proj,o_proj",
             "", 16, 1},
        Case{"qwen2_tied_mlp_only", "--family qwen2 --tie --targets gate_proj,up_proj,down_proj",
             "", 8, 3}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

// A program over fresh adapters (B zero) gives the base's loss bit for bit.
TEST(LlamaLora, FreshAdaptersLeaveTheBaseLossUnchanged) {
  ModelConfig base;
  base.type = "llama";
  base.n_layer = 2;
  base.n_head = 4;
  base.n_kv_head = 2;
  base.n_embd = 32;
  base.head_dim = 8;
  base.intermediate_size = 40;
  base.vocab_size = 64;
  base.n_positions = 16;
  base.seq_len = 16;
  ModelConfig lora = base;
  lora.lora.enabled = true;
  lora.lora.r = 4;
  lora.lora.target_modules = lora_module_names();
  lora.lora.modules_to_save = {"lm_head", "embed_tokens"};
  auto backend = kernels::make_cpu_backend({});
  std::vector<int32_t> inputs(32), targets(32);
  for (size_t i = 0; i < inputs.size(); ++i) {
    inputs[i] = static_cast<int32_t>((i * 7) % 64);
    targets[i] = static_cast<int32_t>((i * 5 + 3) % 64);
  }
  float losses[2];
  for (int run = 0; run < 2; ++run) {
    const LlamaModel def(run == 0 ? base : lora);
    testing::DeviceChunks chunks(backend.get(), def.layouts());
    ASSERT_TRUE(def.init_random(7, chunks).ok());
    auto program = LlamaProgram::create(backend.get(), run == 0 ? base : lora, 2);
    ASSERT_TRUE(program.ok());
    (*program)->set_chunk_source(&chunks);
    auto loss = (*program)->forward(inputs.data(), targets.data(), 2);
    ASSERT_TRUE(loss.ok());
    losses[run] = *loss;
  }
  EXPECT_EQ(0, std::memcmp(&losses[0], &losses[1], sizeof(float)))
      << losses[0] << " vs " << losses[1];
}

// Dropout: the same key gives the same loss (the mask is a function of it),
// another key another loss, and no key (evaluation) the loss without dropout.
TEST(LlamaLora, DropoutMasksFollowTheirKey) {
  ModelConfig config;
  config.type = "llama";
  config.n_layer = 1;
  config.n_head = 2;
  config.n_kv_head = 2;
  config.n_embd = 16;
  config.head_dim = 8;
  config.intermediate_size = 24;
  config.vocab_size = 40;
  config.n_positions = 8;
  config.seq_len = 8;
  config.lora.enabled = true;
  config.lora.r = 2;
  config.lora.dropout = 0.5;
  config.lora.target_modules = lora_module_names();
  auto backend = kernels::make_cpu_backend({});
  const LlamaModel def(config);
  testing::DeviceChunks chunks(backend.get(), def.layouts());
  ASSERT_TRUE(def.init_random(3, chunks).ok());
  // Non-zero B so that the adapters (and their dropout) change the output.
  for (size_t c = def.base_chunks(); c < def.layouts().size(); ++c) {
    std::vector<float> host(def.layouts()[c].numel_padded(), 0.25f);
    ASSERT_TRUE(chunks.write_params(c, host.data()).ok());
  }
  auto program = LlamaProgram::create(backend.get(), config, 1);
  ASSERT_TRUE(program.ok());
  (*program)->set_chunk_source(&chunks);
  std::vector<int32_t> inputs = {1, 5, 9, 13, 17, 21, 25, 29}, targets = {2, 3, 4, 5, 6, 7, 8, 9};
  auto loss_with = [&](std::optional<uint64_t> key) {
    (*program)->set_dropout_key(key);
    absl::StatusOr<float> loss = (*program)->forward(inputs.data(), targets.data(), 1);
    EXPECT_TRUE(loss.ok());
    return loss.ok() ? *loss : 0.0f;
  };
  const float a = loss_with(11), b = loss_with(11), other = loss_with(12);
  const float eval1 = loss_with(std::nullopt), eval2 = loss_with(std::nullopt);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, other);
  EXPECT_NE(a, eval1);
  EXPECT_EQ(eval1, eval2);
}

// Generation applies the adapters: the decoder's cross-entropy over a window,
// token by token through its cache, equals the LoRA training forward's (whose
// math the PyTorch test above holds), with an lm_head copy and qk-norms.
TEST(LlamaLora, TheDecoderAppliesTheAdapters) {
  if (!testing::have_torch()) GTEST_SKIP() << "python3-torch is not installed";
  TempDir dir;
  const testing::CommandResult gen = testing::run_command(
      absl::StrCat(lora_script(), " golden --out ", dir.path(),
                   " --family qwen3 --heads 4 --kv-heads 2 --head-dim 8 --save-lm-head --seq 12"),
      dir.path());
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  auto loaded = read_config(dir,
                            absl::StrCat(R"({"init_from": ")", dir / "model",
                                         R"(", "adapter_from": ")", dir / "adapter", R"("})"),
                            "", 12, 1);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const ModelConfig& config = loaded->config.model;
  auto backend = kernels::make_cpu_backend({});
  const LlamaModel def(config);
  testing::DeviceChunks chunks(backend.get(), def.layouts());
  auto weights = HfWeights::open(dir / "model");
  ASSERT_TRUE(weights.ok());
  ASSERT_TRUE(def.load_hf(**weights, chunks).ok());
  auto adapter = SafetensorsFile::open(dir / "adapter/adapter_model.safetensors");
  ASSERT_TRUE(adapter.ok());
  ASSERT_TRUE(def.load_adapter(*adapter, chunks).ok());

  const int T = config.window();
  std::vector<int32_t> tokens;
  for (int t = 0; t <= T; ++t) tokens.push_back((t * 37 + 5) % config.vocab_size);
  const std::vector<int32_t> inputs(tokens.begin(), tokens.begin() + T);
  const std::vector<int32_t> targets(tokens.begin() + 1, tokens.end());
  auto program = LlamaProgram::create(backend.get(), config, 1);
  ASSERT_TRUE(program.ok());
  (*program)->set_chunk_source(&chunks);
  absl::StatusOr<float> loss = (*program)->forward(inputs.data(), targets.data(), 1);
  ASSERT_TRUE(loss.ok());

  absl::StatusOr<std::unique_ptr<Decoder>> d = make_decoder(config);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_TRUE((*d)->bind(backend.get(), &chunks).ok());
  double sum = 0;
  std::vector<float> logits;
  for (int t = 0; t < T; ++t) {
    ASSERT_TRUE((*d)->append({inputs[t]}, logits).ok());
    double max = logits[0], z = 0;
    for (float x : logits) max = std::max(max, static_cast<double>(x));
    for (float x : logits) z += std::exp(x - max);
    sum += max + std::log(z) - logits[targets[t]];
  }
  EXPECT_NEAR(*loss, sum / T, 1e-5 * std::abs(sum / T));
  // Without the adapters the loss is another.
  const LlamaModel plain([&] {
    ModelConfig c = config;
    c.lora = LoraConfig{};
    c.adapter_from.clear();
    return c;
  }());
  testing::DeviceChunks base_chunks(backend.get(), plain.layouts());
  ASSERT_TRUE(plain.load_hf(**weights, base_chunks).ok());
  ModelConfig base_config = config;
  base_config.lora = LoraConfig{};
  auto base_program = LlamaProgram::create(backend.get(), base_config, 1);
  ASSERT_TRUE(base_program.ok());
  (*base_program)->set_chunk_source(&base_chunks);
  absl::StatusOr<float> base_loss = (*base_program)->forward(inputs.data(), targets.data(), 1);
  ASSERT_TRUE(base_loss.ok());
  EXPECT_GT(std::abs(*base_loss - *loss), 1e-3);
}

}  // namespace
}  // namespace dsinf::trainer
