// GPT-2 (learned positions, pre-LayerNorm, tanh GELU, causal attention, tied
// embeddings) over the backend interface. Parameters live in chunks, one per
// layer, each one flat page-aligned buffer:
//   chunk 0        "embed": wte (V,C), wpe (T,C)
//   chunk 1..L     "h.{l}": ln_1 w,b (C); attn.c_attn w (3C,C) b (3C); attn.c_proj w (C,C) b (C);
//                           ln_2 w,b (C); mlp.c_fc w (4C,C) b (4C); mlp.c_proj w (C,4C) b (C)
//   chunk L+1      "ln_f": weight, bias (C)
// Matrix weights are stored (out, in); Hugging Face's Conv1D stores (in, out)
// and load_hf/export_hf transpose. Gradients use the same layouts.
// B batch, T = the window (data.seq_len, at most n_positions), C = n_embd, NH = n_head, V =
// vocab_size, L = n_layer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "actors/runtime/model.h"
#include "kernels/backend.h"
#include "memory/chunk_layout.h"
#include "trainer/config/config.h"
#include "trainer/models/model.h"

namespace dsinf::trainer {

namespace gpt2 {
// Tensor indices inside the chunks, in layout order.
enum EmbedTensor : size_t { kWte = 0, kWpe = 1 };
enum BlockTensor : size_t {
  kLn1W = 0,
  kLn1B,
  kQkvW,
  kQkvB,
  kAttProjW,
  kAttProjB,
  kLn2W,
  kLn2B,
  kFcW,
  kFcB,
  kFcProjW,
  kFcProjB,
  kNumBlockTensors
};
enum FinalTensor : size_t { kLnfW = 0, kLnfB = 1 };
}  // namespace gpt2

// The model of one shape: its chunks, initialisation, and Hugging Face
// GPT2LMHeadModel weights in and out.
class Gpt2Model final : public Model {
 public:
  explicit Gpt2Model(const ModelConfig& config);
  // The chunk layouts of a model of this shape.
  static std::vector<memory::ChunkLayout> make_layouts(const ModelConfig& config);

  std::string describe() const override;
  std::string shape_text() const override;
  std::vector<memory::ChunkLayout> layouts() const override { return layouts_; }
  // The embedding is the logits' weight too (tied): two visits.
  int grad_visits(size_t c) const override { return c == 0 ? 2 : 1; }
  size_t num_parameters() const override;
  int seq_len() const override { return config_.window(); }
  int vocab_size() const override { return config_.vocab_size; }
  double flops_per_token() const override;
  // With config.activation_checkpointing, one layer's activations plus each
  // layer's output; and one gradient visit buffer (the largest chunk).
  size_t activation_bytes(int max_batch) const override;
  absl::StatusOr<std::unique_ptr<actors::LayerProgram>> instantiate(kernels::Backend* backend,
                                                                    int max_batch) const override;
  // N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)), biases 0, LayerNorm
  // weights 1. Deterministic for a seed on every machine.
  absl::Status init_random(uint64_t seed, actors::ChunkSource& chunks) const override;
  // With or without the "transformer." prefix; lm_head.weight optional, must
  // equal wte when present; attn.bias/masked_bias ignored.
  absl::Status load_hf(const TensorReader& reader, actors::ChunkSource& chunks) const override;
  // Conv1D weights (in, out), as Hugging Face stores them.
  std::vector<HostTensor> hf_tensors() const override;
  absl::StatusOr<std::vector<HostTensor>> export_chunk(actors::ChunkSource& chunks, size_t c,
                                                       bool gradients) const override;

 private:
  ModelConfig config_;
  std::vector<memory::ChunkLayout> layouts_;
};

// GPT-2's layer program on one backend: the activations for micro-batches of
// up to max_batch windows and the passes over a ChunkSource.
class Gpt2Program final : public actors::LayerProgram {
 public:
  // Allocates the activations (kResourceExhausted when the arena budget is too small).
  static absl::StatusOr<std::unique_ptr<Gpt2Program>> create(kernels::Backend* backend,
                                                             const ModelConfig& config,
                                                             int max_batch);
  ~Gpt2Program() override;
  Gpt2Program(const Gpt2Program&) = delete;
  Gpt2Program& operator=(const Gpt2Program&) = delete;

  // Of the device bytes a pass needs besides the chunks: the activations and
  // the gradient visit buffer.
  static size_t activation_bytes_needed(const ModelConfig& config, int max_batch);

  void set_chunk_source(actors::ChunkSource* source) override { source_ = source; }
  absl::StatusOr<float> forward(const int32_t* inputs, const int32_t* targets, int B) override;
  double last_loss_sum() const override { return last_loss_sum_; }
  absl::Status backward(float dloss) override;

  const ModelConfig& config() const { return config_; }
  const std::vector<memory::ChunkLayout>& layouts() const { return layouts_; }

 private:
  struct Activations;
  Gpt2Program(kernels::Backend* backend, const ModelConfig& config, int max_batch);
  absl::Status allocate();
  size_t tensor_offset(size_t chunk, size_t tensor) const {
    return layouts_[chunk].tensors()[tensor].offset_elems;
  }
  // Per-layer activations kept for backward: one set per layer, or with
  // checkpointing one set reused by every layer (recomputed in backward).
  size_t act_slot(int l) const { return config_.activation_checkpointing ? 0 : l; }
  void block_forward(int l, const float* P, const float* residual_in, int B);
  absl::Status block_backward(int l, const float* P, float* G, const float* residual_in,
                              float* dresidual, int B);

  kernels::Backend* backend_;
  ModelConfig config_;
  int max_batch_;
  std::vector<memory::ChunkLayout> layouts_;
  std::unique_ptr<Activations> acts_;
  float* visit_ = nullptr;  // (largest chunk) one gradient visit
  actors::ChunkSource* source_ = nullptr;
  int last_batch_ = 0;
  double last_loss_sum_ = 0;
};

}  // namespace dsinf::trainer
