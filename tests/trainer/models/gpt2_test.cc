// GPT-2's layer program: activation checkpointing changes memory, not numbers,
// and a chunk source that keeps parameters and gradients off the device gives
// the same loss and gradients, bit for bit, as the resident chunks.
#include "trainer/models/gpt2/gpt2.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "kernels/backend.h"
#include "memory/util/check.h"
#include "tests/trainer/models/device_chunks.h"

namespace dsinf::trainer {
namespace {

ModelConfig small_config(int n_layer, bool checkpointing) {
  ModelConfig c;
  c.n_layer = n_layer;
  c.n_head = 2;
  c.n_embd = 32;
  c.n_positions = 16;
  c.vocab_size = 256;
  c.activation_checkpointing = checkpointing;
  return c;
}

struct Batch {
  std::vector<int32_t> inputs, targets;
};

Batch make_batch(int B, int T, int seed) {
  Batch b;
  for (int i = 0; i < B * T; ++i) {
    b.inputs.push_back((i * 37 + seed * 11) % 256);
    b.targets.push_back((i * 53 + seed * 7 + 1) % 256);
  }
  return b;
}

// Two micro-batches of forward and backward (gradient accumulation); the losses.
std::vector<float> run_two_micro_batches(Gpt2Program& model, int B) {
  std::vector<float> losses;
  for (int micro = 0; micro < 2; ++micro) {
    const Batch batch = make_batch(B, model.config().n_positions, micro);
    absl::StatusOr<float> loss = model.forward(batch.inputs.data(), batch.targets.data(), B);
    EXPECT_TRUE(loss.ok()) << loss.status();
    losses.push_back(loss.value_or(0));
    EXPECT_TRUE(model.backward(0.5f).ok());
  }
  return losses;
}

std::vector<std::vector<float>> all_chunks(Gpt2Program& model, bool gradients,
                                           actors::ChunkSource& source) {
  std::vector<std::vector<float>> out;
  for (size_t c = 0; c < model.layouts().size(); ++c) {
    out.emplace_back(model.layouts()[c].numel_padded());
    EXPECT_TRUE(source.read_chunk(c, gradients, out.back().data()).ok());
  }
  return out;
}

std::vector<std::vector<float>> resident_gradients(const ModelConfig& config, int B,
                                                   std::vector<float>* losses) {
  auto backend = kernels::make_cpu_backend({});
  testing::DeviceChunks chunks(backend.get(), Gpt2Model::make_layouts(config));
  auto model = Gpt2Program::create(backend.get(), config, B);
  EXPECT_TRUE(model.ok());
  (*model)->set_chunk_source(&chunks);
  EXPECT_TRUE(Gpt2Model(config).init_random(3, chunks).ok());
  EXPECT_TRUE(chunks.zero_grads().ok());
  *losses = run_two_micro_batches(**model, B);
  std::vector<std::vector<float>> out;
  for (size_t c = 0; c < chunks.chunks(); ++c) {
    out.emplace_back((*model)->layouts()[c].numel_padded());
    std::memcpy(out.back().data(), chunks.grad_chunk(c), out.back().size() * sizeof(float));
  }
  return out;
}

TEST(Gpt2, ActivationCheckpointingGivesTheSameLossesAndGradients) {
  std::vector<float> losses_plain, losses_ckpt;
  const auto plain = resident_gradients(small_config(3, false), 2, &losses_plain);
  const auto ckpt = resident_gradients(small_config(3, true), 2, &losses_ckpt);
  EXPECT_EQ(losses_plain, losses_ckpt);
  ASSERT_EQ(plain.size(), ckpt.size());
  for (size_t c = 0; c < plain.size(); ++c) EXPECT_EQ(plain[c], ckpt[c]) << "chunk " << c;
}

TEST(Gpt2, CheckpointedActivationMemoryGrowsByOneLayerOutputPerLayer) {
  const int B = 4;
  const size_t layer_output = static_cast<size_t>(B) * 16 * 32 * sizeof(float);
  const size_t ckpt4 = Gpt2Program::activation_bytes_needed(small_config(4, true), B);
  const size_t ckpt8 = Gpt2Program::activation_bytes_needed(small_config(8, true), B);
  EXPECT_EQ(ckpt8 - ckpt4, 4 * memory::align_up(layer_output, memory::kChunkAlignment));
  const size_t plain4 = Gpt2Program::activation_bytes_needed(small_config(4, false), B);
  const size_t plain8 = Gpt2Program::activation_bytes_needed(small_config(8, false), B);
  EXPECT_GT(plain8 - plain4, 10 * (ckpt8 - ckpt4));
}

// Parameters and gradient accumulators in host vectors; a parameter visits the
// device only between acquire and release, in a slot from the backend's arena.
class HostChunks final : public actors::ChunkSource {
 public:
  HostChunks(kernels::Backend* backend, const std::vector<memory::ChunkLayout>& layouts)
      : backend_(backend), layouts_(layouts) {
    for (const memory::ChunkLayout& l : layouts) {
      params_.emplace_back(l.numel_padded(), 0.0f);
      grads_.emplace_back(l.numel_padded(), 0.0f);
    }
  }
  absl::StatusOr<const float*> acquire_params(size_t c) override {
    DSINF_CHECK(slot_ == nullptr);  // the model holds one chunk at a time
    absl::StatusOr<void*> slot = backend_->allocate(layouts_[c].bytes());
    if (!slot.ok()) return slot.status();
    slot_ = static_cast<float*>(*slot);
    if (absl::Status s =
            backend_->copy_to_device(slot_, params_[c].data(), bytes(c), kernels::Stream::kUpload);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = backend_->synchronize(kernels::Stream::kUpload); !s.ok()) return s;
    ++acquires;
    return slot_;
  }
  absl::Status release_params(size_t) override {
    backend_->release(slot_);
    slot_ = nullptr;
    return absl::OkStatus();
  }
  absl::Status accumulate_grads(size_t c, const float* visit) override {
    std::vector<float> staged(layouts_[c].numel_padded());
    if (absl::Status s =
            backend_->copy_to_host(staged.data(), visit, bytes(c), kernels::Stream::kDownload);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = backend_->synchronize(kernels::Stream::kDownload); !s.ok()) return s;
    for (size_t i = 0; i < staged.size(); ++i) grads_[c][i] += staged[i];
    return absl::OkStatus();
  }
  absl::Status write_params(size_t c, const float* host) override {
    std::memcpy(params_[c].data(), host, bytes(c));
    return absl::OkStatus();
  }
  absl::Status read_chunk(size_t c, bool gradients, float* host) override {
    std::memcpy(host, (gradients ? grads_ : params_)[c].data(), bytes(c));
    return absl::OkStatus();
  }
  int acquires = 0;

