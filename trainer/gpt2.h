// GPT-2 (learned positions, pre-LayerNorm, tanh GELU, causal attention, tied
// embeddings) over the backend interface. Parameters live in chunks, one per
// layer, each one flat page-aligned buffer in the backend's arena:
//   chunk 0        "embed": wte (V,C), wpe (T,C)
//   chunk 1..L     "h.{l}": ln_1 w,b (C); attn.c_attn w (3C,C) b (3C); attn.c_proj w (C,C) b (C);
//                           ln_2 w,b (C); mlp.c_fc w (4C,C) b (4C); mlp.c_proj w (C,4C) b (C)
//   chunk L+1      "ln_f": weight, bias (C)
// Matrix weights are stored (out, in); Hugging Face's Conv1D stores (in, out)
// and load_hf/export_hf transpose. Gradients use the same layouts.
// B batch, T = n_positions, C = n_embd, NH = n_head, V = vocab_size, L = n_layer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "memory/chunk_layout.h"
#include "trainer/chunk_source.h"
#include "trainer/config.h"
#include "trainer/safetensors.h"

namespace dsinf::trainer {

struct HostTensor {
  std::string name;  // Hugging Face GPT2LMHeadModel name, e.g. "transformer.h.0.attn.c_attn.weight"
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// Parameters and gradients resident on the device for the whole step (stage 0):
// the source GPT2 uses unless set_chunk_source() names another.
class ResidentChunks final : public ChunkSource {
 public:
  ResidentChunks(kernels::Backend* backend, const std::vector<float*>& params,
                 const std::vector<float*>& grads, const std::vector<memory::ChunkLayout>& layouts)
      : backend_(backend), params_(params), grads_(grads), layouts_(layouts) {}
  absl::StatusOr<const float*> acquire_params(size_t c) override { return params_[c]; }
  absl::Status release_params(size_t) override { return absl::OkStatus(); }
  absl::Status accumulate_grads(size_t c, const float* visit) override;
  absl::Status write_params(size_t c, const float* host) override;
  absl::Status read_chunk(size_t c, bool gradients, float* host) override;

 private:
  kernels::Backend* backend_;
  const std::vector<float*>& params_;
  const std::vector<float*>& grads_;
  const std::vector<memory::ChunkLayout>& layouts_;
};

class GPT2 {
 public:
  // Allocates parameters, gradients and activations for micro-batches of up
  // to max_batch windows (with config.activation_checkpointing, one layer's
  // activations plus each layer's output). kResourceExhausted when the arena
  // budget is too small.
  // With resident_chunks false only the activations are allocated: parameters
  // and gradients live wherever the ChunkSource set before use keeps them.
  static absl::StatusOr<std::unique_ptr<GPT2>> create(kernels::Backend* backend,
                                                      const ModelConfig& config, int max_batch,
                                                      bool resident_chunks = true);
  ~GPT2();
  GPT2(const GPT2&) = delete;
  GPT2& operator=(const GPT2&) = delete;

  // The chunk layouts of a model of this shape.
  static std::vector<memory::ChunkLayout> make_layouts(const ModelConfig& config);
  // Bytes create() would allocate in the backend's arena.
  static size_t device_bytes_needed(const ModelConfig& config, int max_batch);
  // Of those, the activations and the gradient visit buffer: what a pass needs
  // on the device besides the chunks themselves.
  static size_t activation_bytes_needed(const ModelConfig& config, int max_batch);

  // Forward, backward, initialisation, loading and export take parameters from,
  // and leave gradients with, `source` (not owned; null: the resident chunks).
  void set_chunk_source(ChunkSource* source) { source_ = source ? source : &resident_; }

  // Seeded GPT-2 initialisation: N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)),
  // biases 0, LayerNorm weights 1. Deterministic for a seed on every machine.
  absl::Status init_random(uint64_t seed);
  // Loads Hugging Face GPT2LMHeadModel tensors (with or without the "transformer." prefix;
  // lm_head.weight optional, must equal wte when present; attn.bias/masked_bias ignored).
  absl::Status load_hf(const SafetensorsFile& file);
  // All parameters (or their gradients) with Hugging Face names and layouts
  // (Conv1D weights (in, out)).
  absl::StatusOr<std::vector<HostTensor>> export_hf(bool gradients = false);

  // Forward over B windows of T tokens (host arrays of B*T ids). Returns the mean
  // token cross-entropy and keeps the activations for backward().
  absl::StatusOr<float> forward(const int32_t* inputs, const int32_t* targets, int B);
  // Sum over the B*T tokens of the last forward of the per-token losses, in double.
  double last_loss_sum() const { return last_loss_sum_; }
  // Adds d(loss_sum * dloss)/d(params) to the gradients (accumulates across calls).
  absl::Status backward(float dloss);
  absl::Status zero_grad();

  const ModelConfig& config() const { return config_; }
  const std::vector<memory::ChunkLayout>& layouts() const { return layouts_; }
  size_t num_chunks() const { return layouts_.size(); }
  bool resident_chunks() const { return !params_.empty(); }
  // The resident chunks (resident_chunks() only).
  float* param_chunk(size_t i) { return params_[i]; }
  float* grad_chunk(size_t i) { return grads_[i]; }
  size_t num_parameters() const;  // excluding padding
  kernels::Backend* backend() const { return backend_; }

 private:
  struct Activations;
  GPT2(kernels::Backend* backend, const ModelConfig& config, int max_batch);
  absl::Status allocate(bool resident_chunks);
  float* param(size_t chunk, size_t tensor) {
    return params_[chunk] + tensor_offset(chunk, tensor);
  }
  float* grad(size_t chunk, size_t tensor) { return grads_[chunk] + tensor_offset(chunk, tensor); }
  size_t tensor_offset(size_t chunk, size_t tensor) const {
    return layouts_[chunk].tensors()[tensor].offset_elems;
  }
  // Per-layer activations kept for backward: one set per layer, or with
  // checkpointing one set reused by every layer (recomputed in backward).
  size_t act_slot(int l) const { return config_.activation_checkpointing ? 0 : l; }
  void block_forward(int l, const float* P, const float* residual_in, int B);
  absl::Status block_backward(int l, const float* P, float* G, const float* residual_in,
                              float* dresidual, int B);
  // Zeroes the visit buffer for chunk c, runs `body` (which adds c's gradient
  // into it), and hands the visit to the source.
  template <typename Body>
  absl::Status grad_visit(size_t c, Body&& body);

  kernels::Backend* backend_;
  ModelConfig config_;
  int max_batch_;
  std::vector<memory::ChunkLayout> layouts_;
  std::vector<float*> params_;
  std::vector<float*> grads_;
  std::unique_ptr<Activations> acts_;
  float* visit_ = nullptr;  // (largest chunk) one gradient visit
  ResidentChunks resident_{backend_, params_, grads_, layouts_};
  ChunkSource* source_ = &resident_;
  int last_batch_ = 0;
  double last_loss_sum_ = 0;
};

}  // namespace dsinf::trainer
