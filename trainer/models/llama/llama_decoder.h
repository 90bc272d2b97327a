// Generation for the Llama family: a key/value cache of every layer on the
// device and passes that append tokens to it -- the prompt in one pass (all
// its positions at once), then one token a pass attending to the cache. The
// math is LlamaProgram's forward (llama_program.cc) restricted to the new
// rows: RMSNorm, q/k/v projections [+ q/k norm], RoPE at the rows' positions,
// attention over the cache (DecoderOps::cached_attention_forward), o, SwiGLU
// MLP, residuals; then the final norm and lm_head on the last row only.
//
// A prompt longer than kMaxPassRows takes several passes of that many rows.
// The new rows' keys and values are projected straight into the cache (rows
// [P0, P0 + Tq) of the layer's (max_positions, KV, D) block) and rotated in
// place there, so nothing is copied.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "memory/chunk_layout.h"
#include "trainer/config/model_config.h"
#include "trainer/models/llama/llama.h"
#include "trainer/models/model.h"
#include "trainer/models/program_buffers.h"

namespace dsinf::trainer {

class LlamaDecoder final : public Decoder {
 public:
  // A pass takes at most this many tokens: a longer prompt is appended in
  // several passes (each one visit of every chunk), so a pass's buffers stay
  // small beside the cache when max_position_embeddings is large.
  static constexpr int kMaxPassRows = 1024;
  explicit LlamaDecoder(const ModelConfig& config, int max_pass_rows = kMaxPassRows);
  ~LlamaDecoder() override;

  int max_positions() const override { return config_.n_positions; }
  int vocab_size() const override { return config_.vocab_size; }
  size_t kv_cache_bytes() const override;
  size_t device_bytes() const override;
  absl::Status bind(kernels::Backend* backend, actors::ChunkSource* source) override;
  int position() const override { return position_; }
  void truncate(int positions) override;
  absl::Status append(const std::vector<int32_t>& tokens, std::vector<float>& logits) override;

  struct Buffers;  // llama_decoder.cc

 private:
  // A layer's chunks on the device: its base P and, with LoRA, its adapters Ad.
  struct LayerChunks {
    const float* P = nullptr;
    const float* Ad = nullptr;
  };
  // out (rows, out_dim) = in (rows, in_dim) W^T + b, W and b tensors `weight`
  // and `bias` (-1: none) of chunk `chunk` at P, plus LoRA's
  // scale * (in A^T) B^T when module m (-1: none) of layer l has an adapter at
  // Ad. Every linear projection of the decoder goes through here.
  void project(float* out, const float* in, const float* P, size_t chunk, int weight, int bias,
               int rows, int in_dim, int out_dim, const float* Ad = nullptr, int l = 0,
               int m = -1);
  const float* tensor(const float* P, size_t chunk, int index) const;
  // Chunk c on the device for body(P), released after.
  template <typename Body>
  absl::Status with_chunk(size_t c, Body&& body);
  // Layer l on rows x (Tq, C) of positions [P0, P0 + Tq), in place.
  void layer(int l, const LayerChunks& lc, int P0, int Tq);
  // The final norm of the last row and lm_head into the logits buffer.
  absl::Status head(int Tq);
  // One pass: tokens at positions [position_, position_ + n), n <= pass_rows_.
  absl::Status pass(const std::vector<int32_t>& tokens);
  absl::Status upload_tokens(const std::vector<int32_t>& tokens);
  absl::Status upload_rope_tables();

  ModelConfig config_;
  LlamaBlockTensors block_;  // before layouts_: make_layouts fills it
  LlamaLoraTensors lora_;    // the same
  std::vector<memory::ChunkLayout> layouts_;
  int pass_rows_;  // rows of a pass's buffers
  kernels::Backend* backend_ = nullptr;
  actors::ChunkSource* source_ = nullptr;
  std::unique_ptr<Buffers> bufs_;
  std::unique_ptr<ProgramBuffers> owned_;
  std::vector<int32_t> host_tokens_;  // the source of a pass's token upload, kept past it
  int position_ = 0;
};

}  // namespace dsinf::trainer
