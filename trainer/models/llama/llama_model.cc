// The Llama family's definition: chunks, rotary tables, initialisation, and
// Hugging Face weights in and out.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "trainer/models/llama/llama.h"
#include "trainer/models/rng.h"

namespace dsinf::trainer {

LlamaModel::LlamaModel(const ModelConfig& config)
    : config_(config) {
  // lora_ is a member initialised after layouts_: fill both here.
  layouts_ = make_layouts(config, nullptr, &lora_);
}

std::vector<memory::ChunkLayout> LlamaModel::make_layouts(const ModelConfig& c,
                                                          LlamaBlockTensors* block,
                                                          LlamaLoraTensors* lora) {
  const int64_t C = c.n_embd, V = c.vocab_size, D = c.head_dim, I = c.intermediate_size;
  const int64_t Q = static_cast<int64_t>(c.n_head) * D, K = static_cast<int64_t>(c.n_kv_head) * D;
  std::vector<memory::ChunkLayout> layouts;
  memory::ChunkLayout embed(sizeof(float));
  embed.add("model.embed_tokens.weight", {V, C});
  layouts.push_back(std::move(embed));
  LlamaBlockTensors b;
  for (int l = 0; l < c.n_layer; ++l) {
    memory::ChunkLayout layer(sizeof(float));
    const std::string p = absl::StrCat("model.layers.", l, ".");
    auto add = [&](const char* name, std::vector<int64_t> shape, bool present = true) {
      return present ? static_cast<int>(layer.add(p + name, std::move(shape))) : -1;
    };
    const bool qkv_bias = c.qkv_bias || c.attention_bias;
    b.ln1 = add("input_layernorm.weight", {C});
    b.wq = add("self_attn.q_proj.weight", {Q, C});
    b.bq = add("self_attn.q_proj.bias", {Q}, qkv_bias);
    b.wk = add("self_attn.k_proj.weight", {K, C});
    b.bk = add("self_attn.k_proj.bias", {K}, qkv_bias);
    b.wv = add("self_attn.v_proj.weight", {K, C});
    b.bv = add("self_attn.v_proj.bias", {K}, qkv_bias);
    b.wo = add("self_attn.o_proj.weight", {C, Q});
    b.bo = add("self_attn.o_proj.bias", {C}, c.attention_bias);
    b.q_norm = add("self_attn.q_norm.weight", {D}, c.qk_norm);
    b.k_norm = add("self_attn.k_norm.weight", {D}, c.qk_norm);
    b.ln2 = add("post_attention_layernorm.weight", {C});
    b.w_gate = add("mlp.gate_proj.weight", {I, C});
    b.b_gate = add("mlp.gate_proj.bias", {I}, c.mlp_bias);
    b.w_up = add("mlp.up_proj.weight", {I, C});
    b.b_up = add("mlp.up_proj.bias", {I}, c.mlp_bias);
    b.w_down = add("mlp.down_proj.weight", {C, I});
    b.b_down = add("mlp.down_proj.bias", {C}, c.mlp_bias);
    layouts.push_back(std::move(layer));
  }
  if (block != nullptr) *block = b;
  memory::ChunkLayout final_chunk(sizeof(float));
  final_chunk.add("model.norm.weight", {C});
  if (!c.tie_word_embeddings) final_chunk.add("lm_head.weight", {V, C});
  layouts.push_back(std::move(final_chunk));
  const LlamaLoraTensors adapters = append_lora_layouts(c, layouts);
  if (lora != nullptr) *lora = adapters;
  return layouts;
}

std::vector<double> rope_inverse_frequencies(const ModelConfig& c) {
  const int half = c.head_dim / 2;
  const RopeScaling& s = c.rope_scaling;
  std::vector<double> inv(half);
  for (int i = 0; i < half; ++i) {
    inv[i] = 1.0 / std::pow(c.rope_theta, 2.0 * i / static_cast<double>(c.head_dim));
    if (s.type == "linear") inv[i] /= s.factor;
    if (s.type != "llama3") continue;
    // Llama 3.1: long wavelengths scaled by 1/factor, short ones kept, a smooth blend between.
    const double old_context = static_cast<double>(s.original_max_position_embeddings);
    const double wavelen = 2.0 * std::numbers::pi / inv[i];
    const double low_freq_wavelen = old_context / s.low_freq_factor;
    const double high_freq_wavelen = old_context / s.high_freq_factor;
    if (wavelen > low_freq_wavelen) {
      inv[i] /= s.factor;
    } else if (wavelen >= high_freq_wavelen) {
      const double smooth =
          (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      inv[i] = (1.0 - smooth) * inv[i] / s.factor + smooth * inv[i];
    }
  }
  return inv;
}

RopeTables make_rope_tables(const ModelConfig& c, int T) {
  const std::vector<double> inv = rope_inverse_frequencies(c);
  const size_t half = inv.size();
  RopeTables tables{std::vector<float>(T * half), std::vector<float>(T * half)};
  for (int t = 0; t < T; ++t) {
    for (size_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(t) * inv[i];
      tables.cos[t * half + i] = static_cast<float>(std::cos(angle));
      tables.sin[t * half + i] = static_cast<float>(std::sin(angle));
    }
  }
  return tables;
}

std::string LlamaModel::describe() const {
  return absl::StrFormat(
      "%s %d layers, %d heads (%d key/value), head_dim %d, hidden %d, intermediate %d, "
      "vocab %d%s",
      config_.type, config_.n_layer, config_.n_head, config_.n_kv_head, config_.head_dim,
      config_.n_embd, config_.intermediate_size, config_.vocab_size,
      config_.tie_word_embeddings ? ", tied embeddings" : "");
}

std::string LlamaModel::shape_text() const {
  return absl::StrFormat(
      "%s num_hidden_layers=%d num_attention_heads=%d num_key_value_heads=%d head_dim=%d "
      "hidden_size=%d intermediate_size=%d vocab_size=%d tie_word_embeddings=%d",
      config_.type, config_.n_layer, config_.n_head, config_.n_kv_head, config_.head_dim,
      config_.n_embd, config_.intermediate_size, config_.vocab_size,
      config_.tie_word_embeddings ? 1 : 0);
}

size_t LlamaModel::num_parameters() const {
  size_t n = 0;
  for (const memory::ChunkLayout& layout : layouts_) {
    for (const memory::TensorSlot& t : layout.tensors()) n += t.numel;
  }
  return n;
}

// PaLM's accounting: 6 x parameters (the embedding lookup is no product, but
// a tied embedding is the lm_head's) plus attention's two products,
// 12 x layers x (NH x D) x T, halved for the causal mask's skipped half.
// A frozen parameter costs 4 (forward, and the input's gradient; no weight
// gradient), LoRA's trained ones 6.
double LlamaModel::flops_per_token() const {
  double frozen = 0, trained = 0;
  for (const memory::ChunkLayout& layout : layouts_) {
    for (const memory::TensorSlot& t : layout.tensors()) {
      (layout.trainable() ? trained : frozen) += static_cast<double>(t.numel);
    }
  }
  const double embedding = static_cast<double>(config_.vocab_size) * config_.n_embd;
  if (!config_.tie_word_embeddings) (lora_.enabled ? frozen : trained) -= embedding;
  if (lora_.embed_copy >= 0) trained -= embedding;
  if (lora_.lm_head_copy >= 0) frozen -= embedding;  // the copy computes the logits
  const double attention = 12.0 * config_.n_layer * static_cast<double>(config_.n_head) *
                           config_.head_dim * config_.window() / 2.0;
  return 4.0 * frozen + 6.0 * trained + attention;
}

int LlamaModel::grad_visits(size_t c) const {
  return c == 0 && config_.tie_word_embeddings ? 2 : 1;
}

size_t LlamaModel::activation_bytes(int max_batch) const {
  return LlamaProgram::activation_bytes_needed(config_, max_batch);
}

absl::StatusOr<std::unique_ptr<actors::LayerProgram>> LlamaModel::instantiate(
    kernels::Backend* backend, int max_batch) const {
  absl::StatusOr<std::unique_ptr<LlamaProgram>> program =
      LlamaProgram::create(backend, config_, max_batch);
  if (!program.ok()) return program.status();
  return std::unique_ptr<actors::LayerProgram>(*std::move(program));
}

absl::Status LlamaModel::init_random(uint64_t seed, actors::ChunkSource& chunks) const {
  Rng rng(seed);
  for (size_t c = 0; c < lora_.base_chunks; ++c) {
    std::vector<float> host(layouts_[c].numel_padded(), 0.0f);
    for (const memory::TensorSlot& slot : layouts_[c].tensors()) {
      float* dst = host.data() + slot.offset_elems;
      if (slot.shape.size() == 2) {
        for (size_t i = 0; i < slot.numel; ++i) dst[i] = static_cast<float>(rng.normal() * 0.02);
      } else {
        const bool norm = !slot.name.ends_with(".bias");
        std::fill(dst, dst + slot.numel, norm ? 1.0f : 0.0f);
      }
    }
    if (absl::Status s = chunks.write_params(c, host.data()); !s.ok()) return s;
    if (absl::Status s = init_lora_after(c, host, chunks); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status LlamaModel::load_hf(const TensorReader& reader, actors::ChunkSource& chunks) const {
  std::set<std::string> expected;
  for (size_t c = 0; c < lora_.base_chunks; ++c) {
    std::vector<float> host(layouts_[c].numel_padded(), 0.0f);
    for (const memory::TensorSlot& slot : layouts_[c].tensors()) {
      if (reader.find(slot.name) == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat(reader.where(), ": missing tensor '", slot.name, "' (", describe(), ")"));
      }
      absl::StatusOr<std::vector<float>> values = reader.read_f32(slot.name, slot.shape);
      if (!values.ok()) return values.status();
      std::copy(values->begin(), values->end(), host.data() + slot.offset_elems);
      expected.insert(slot.name);
    }
    if (absl::Status s = chunks.write_params(c, host.data()); !s.ok()) return s;
    if (absl::Status s = init_lora_after(c, host, chunks); !s.ok()) return s;
  }
  if (config_.tie_word_embeddings && reader.find("lm_head.weight") != nullptr) {
    const memory::TensorSlot& embed = layouts_[0].tensors()[0];
    absl::StatusOr<std::vector<float>> head = reader.read_f32("lm_head.weight", embed.shape);
    absl::StatusOr<std::vector<float>> table = reader.read_f32(embed.name, embed.shape);
    if (!head.ok()) return head.status();
    if (!table.ok()) return table.status();
    if (*head != *table) {
      return absl::InvalidArgumentError(
          absl::StrCat(reader.file_of("lm_head.weight"),
                       ": 'lm_head.weight' differs from the embedding but config.json sets "
                       "tie_word_embeddings true"));
    }
    expected.insert("lm_head.weight");
  }
  for (const std::string& name : reader.names()) {
    if (expected.contains(name) || name.ends_with(".rotary_emb.inv_freq")) continue;
    return absl::InvalidArgumentError(
        absl::StrCat(reader.file_of(name), ": tensor '", name, "' does not belong to a ",
                     describe(), " (check the model's shape keys against the checkpoint)"));
  }
  return absl::OkStatus();
}

std::vector<HostTensor> LlamaModel::hf_tensors() const {
  std::vector<HostTensor> out;
  for (size_t c = 0; c < lora_.base_chunks; ++c) {
    for (const memory::TensorSlot& slot : layouts_[c].tensors())
      out.push_back({slot.name, slot.shape, {}});
  }
  return out;
}

absl::StatusOr<std::vector<HostTensor>> LlamaModel::export_chunk(actors::ChunkSource& chunks,
                                                                 size_t c, bool gradients) const {
  std::vector<HostTensor> out;
  if (gradients && !layouts_[c].trainable()) return out;
  if (!gradients && c >= lora_.base_chunks) return out;  // LoRA's: folded into the base
  std::vector<float> host(layouts_[c].numel_padded());
  if (absl::Status s = chunks.read_chunk(c, gradients, host.data()); !s.ok()) return s;
  for (const memory::TensorSlot& slot : layouts_[c].tensors()) {
    const float* src = host.data() + slot.offset_elems;
    out.push_back({slot.name, slot.shape, std::vector<float>(src, src + slot.numel)});
  }
  if (gradients || !lora_.enabled) return out;
  // A trained copy stands in for its original: export it under the original's name.
  const int copy = c == 0 ? lora_.embed_copy : c == final_chunk() ? lora_.lm_head_copy : -1;
  if (copy >= 0) {
    std::vector<float> saved(layouts_[copy].numel_padded());
    if (absl::Status s = chunks.read_chunk(copy, false, saved.data()); !s.ok()) return s;
    HostTensor& original = c == 0 ? out[0] : out[1];
    std::copy(saved.begin(), saved.begin() + original.data.size(), original.data.begin());
  }
  if (absl::Status s = merge_into(c, out, chunks); !s.ok()) return s;
  return out;
}

}  // namespace dsinf::trainer
