// Generation for the Llama family (trainer/models/llama/llama_decoder.h)
// against an independent float64 PyTorch reference (torch_generate.py), which
// recomputes the whole sequence at every step: the prompt's pass and every
// decode step give the reference's logits at their positions, the greedy
// tokens are the reference's, and appending one token at a time gives what
// one pass over the whole sequence gives (the cache equals recomputing). The
// decoder's cross-entropy equals the training forward's (LlamaProgram) on the
// same window. Through open_generation, parameters streamed from the host or
// NVMe under a small device budget give the in-memory run's logits, bit for
// bit (the CPU backend runs the same ops on the same bytes).
//
// Tolerances: fp32 against float64, normalised by the largest |logit|: 1e-4
// (a few layers of fp32 roundings; measured ~1e-6). Greedy tokens are compared
// while the reference's two best logits are 1e-3 apart or more: below that
// fp32 rounding may pick the other one.
#include <cmath>
#include <filesystem>

#include "kernels/backend.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"
#include "tests/trainer/models/device_chunks.h"
#include "trainer/config/config.h"
#include "trainer/models/hf_weights.h"
#include "trainer/models/llama/llama.h"
#include "trainer/models/llama/llama_decoder.h"
#include "trainer/train/generate.h"
#include "trainer/train/sampling.h"

namespace dsinf::trainer {
namespace {

using json = nlohmann::json;
using testing::TempDir;

const std::vector<int32_t> kPrompt = {5, 17, 200, 3, 42, 7, 99};
constexpr int kNew = 12;

std::string script(const char* name) {
  return absl::StrCat("/usr/bin/python3 ", DSINF_SOURCE_DIR, "/tests/trainer/models/", name);
}

json base_config(const TempDir& dir, int seq) {
  testing::write_text(dir / "data.bin", std::string(4096, 'a'));
  return {{"train_batch_size", 1},
          {"train_micro_batch_size_per_gpu", 1},
          {"model", {{"init_from", dir / "model"}}},
          {"data", {{"path", dir / "data.bin"}, {"seq_len", seq}}},
          {"train", {{"steps", 1}, {"output_dir", dir / "out"}}}};
}

Config parse(const json& j) {
  absl::StatusOr<LoadedConfig> loaded = parse_config(j.dump(), "test.json");
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return loaded.ok() ? loaded->config : Config{};
}

// max |got - ref| / max |ref|.
double normalized_error(const std::vector<float>& got, const std::vector<double>& ref) {
  double max_ref = 0, max_err = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    max_ref = std::max(max_ref, std::abs(ref[i]));
    max_err = std::max(max_err, std::abs(static_cast<double>(got[i]) - ref[i]));
  }
  return max_err / std::max(max_ref, 1e-30);
}

struct Case {
  const char* name;
  const char* args;  // torch_llama.py golden options
};

class LlamaDecoderTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (!testing::have_torch()) GTEST_SKIP() << "python3-torch is not installed";
    const testing::CommandResult gen = testing::run_command(
        absl::StrCat(script("torch_llama.py"), " golden --out ", dir_.path(), " ",
                     GetParam().args, " --seq 8 --batch 1"),
        dir_.path());
    ASSERT_EQ(gen.exit_code, 0) << gen.err;
    config_ = parse(base_config(dir_, 8)).model;
    backend_ = kernels::make_cpu_backend({});
    chunks_ = std::make_unique<testing::DeviceChunks>(backend_.get(),
                                                      LlamaModel(config_).layouts());
    auto weights = HfWeights::open(dir_ / "model");
    ASSERT_TRUE(weights.ok()) << weights.status();
    ASSERT_TRUE(LlamaModel(config_).load_hf(**weights, *chunks_).ok());
  }

  std::unique_ptr<Decoder> decoder() {
    absl::StatusOr<std::unique_ptr<Decoder>> d = make_decoder(config_);
    EXPECT_TRUE(d.ok()) << d.status();
    EXPECT_TRUE((*d)->bind(backend_.get(), chunks_.get()).ok());
    return *std::move(d);
  }

  json reference() {
    std::string prompt;
    for (int32_t t : kPrompt) absl::StrAppend(&prompt, prompt.empty() ? "" : ",", t);
    const testing::CommandResult r = testing::run_command(
        absl::StrCat(script("torch_generate.py"), " greedy --dir ", dir_ / "model", " --prompt ",
                     prompt, " --new ", kNew),
        dir_.path());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out);
  }

  TempDir dir_;
  ModelConfig config_;
  std::unique_ptr<kernels::Backend> backend_;
  std::unique_ptr<testing::DeviceChunks> chunks_;
};

