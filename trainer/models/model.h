// A model family's model of one shape, as the front knows it: the runtime's
// ModelDef (chunks, activations, the layer program, initialisation) plus its
// Hugging Face weights in and out. A family is one folder under
// trainer/models and one row in registry.cc.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "actors/runtime/model.h"
#include "trainer/config/config.h"
#include "trainer/models/safetensors.h"

namespace dsinf::trainer {

// A tensor in host memory with its Hugging Face name and layout.
struct HostTensor {
  std::string name;  // e.g. "transformer.h.0.attn.c_attn.weight"
  std::vector<int64_t> shape;
  std::vector<float> data;
};

class Model : public actors::ModelDef {
 public:
  // "gpt2 n_layer=6 n_head=6 ...": what an export's metadata names.
  virtual std::string shape_text() const = 0;
  // Every tensor of a Hugging Face checkpoint file into its chunk, through
  // `chunks`. kInvalidArgument naming the file and the tensor when one is
  // missing, extra, or of the wrong shape.
  virtual absl::Status load_hf(const TensorReader& reader, actors::ChunkSource& chunks) const = 0;
  // The tensors export_chunk gives, chunk after chunk, without their data.
  virtual std::vector<HostTensor> hf_tensors() const = 0;
  // Chunk c's parameters (or gradients) with Hugging Face names and layouts.
  virtual absl::StatusOr<std::vector<HostTensor>> export_chunk(actors::ChunkSource& chunks,
                                                               size_t c, bool gradients) const = 0;
  // LoRA: the adapters (and modules_to_save copies) with PEFT's names
  // ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").
  virtual absl::StatusOr<std::vector<HostTensor>> adapter_tensors(
      actors::ChunkSource& chunks) const {
    (void)chunks;
    return absl::FailedPreconditionError("the model has no LoRA adapters (no lora section)");
  }
  // A PEFT adapter_model.safetensors into the adapter chunks: kInvalidArgument
  // naming the file and the tensor when one is missing, extra or misshapen.
  virtual absl::Status load_adapter(const TensorReader& reader, actors::ChunkSource& chunks) const {
    (void)reader;
    (void)chunks;
    return absl::FailedPreconditionError("the model has no LoRA adapters (no lora section)");
  }
  // The chunks of the frozen base, first in the layout (0: no frozen base).
  virtual size_t base_chunks() const { return 0; }
  // Every chunk's, in one list (small models and tests).
  absl::StatusOr<std::vector<HostTensor>> export_hf(actors::ChunkSource& chunks,
                                                    bool gradients) const {
    std::vector<HostTensor> out;
    for (size_t c = 0; c < layouts().size(); ++c) {
      absl::StatusOr<std::vector<HostTensor>> part = export_chunk(chunks, c, gradients);
      if (!part.ok()) return part.status();
      for (HostTensor& t : *part) out.push_back(std::move(t));
    }
    return out;
  }
};

// The model `config.type` names: kInvalidArgument naming model.type for a
// family dsinf does not have.
absl::StatusOr<std::unique_ptr<Model>> make_model(const ModelConfig& config);

// Text generation (dsinf generate, chat): one sequence's key/value cache on
// the device and passes over the model's chunks that append tokens to it.
// Parameters come from a ChunkSource chunk by chunk in the layer program's
// order, so a model larger than the device streams its weights from host or
// NVMe as the training forward does (ZeRO-Inference).
class Decoder {
 public:
  virtual ~Decoder() = default;
  // Positions the cache holds: model.max_position_embeddings.
  virtual int max_positions() const = 0;
  virtual int vocab_size() const = 0;
  // 2 x layers x max_positions x KV heads x head_dim x 4 bytes (fp32, batch 1).
  virtual size_t kv_cache_bytes() const = 0;
  // Device bytes bind() allocates: the cache and the buffers of a pass of up
  // to max_positions tokens (page aligned, as the arena takes them).
  virtual size_t device_bytes() const = 0;
  // Allocates in `backend`'s arena and reads parameters from `source` (not
  // owned): kResourceExhausted when the budget is too small.
  virtual absl::Status bind(kernels::Backend* backend, actors::ChunkSource* source) = 0;
  // Tokens in the cache: the next token's position.
  virtual int position() const = 0;
  // Forgets positions from `positions` on (0: a new sequence); the cache
  // below it stays valid.
  virtual void truncate(int positions) = 0;
  // Appends `tokens` at positions [position(), position() + n) in one pass and
  // writes the logits (vocab) of the last one into `logits`. kInvalidArgument
  // for an id outside the vocabulary or past max_positions.
  virtual absl::Status append(const std::vector<int32_t>& tokens, std::vector<float>& logits) = 0;
};

// The decoder of `config`'s family: kUnimplemented for GPT-2 (generation
// supports the llama family) and for LoRA configs.
absl::StatusOr<std::unique_ptr<Decoder>> make_decoder(const ModelConfig& config);

}  // namespace dsinf::trainer
