// The Llama architecture and its relatives (model.type llama, mistral, qwen2,
// qwen3): token embedding, per layer RMSNorm -> grouped-query attention with
// rotary embeddings -> residual -> RMSNorm -> SwiGLU MLP -> residual, a final
// RMSNorm and an lm_head tied to the embedding or not. The families differ
// only in flags of ModelConfig: biases on q/k/v (qwen2), on every projection
// (attention_bias, mlp_bias), per-head RMSNorm of q and k before RoPE (qwen3).
//
// Chunks, tensors named as Hugging Face names them, matrices (out, in):
//   chunk 0       model.embed_tokens.weight (V,C)
//   chunk 1..L    model.layers.{l}.: input_layernorm (C); self_attn.{q,k,v}_proj weight
//                 (NH*D,C), (KV*D,C), (KV*D,C) [+ biases]; self_attn.o_proj (C,NH*D) [+ bias];
//                 [self_attn.q_norm, k_norm (D)]; post_attention_layernorm (C);
//                 mlp.{gate,up}_proj (I,C), mlp.down_proj (C,I) [+ biases]
//   chunk L+1     model.norm.weight (C) [, lm_head.weight (V,C) when untied]
// With LoRA (ModelConfig::lora) those chunks are the frozen base, followed by
//   chunk L+2+l   layer l's adapters: per targeted projection m, in layer order,
//                 model.layers.{l}.{self_attn|mlp}.{m}.lora_A.weight (r, in) and
//                 ...lora_B.weight (out, r)
//   then          a trained copy per lora.modules_to_save: lm_head (V,C), then embed_tokens (V,C),
//                 named {module}.modules_to_save.default.weight as PEFT's wrapper names them.
// B batch, T window, C hidden_size, NH heads, KV key/value heads, D head_dim,
// I intermediate_size, V vocab_size, L layers.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "actors/runtime/model.h"
#include "kernels/backend.h"
#include "memory/chunk_layout.h"
#include "trainer/config/config.h"
#include "trainer/models/model.h"
#include "trainer/models/program_buffers.h"

namespace dsinf::trainer {

// Where each tensor of a layer chunk is (index into the layout), -1 when the
// configuration has no such tensor.
struct LlamaBlockTensors {
  int ln1 = -1, wq = -1, bq = -1, wk = -1, bk = -1, wv = -1, bv = -1, wo = -1, bo = -1;
  int q_norm = -1, k_norm = -1, ln2 = -1;
  int w_gate = -1, b_gate = -1, w_up = -1, b_up = -1, w_down = -1, b_down = -1;
};

// LoRA's projections, in the order of lora_module_names().
enum LoraModule { kLoraQ, kLoraK, kLoraV, kLoraO, kLoraGate, kLoraUp, kLoraDown, kLoraModules };

// Where LoRA's tensors are: indices into an adapter chunk's layout (-1: not
// targeted) and chunk indices (-1: absent).
struct LlamaLoraTensors {
  bool enabled = false;
  std::array<int, kLoraModules> a{-1, -1, -1, -1, -1, -1, -1};
  std::array<int, kLoraModules> b{-1, -1, -1, -1, -1, -1, -1};
  size_t base_chunks = 0;  // L + 2: the base's chunks come first (with or without LoRA)
  int lm_head_copy = -1, embed_copy = -1;
  size_t adapter_chunk(int l) const { return base_chunks + static_cast<size_t>(l); }
};

// A projection's input and output widths.
struct LoraShape {
  int64_t in = 0, out = 0;
};
LoraShape lora_shape(const ModelConfig& c, int module);
// "model.layers.{l}.self_attn.q_proj" for module kLoraQ of layer l.
std::string lora_module_path(int l, int module);
// The base's chunk count, and with c.lora.enabled LoRA's chunks appended to
// them (the base's then marked frozen).
LlamaLoraTensors append_lora_layouts(const ModelConfig& c,
                                     std::vector<memory::ChunkLayout>& layouts);

// Rotary tables for positions [0, T): cos and sin (T, D/2) of position x the
// scaled inverse frequency, computed in double and rounded once to float.
struct RopeTables {
  std::vector<float> cos, sin;
};
RopeTables make_rope_tables(const ModelConfig& config, int T);
// The inverse frequencies (D/2) after rope_scaling, as Hugging Face computes them.
std::vector<double> rope_inverse_frequencies(const ModelConfig& config);

class LlamaModel final : public Model {
 public:
  explicit LlamaModel(const ModelConfig& config);
  static std::vector<memory::ChunkLayout> make_layouts(const ModelConfig& config,
                                                       LlamaBlockTensors* block = nullptr,
                                                       LlamaLoraTensors* lora = nullptr);

