// The model section of the run configuration: which family and which shape.
// Shape keys carry the names of the family's Hugging Face config.json, so a
// dsinf config may repeat what a checkpoint directory's config.json says; when
// model.init_from is such a directory its config.json is read too, and a key
// both give must agree (model_config.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace dsinf::trainer {

// Hugging Face's rope_scaling: "default" (none), "linear" (positions divided
// by factor) or "llama3" (Llama 3.1's frequency-dependent scaling).
struct RopeScaling {
  std::string type = "default";
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

// PEFT's LoraConfig, the `lora` section: low-rank adapters A (r, in) and
// B (out, r) beside the named projections of every layer, over a frozen base:
// y = x W^T + scale * (dropout(x) A^T) B^T. Keys and defaults as PEFT's.
struct LoraConfig {
  bool enabled = false;  // the section is present
  int r = 8;
  double alpha = 8.0;    // lora_alpha
  double dropout = 0.0;  // lora_dropout
  // Resolved: the targeted projections in layer order, out of q_proj, k_proj,
  // v_proj, o_proj, gate_proj, up_proj, down_proj ("all-linear": every one).
  std::vector<std::string> target_modules;
  bool use_rslora = false;  // scale alpha / sqrt(r) instead of alpha / r
  // Modules trained fully beside the adapters: "lm_head", "embed_tokens".
  std::vector<std::string> modules_to_save;

  double scale() const;
  bool targets(const std::string& module) const;
  bool saves(const std::string& module) const;
};

// The projections LoRA can target, in the order a layer uses them.
const std::vector<std::string>& lora_module_names();

struct ModelConfig {
  std::string type = "gpt2";
  // Every family (GPT-2's names; the decoder families' names in brackets).
  int n_layer = 12;        // [num_hidden_layers]
  int n_head = 12;         // [num_attention_heads]
  int n_embd = 768;        // [hidden_size]
  int n_positions = 1024;  // [max_position_embeddings]
  int vocab_size = 50257;  // [vocab_size]
  // The decoder families (llama, mistral, qwen2, qwen3) only.
  int n_kv_head = 0;          // [num_key_value_heads] resolved: never 0 for a decoder
  int head_dim = 0;           // [head_dim] resolved: never 0 for a decoder
  int intermediate_size = 0;  // [intermediate_size]
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // biases on q, k, v and o projections
  bool mlp_bias = false;        // biases on gate, up and down projections
  bool qkv_bias = false;        // biases on q, k, v only (qwen2: always)
  bool qk_norm = false;         // per-head RMSNorm of q and k before RoPE (qwen3: always)

  int seq_len = 0;                   // resolved from data.seq_len: T, the tokens of a window
  std::string init_from;             // empty: seeded initialisation
  bool init_from_directory = false;  // init_from is a Hugging Face model directory
  uint64_t seed = 42;
  LoraConfig lora;
  std::string adapter_from;  // a PEFT adapter directory to start the adapters from
  // Keep only each layer's output in forward and recompute the layer in
  // backward: activation memory no longer grows with depth (dsinf's key).
  bool activation_checkpointing = false;

  // T: data.seq_len once resolved, else the model's n_positions.
  int window() const { return seq_len > 0 ? seq_len : n_positions; }
};

// What the config knows of a model family: its Hugging Face identity, the
// keys its config.json has, and Hugging Face's defaults for them. Adding a
// family of the decoder kind is one row in model_config.cc.
struct FamilyTraits {
  absl::string_view type;                     // model.type, config.json's model_type
  absl::string_view architecture;             // config.json's "architectures" on export
  bool decoder = true;                        // RMSNorm, RoPE, SwiGLU, grouped-query attention
  std::vector<absl::string_view> extra_keys;  // family keys beyond the common decoder ones
  ModelConfig defaults;                       // Hugging Face's defaults (n_kv_head 0: n_head)
};

// The family named `type`, or null.
const FamilyTraits* find_family(absl::string_view type);
// "gpt2, llama, mistral, qwen2, qwen3": for messages.
std::string family_names();
// The parameter count a config gives (without padding), for range checks.
double approx_parameters(const ModelConfig& m);

}  // namespace dsinf::trainer