TEST_P(LlamaDecoderTest, PrefillAndEachStepGiveTheReferenceLogitsAndGreedyTokens) {
  const json ref = reference();
  std::unique_ptr<Decoder> d = decoder();
  std::vector<float> logits;
  ASSERT_TRUE(d->append(kPrompt, logits).ok());
  bool comparable = true;  // no near tie so far
  for (int step = 0; step < kNew; ++step) {
    const size_t position = kPrompt.size() - 1 + step;
    const std::vector<double> expected = ref["logits"][position].get<std::vector<double>>();
    EXPECT_LT(normalized_error(logits, expected), 1e-4) << "position " << position;
    const int32_t want = ref["tokens"][step].get<int32_t>();
    comparable = comparable && ref["margins"][step].get<double>() >= 1e-3;
    if (comparable) {
      EXPECT_EQ(greedy_token(logits), want) << "step " << step;
    }
    if (step + 1 < kNew) {
      ASSERT_TRUE(d->append({want}, logits).ok());  // the reference's path
    }
  }
  EXPECT_EQ(d->position(), static_cast<int>(kPrompt.size()) + kNew - 1);
}

// One token a pass over the cache gives what one pass over the whole sequence gives.
TEST_P(LlamaDecoderTest, TheCacheEqualsRecomputingTheSequence) {
  std::unique_ptr<Decoder> stepped = decoder();
  std::unique_ptr<Decoder> whole = decoder();
  std::vector<int32_t> seq = {kPrompt[0]};
  std::vector<float> step_logits, whole_logits;
  ASSERT_TRUE(stepped->append(seq, step_logits).ok());
  for (int i = 0; i < 20; ++i) {
    seq.push_back(greedy_token(step_logits));
    ASSERT_TRUE(stepped->append({seq.back()}, step_logits).ok());
    whole->truncate(0);
    ASSERT_TRUE(whole->append(seq, whole_logits).ok());
    std::vector<double> widened(whole_logits.begin(), whole_logits.end());
    EXPECT_LT(normalized_error(step_logits, widened), 1e-5) << "length " << seq.size();
  }
  // A truncated cache is extended from where it was cut.
  stepped->truncate(3);
  ASSERT_TRUE(stepped->append({seq.begin() + 3, seq.end()}, step_logits).ok());
  EXPECT_LT(normalized_error(step_logits, {whole_logits.begin(), whole_logits.end()}), 1e-5);
}

// A prompt longer than a pass's rows takes several passes: the same logits.
TEST_P(LlamaDecoderTest, APromptInSeveralPassesGivesOnePassLogits) {
  std::unique_ptr<Decoder> one = decoder();
  LlamaDecoder three(config_, /*max_pass_rows=*/3);
  ASSERT_TRUE(three.bind(backend_.get(), chunks_.get()).ok());
  EXPECT_LT(three.device_bytes(), one->device_bytes());
  EXPECT_EQ(three.kv_cache_bytes(), one->kv_cache_bytes());
  std::vector<float> a, b;
  ASSERT_TRUE(one->append(kPrompt, a).ok());
  ASSERT_TRUE(three.append(kPrompt, b).ok());  // passes of 3, 3 and 1 tokens
  EXPECT_EQ(three.position(), static_cast<int>(kPrompt.size()));
  EXPECT_LT(normalized_error(b, {a.begin(), a.end()}), 1e-5);
  ASSERT_TRUE(one->append({9}, a).ok());
  ASSERT_TRUE(three.append({9}, b).ok());
  EXPECT_LT(normalized_error(b, {a.begin(), a.end()}), 1e-5);
}