  std::string describe() const override;
  std::string shape_text() const override;
  std::vector<memory::ChunkLayout> layouts() const override { return layouts_; }
  // A tied embedding is the logits' weight too: two visits.
  int grad_visits(size_t c) const override;
  size_t num_parameters() const override;
  int seq_len() const override { return config_.window(); }
  int vocab_size() const override { return config_.vocab_size; }
  double flops_per_token() const override;
  size_t activation_bytes(int max_batch) const override;
  absl::StatusOr<std::unique_ptr<actors::LayerProgram>> instantiate(kernels::Backend* backend,
                                                                    int max_batch) const override;
  // As Hugging Face's LlamaPreTrainedModel: matrices and the embedding
  // N(0, 0.02), biases 0, RMSNorm weights 1. Deterministic for a seed.
  absl::Status init_random(uint64_t seed, actors::ChunkSource& chunks) const override;
  // Every tensor by its Hugging Face name; lm_head.weight of a tied model is
  // accepted when equal to the embedding; rotary_emb.inv_freq buffers ignored.
  absl::Status load_hf(const TensorReader& reader, actors::ChunkSource& chunks) const override;
  std::vector<HostTensor> hf_tensors() const override;
  // With LoRA: the base's tensors with W + scale * B A folded in (and the
  // trained copies of modules_to_save in place of their originals); adapter
  // chunks give none. Gradients: the chunk's own tensors (a frozen chunk none).
  absl::StatusOr<std::vector<HostTensor>> export_chunk(actors::ChunkSource& chunks, size_t c,
                                                       bool gradients) const override;
  absl::StatusOr<std::vector<HostTensor>> adapter_tensors(
      actors::ChunkSource& chunks) const override;
  absl::Status load_adapter(const TensorReader& reader, actors::ChunkSource& chunks) const override;
  size_t base_chunks() const override { return lora_.enabled ? lora_.base_chunks : 0; }
  // The base's last chunk: the final norm [and lm_head].
  size_t final_chunk() const { return lora_.base_chunks - 1; }

 private:
  // LoRA's chunks after the base's chunk c went in as `host`: the trained
  // copies of modules_to_save, and layer adapters (A Kaiming-uniform, B zero).
  absl::Status init_lora_after(size_t c, const std::vector<float>& host,
                               actors::ChunkSource& chunks) const;
  absl::Status init_adapter(int l, actors::ChunkSource& chunks) const;
  absl::Status merge_into(size_t c, std::vector<HostTensor>& tensors,
                          actors::ChunkSource& chunks) const;

  ModelConfig config_;
  std::vector<memory::ChunkLayout> layouts_;
  LlamaLoraTensors lora_;
};

// The layer program on one backend.
class LlamaProgram final : public actors::LayerProgram {
 public:
  static absl::StatusOr<std::unique_ptr<LlamaProgram>> create(kernels::Backend* backend,
                                                              const ModelConfig& config,
                                                              int max_batch);
  ~LlamaProgram() override;
  LlamaProgram(const LlamaProgram&) = delete;
  LlamaProgram& operator=(const LlamaProgram&) = delete;
  static size_t activation_bytes_needed(const ModelConfig& config, int max_batch);

  void set_chunk_source(actors::ChunkSource* source) override { source_ = source; }
  absl::StatusOr<float> forward(const int32_t* inputs, const int32_t* targets, int B) override;
  double last_loss_sum() const override { return last_loss_sum_; }
  absl::Status backward(float dloss) override;
  void set_dropout_key(std::optional<uint64_t> key) override { dropout_key_ = key; }
  struct Activations;  // defined in llama_program.cc

 private:
  LlamaProgram(kernels::Backend* backend, const ModelConfig& config, int max_batch);
  // Declares every buffer in `buffers` (sizes for max_batch windows).
  static void declare(ProgramBuffers& buffers, Activations& a, const ModelConfig& c, int max_batch);
  absl::Status upload_rope_tables();
  // A layer's chunks on the device: its base parameters P, and with LoRA its
  // adapters Ad; gradient visits G (null: the base is frozen) and GA.
  struct LayerChunks {
    const float* P = nullptr;
    float* G = nullptr;
    const float* Ad = nullptr;
    float* GA = nullptr;
  };
  // Null for a null base or an absent tensor (index -1).
  const float* tensor(const float* base, size_t chunk, int index) const;
  float* tensor(float* base, size_t chunk, int index) const;
  size_t act_slot(int l) const { return config_.activation_checkpointing ? 0 : l; }
  // The dropout of LoRA module m of layer l this micro-batch: its probability
  // (0 in evaluation) and mask key.
  float lora_dropout() const;
  uint64_t mask_key(int l, int m) const;
  // out (N, out) = in W^T + b [+ scale * (dropout(in) A^T) B^T when module m has an adapter].
  void project(float* out, const float* in, const LayerChunks& lc, int l, int m, int w, int b,
               int N);
  // din += d(in); the weight's and the adapter's gradients into G and GA where present.
  absl::Status project_backward(float* din, const float* dout, const float* in,
                                const LayerChunks& lc, int l, int m, int w, int b, int N);
  void block_forward(int l, const LayerChunks& lc, const float* residual_in, int B);
  absl::Status attention_backward(int l, const LayerChunks& lc, int B);
  absl::Status block_backward(int l, const LayerChunks& lc, const float* residual_in, int B);
  absl::Status layer_backward(int l, int B);
  absl::Status head_backward(int B);
  // body(G) with chunk c's gradient visit, or body(nullptr) for a frozen chunk.
  template <typename Body>
  absl::Status visit(size_t c, Body&& body);
  // Chunk c on the device for body(P), released after.
  template <typename Body>
  absl::Status with_chunk(size_t c, Body&& body);

  kernels::Backend* backend_;
  ModelConfig config_;
  int max_batch_;
  std::vector<memory::ChunkLayout> layouts_;
  LlamaBlockTensors block_;
  LlamaLoraTensors lora_;
  std::optional<uint64_t> dropout_key_;
  std::unique_ptr<Activations> acts_;
  ProgramBuffers buffers_;
  actors::ChunkSource* source_ = nullptr;
  int last_batch_ = 0;
  double last_loss_sum_ = 0;
};

}  // namespace dsinf::trainer