 private:
  size_t bytes(size_t c) const { return layouts_[c].numel_padded() * sizeof(float); }
  kernels::Backend* backend_;
  const std::vector<memory::ChunkLayout>& layouts_;
  std::vector<std::vector<float>> params_, grads_;
  float* slot_ = nullptr;
};

TEST(Gpt2, ParametersStreamedFromHostGiveTheResidentResultsBitForBit) {
  for (bool checkpointing : {false, true}) {
    SCOPED_TRACE(checkpointing ? "with activation checkpointing" : "without");
    const ModelConfig config = small_config(3, checkpointing);
    const int B = 2;
    std::vector<float> resident_losses;
    const auto resident = resident_gradients(config, B, &resident_losses);

    // A budget that holds the activations and one chunk, far less than the model.
    const size_t activations = Gpt2Program::activation_bytes_needed(config, B);
    size_t largest = 0, all_chunks_bytes = 0;
    for (const auto& l : Gpt2Model::make_layouts(config)) {
      largest = std::max(largest, l.bytes());
      all_chunks_bytes += 2 * l.bytes();
    }
    auto backend = kernels::make_cpu_backend({.device_budget_bytes = activations + largest});
    ASSERT_LT(activations + largest, activations + all_chunks_bytes);
    auto model = Gpt2Program::create(backend.get(), config, B);
    ASSERT_TRUE(model.ok()) << model.status();
    HostChunks host(backend.get(), (*model)->layouts());
    (*model)->set_chunk_source(&host);
    ASSERT_TRUE(Gpt2Model(config).init_random(3, host).ok());
    EXPECT_EQ(run_two_micro_batches(**model, B), resident_losses);
    const auto streamed = all_chunks(**model, true, host);
    for (size_t c = 0; c < resident.size(); ++c) EXPECT_EQ(streamed[c], resident[c]) << c;
    EXPECT_LE(backend->memory_stats().peak_bytes, activations + largest);
    // Forward visits embed, 3 blocks, ln_f, embed; backward embed, ln_f, 3 blocks.
    EXPECT_EQ(host.acquires, 2 * (6 + 5));
  }
}

}  // namespace
}  // namespace dsinf::trainer