// The decoder's logits give the training forward's mean cross-entropy over a window.
TEST_P(LlamaDecoderTest, CrossEntropyEqualsTheTrainingForwards) {
  const int T = config_.window();
  std::vector<int32_t> tokens(kPrompt);
  for (int32_t t = 11; static_cast<int>(tokens.size()) < T + 1; t += 37) tokens.push_back(t % 300);
  const std::vector<int32_t> inputs(tokens.begin(), tokens.begin() + T);
  const std::vector<int32_t> targets(tokens.begin() + 1, tokens.begin() + T + 1);
  auto program = LlamaProgram::create(backend_.get(), config_, 1);
  ASSERT_TRUE(program.ok()) << program.status();
  (*program)->set_chunk_source(chunks_.get());
  absl::StatusOr<float> loss = (*program)->forward(inputs.data(), targets.data(), 1);
  ASSERT_TRUE(loss.ok()) << loss.status();
  std::unique_ptr<Decoder> d = decoder();
  double sum = 0;
  std::vector<float> logits;
  for (int t = 0; t < T; ++t) {
    ASSERT_TRUE(d->append({inputs[t]}, logits).ok());
    double max = logits[0], z = 0;
    for (float x : logits) max = std::max(max, static_cast<double>(x));
    for (float x : logits) z += std::exp(x - max);
    sum += max + std::log(z) - logits[targets[t]];
  }
  EXPECT_NEAR(*loss, sum / T, 1e-5 * std::abs(sum / T));
}

