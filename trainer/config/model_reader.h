// Reading the model section: the family's shape keys from the dsinf config
// and, when model.init_from is a Hugging Face directory, from its
// config.json, which must agree where both give a key.
#pragma once

#include "nlohmann/json.hpp"
#include "trainer/config/config_reader.h"
#include "trainer/config/model_config.h"

namespace dsinf::trainer::config_internal {

// Reads top's "model" section into *m (shape keys resolved: n_kv_head and
// head_dim never 0 for a decoder family).
void read_model(ObjectReader& top, ModelConfig* m);
// Reads top's "lora" section into m->lora (before read_model, which keeps it).
void read_lora(ObjectReader& top, ModelConfig* m);
// The lora section against the model: a decoder family, untied embeddings
// for modules_to_save, model.adapter_from only with LoRA.
void check_lora(Diagnostics* diag, const ModelConfig& m);
// Cross-key rules of the model section and data.seq_len (resolving
// m->seq_len from `seq_len`, 0 when absent).
void check_model(Diagnostics* diag, ModelConfig* m, int64_t seq_len);

}  // namespace dsinf::trainer::config_internal

namespace dsinf::trainer {

// The shape keys of a model with its family's Hugging Face names, in a fixed
// order (checkpoints record them; export writes them into config.json). For
// GPT-2: type, n_layer, n_head, n_embd, n_positions, vocab_size.
nlohmann::ordered_json shape_keys(const ModelConfig& m);
// A Hugging Face config.json for the model: model_type, architectures, the
// shape keys and the constants dsinf computes with (hidden_act,
// activation_function), with torch_dtype "float32" or "bfloat16".
nlohmann::ordered_json hf_config_json(const ModelConfig& m, const std::string& torch_dtype);

}  // namespace dsinf::trainer