INSTANTIATE_TEST_SUITE_P(
    Families, LlamaDecoderTest,
    ::testing::Values(Case{"llama_gqa_untied", "--family llama --heads 4 --kv-heads 2"},
                      Case{"llama_llama3_rope_tied_mqa",
                           "--family llama --heads 4 --kv-heads 1 --rope-scaling llama3 --tie"},
                      Case{"mistral_head_dim", "--family mistral --heads 4 --kv-heads 2 --head-dim 16"},
                      Case{"qwen2_biases", "--family qwen2 --heads 4 --kv-heads 4"},
                      Case{"qwen3_qk_norm", "--family qwen3 --heads 4 --kv-heads 2 --head-dim 12"}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

// ---- through the runtime: parameters streamed from host or NVMe ----

// The greedy continuation's logits, with the config's placement.
std::vector<std::vector<float>> continuation(const Config& config, size_t* slots) {
  absl::StatusOr<std::unique_ptr<GenerationSession>> g = open_generation(config, RunEnvironment{});
  EXPECT_TRUE(g.ok()) << g.status();
  if (!g.ok()) return {};
  *slots = (*g)->session.runtime->plan().slots;
  Decoder& d = *(*g)->decoder;
  std::vector<std::vector<float>> all(1);
  EXPECT_TRUE(d.append(kPrompt, all.back()).ok());
  for (int i = 0; i < kNew; ++i) {
    const int32_t next = greedy_token(all.back());
    all.emplace_back();
    EXPECT_TRUE(d.append({next}, all.back()).ok());
  }
  return all;
}

TEST(LlamaDecoderStreaming, ParamsOnHostOrNvmeGiveTheInMemoryLogitsBitwise) {
  if (!testing::have_torch()) GTEST_SKIP() << "python3-torch is not installed";
  TempDir dir;
  const testing::CommandResult gen = testing::run_command(
      absl::StrCat(script("torch_llama.py"), " golden --out ", dir.path(),
                   " --family qwen3 --heads 4 --kv-heads 2 --head-dim 12 --layers 3 --seq 8 "
                   "--batch 1"),
      dir.path());
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  const json base = base_config(dir, 8);
  size_t slots = 0;
  const std::vector<std::vector<float>> in_memory = continuation(parse(base), &slots);
  ASSERT_EQ(in_memory.size(), kNew + 1u);
  const Config plain = parse(base);
  const std::vector<memory::ChunkLayout> layouts = LlamaModel(plain.model).layouts();
  size_t largest = 0;
  for (const memory::ChunkLayout& l : layouts) largest = std::max(largest, l.bytes());
  // The decoder's buffers and two chunks: less than the model, so its chunks take turns.
  const size_t budget = (*make_decoder(plain.model))->device_bytes() + 2 * largest;
  for (const char* device : {"cpu", "nvme"}) {
    SCOPED_TRACE(device);
    json c = base;
    json param = {{"device", device}, {"buffer_count", 2}};
    if (std::string(device) == "nvme") {
      std::filesystem::create_directories(dir / "swap");
      param["nvme_path"] = dir / "swap";
      param["max_in_cpu"] = 0;  // every visit reads NVMe
    }
    c["zero_optimization"] = {{"stage", 3}, {"offload_param", param},
                              {"stage3_param_persistence_threshold", 0}};
    c["memory"] = {{"device_budget_bytes", budget}};
    const std::vector<std::vector<float>> streamed = continuation(parse(c), &slots);
    EXPECT_GE(slots, 1u);
    EXPECT_LT(slots, layouts.size());
    EXPECT_EQ(streamed, in_memory);
  }
}

// A family without generation says so.
TEST(LlamaDecoderStreaming, Gpt2HasNoDecoder) {
  ModelConfig gpt2;
  absl::StatusOr<std::unique_ptr<Decoder>> d = make_decoder(gpt2);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnimplemented);
}

// Sampling: greedy ties to the lowest id; a seed repeats its tokens; top_k 1 is greedy; a
// nucleus below the top token's probability keeps only it.
TEST(Sampling, GreedyTopKTopPAndSeeds) {
  const std::vector<float> logits = {1.0f, 3.0f, 3.0f, 2.0f, -1.0f};
  EXPECT_EQ(greedy_token(logits), 1);
  auto draws = [&](SamplingOptions o) {
    Sampler s(o);
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) out.push_back(s.next(logits));
    return out;
  };
  EXPECT_EQ(draws({1.0, 1.0, 0, 7}), draws({1.0, 1.0, 0, 7}));
  EXPECT_NE(draws({1.0, 1.0, 0, 7}), draws({1.0, 1.0, 0, 8}));
  for (int32_t t : draws({1.0, 1.0, 1, 3})) EXPECT_EQ(t, 1);
  for (int32_t t : draws({1.0, 0.1, 0, 3})) EXPECT_EQ(t, 1);
  for (int32_t t : draws({0.5, 1.0, 3, 3})) EXPECT_TRUE(t == 1 || t == 2 || t == 3);
  std::vector<int> counts(5);
  for (int32_t t : draws({1.0, 1.0, 0, 9})) ++counts[t];
  EXPECT_GT(counts[0], 0);  // every token can come
  EXPECT_GT(counts[1] + counts[2], counts[3]);
}

TEST(Sampling, PrintablePrefixNeverSplitsACharacter) {
  EXPECT_EQ(printable_prefix("abc"), 3u);
  EXPECT_EQ(printable_prefix("a\xC3"), 1u);              // half of é
  EXPECT_EQ(printable_prefix("a\xC3\xA9"), 3u);          // é
  EXPECT_EQ(printable_prefix("a\xE2\x82"), 1u);          // two bytes of €
  EXPECT_EQ(printable_prefix("\xF0\x9F\x98\x80"), 4u);   // an emoji
  EXPECT_EQ(printable_prefix("ab\xEF\xBF\xBD"), 2u);     // a replaced partial byte sequence
}

}  // namespace
}  // namespace dsinf::trainer
