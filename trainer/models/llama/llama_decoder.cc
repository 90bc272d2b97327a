#include "trainer/models/llama/llama_decoder.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "memory/util/check.h"
#include "memory/util/trace.h"

namespace dsinf::trainer {

using kernels::Stream;

// P = max_positions rows of cache; R = the rows of one pass (at most P).
struct LlamaDecoder::Buffers {
  float* k_cache = nullptr;  // (L, P, KV, D)
  float* v_cache = nullptr;  // (L, P, KV, D)
  float* x = nullptr;        // (R, C) the residual stream
  float* ln = nullptr;       // (R, C) a norm's output
  float* rstd = nullptr;     // (R * max(NH, KV)) norms' rstd, never read back
  float* q_raw = nullptr;    // (R, NH*D) qk_norm only
  float* k_raw = nullptr;    // (R, KV*D) qk_norm only
  float* q = nullptr;        // (R, NH*D)
  float* att = nullptr;      // (R, NH*D)
  float* proj = nullptr;     // (R, C) o and down projections
  float* gate = nullptr;     // (R, I)
  float* up = nullptr;       // (R, I)
  float* h = nullptr;        // (R, I)
  float* lnf = nullptr;      // (C) the last row's final norm
  float* logits = nullptr;   // (V)
  float* rope_cos = nullptr;  // (P, D/2)
  float* rope_sin = nullptr;  // (P, D/2)
  int32_t* tokens = nullptr;  // (R)
  float* lora_u = nullptr;    // (R, r) LoRA: in A^T
  float* lora_tmp = nullptr;  // (R, widest output) LoRA: (in A^T) B^T
};

namespace {

void declare(ProgramBuffers& b, LlamaDecoder::Buffers& a, const ModelConfig& c, size_t R) {
  const size_t P = c.n_positions, L = c.n_layer, C = c.n_embd, V = c.vocab_size;
  const size_t NH = c.n_head, KV = c.n_kv_head, D = c.head_dim, I = c.intermediate_size;
  const size_t f = sizeof(float);
  b.add(a.k_cache, L * P * KV * D * f);
  b.add(a.v_cache, L * P * KV * D * f);
  b.add(a.x, R * C * f);
  b.add(a.ln, R * C * f);
  b.add(a.rstd, R * std::max(NH, KV) * f);
  if (c.qk_norm) {
    b.add(a.q_raw, R * NH * D * f);
    b.add(a.k_raw, R * KV * D * f);
  }
  b.add(a.q, R * NH * D * f);
  b.add(a.att, R * NH * D * f);
  b.add(a.proj, R * C * f);
  b.add(a.gate, R * I * f);
  b.add(a.up, R * I * f);
  b.add(a.h, R * I * f);
  b.add(a.lnf, C * f);
  b.add(a.logits, V * f);
  b.add(a.rope_cos, P * (D / 2) * f);
  b.add(a.rope_sin, P * (D / 2) * f);
  b.add(a.tokens, R * sizeof(int32_t));
  if (!c.lora.enabled) return;
  size_t widest = 0;
  for (int m = 0; m < kLoraModules; ++m) {
    if (c.lora.targets(lora_module_names()[m])) {
      widest = std::max<size_t>(widest, lora_shape(c, m).out);
    }
  }
  b.add(a.lora_u, R * c.lora.r * f);
  b.add(a.lora_tmp, R * widest * f);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> make_decoder(const ModelConfig& config) {
  const FamilyTraits* family = find_family(config.type);
  if (family == nullptr || !family->decoder) {
    return absl::UnimplementedError(absl::StrCat(
        "model.type ", config.type,
        ": generation supports the llama family (llama, mistral, qwen2, qwen3)"));
  }
  return std::make_unique<LlamaDecoder>(config);
}

LlamaDecoder::LlamaDecoder(const ModelConfig& config, int max_pass_rows)
    : config_(config),
      layouts_(LlamaModel::make_layouts(config, &block_, &lora_)),
      pass_rows_(std::clamp(config.n_positions, 1, std::max(max_pass_rows, 1))) {}

LlamaDecoder::~LlamaDecoder() = default;

size_t LlamaDecoder::kv_cache_bytes() const {
  return size_t{2} * config_.n_layer * config_.n_positions * config_.n_kv_head * config_.head_dim *
         sizeof(float);
}

size_t LlamaDecoder::device_bytes() const {
  ProgramBuffers sizes(nullptr);
  Buffers unused;
  declare(sizes, unused, config_, pass_rows_);
  return sizes.total_bytes();
}

absl::Status LlamaDecoder::bind(kernels::Backend* backend, actors::ChunkSource* source) {
  DSINF_CHECK_MSG(backend_ == nullptr, "bind() twice");
  backend_ = backend;
  source_ = source;
  bufs_ = std::make_unique<Buffers>();
  owned_ = std::make_unique<ProgramBuffers>(backend);
  declare(*owned_, *bufs_, config_, pass_rows_);
  if (absl::Status s = owned_->allocate(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("the generation buffers (key/value cache ",
                                               kv_cache_bytes(), " bytes): ", s.message()));
  }
  return upload_rope_tables();
}

absl::Status LlamaDecoder::upload_rope_tables() {
  const RopeTables tables = make_rope_tables(config_, config_.n_positions);
  const size_t bytes = tables.cos.size() * sizeof(float);
  absl::Status s = backend_->copy_to_device(bufs_->rope_cos, tables.cos.data(), bytes,
                                            Stream::kUpload);
  if (s.ok()) {
    s = backend_->copy_to_device(bufs_->rope_sin, tables.sin.data(), bytes, Stream::kUpload);
  }
  if (!s.ok()) return s;
  return backend_->synchronize(Stream::kUpload);  // the tables are host locals
}

void LlamaDecoder::truncate(int positions) {
  DSINF_CHECK(positions >= 0);
  position_ = std::min(position_, positions);
}

const float* LlamaDecoder::tensor(const float* P, size_t chunk, int index) const {
  return index < 0 ? nullptr : P + layouts_[chunk].tensors()[index].offset_elems;
}

void LlamaDecoder::project(float* out, const float* in, const float* P, size_t chunk, int weight,
                           int bias, int rows, int in_dim, int out_dim, const float* Ad, int l,
                           int m) {
  kernels::Backend& k = *backend_;
  k.matmul_forward(out, in, tensor(P, chunk, weight), tensor(P, chunk, bias), rows, in_dim,
                   out_dim);
  if (Ad == nullptr || m < 0 || lora_.a[m] < 0) return;
  // LlamaProgram's order (PEFT's): result + lora_B(lora_A(x)) * scaling; no dropout.
  const size_t ac = lora_.adapter_chunk(l), n_out = static_cast<size_t>(rows) * out_dim;
  const int r = config_.lora.r;
  k.matmul_forward(bufs_->lora_u, in, tensor(Ad, ac, lora_.a[m]), nullptr, rows, in_dim, r);
  k.matmul_forward(bufs_->lora_tmp, bufs_->lora_u, tensor(Ad, ac, lora_.b[m]), nullptr, rows, r,
                   out_dim);
  k.scale(bufs_->lora_tmp, static_cast<float>(config_.lora.scale()), n_out);
  k.residual_forward(out, out, bufs_->lora_tmp, n_out);
}

template <typename Body>
absl::Status LlamaDecoder::with_chunk(size_t c, Body&& body) {
  absl::StatusOr<const float*> P = source_->acquire_params(c);
  if (!P.ok()) return P.status();
  absl::Status status = body(*P);
  status.Update(source_->release_params(c));
  return status;
}

void LlamaDecoder::layer(int l, const LayerChunks& lc, int P0, int Tq) {
  trace::Scope span(trace::Lane::kCompute, "decode layer", 1 + l);
  kernels::Backend& k = *backend_;
  Buffers& a = *bufs_;
  const LlamaBlockTensors& t = block_;
  const int C = config_.n_embd, NH = config_.n_head, KV = config_.n_kv_head;
  const int D = config_.head_dim, I = config_.intermediate_size, Q = NH * D, K = KV * D;
  const size_t c = 1 + l, positions = config_.n_positions, half = D / 2;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  float* k_layer = a.k_cache + l * positions * K;  // (positions, KV, D)
  float* v_layer = a.v_cache + l * positions * K;
  float* k_new = k_layer + static_cast<size_t>(P0) * K;
  float* v_new = v_layer + static_cast<size_t>(P0) * K;
  const float* P = lc.P;
  k.rmsnorm_forward(a.ln, a.rstd, a.x, tensor(P, c, t.ln1), Tq, C, eps);
  project(config_.qk_norm ? a.q_raw : a.q, a.ln, P, c, t.wq, t.bq, Tq, C, Q, lc.Ad, l, kLoraQ);
  project(config_.qk_norm ? a.k_raw : k_new, a.ln, P, c, t.wk, t.bk, Tq, C, K, lc.Ad, l, kLoraK);
  project(v_new, a.ln, P, c, t.wv, t.bv, Tq, C, K, lc.Ad, l, kLoraV);
  if (config_.qk_norm) {
    k.rmsnorm_forward(a.q, a.rstd, a.q_raw, tensor(P, c, t.q_norm), Tq * NH, D, eps);
    k.rmsnorm_forward(k_new, a.rstd, a.k_raw, tensor(P, c, t.k_norm), Tq * KV, D, eps);
  }
  // The tables' rows from P0 on are the rotations of these rows' positions.
  const float* cos = a.rope_cos + P0 * half;
  const float* sin = a.rope_sin + P0 * half;
  k.rope_forward(a.q, cos, sin, 1, Tq, NH, D);
  k.rope_forward(k_new, cos, sin, 1, Tq, KV, D);
  k.cached_attention_forward(a.att, a.q, k_layer, v_layer, Tq, P0 + Tq, NH, KV, D,
                             1.0f / std::sqrt(static_cast<float>(D)));
  project(a.proj, a.att, P, c, t.wo, t.bo, Tq, Q, C, lc.Ad, l, kLoraO);
  const size_t n = static_cast<size_t>(Tq) * C;
  k.residual_forward(a.x, a.x, a.proj, n);
  k.rmsnorm_forward(a.ln, a.rstd, a.x, tensor(P, c, t.ln2), Tq, C, eps);
  project(a.gate, a.ln, P, c, t.w_gate, t.b_gate, Tq, C, I, lc.Ad, l, kLoraGate);
  project(a.up, a.ln, P, c, t.w_up, t.b_up, Tq, C, I, lc.Ad, l, kLoraUp);
  k.swiglu_forward(a.h, a.gate, a.up, static_cast<size_t>(Tq) * I);
  project(a.proj, a.h, P, c, t.w_down, t.b_down, Tq, I, C, lc.Ad, l, kLoraDown);
  k.residual_forward(a.x, a.x, a.proj, n);
}

absl::Status LlamaDecoder::head(int Tq) {
  kernels::Backend& k = *backend_;
  Buffers& a = *bufs_;
  const int C = config_.n_embd, V = config_.vocab_size;
  const size_t fin = lora_.base_chunks - 1;
  const float* last = a.x + static_cast<size_t>(Tq - 1) * C;
  const bool head_in_final = !config_.tie_word_embeddings && lora_.lm_head_copy < 0;
  absl::Status status = with_chunk(fin, [&](const float* F) {
    k.rmsnorm_forward(a.lnf, a.rstd, last, F, 1, C, static_cast<float>(config_.rms_norm_eps));
    if (head_in_final) project(a.logits, a.lnf, F, fin, 1, -1, 1, C, V);
    return absl::OkStatus();
  });
  if (!status.ok() || head_in_final) return status;
  // Tied: lm_head is the embedding; LoRA's modules_to_save: its trained copy.
  const size_t head = config_.tie_word_embeddings ? 0 : lora_.lm_head_copy;
  return with_chunk(head, [&](const float* H) {
    project(a.logits, a.lnf, H, head, 0, -1, 1, C, V);
    return absl::OkStatus();
  });
}

absl::Status LlamaDecoder::upload_tokens(const std::vector<int32_t>& tokens) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token ", i, " is id ", tokens[i],
                                                     ", outside the vocabulary of ",
                                                     config_.vocab_size));
    }
  }
  // The previous pass may still read the ids: the upload waits for it.
  backend_->stream_wait(Stream::kUpload, backend_->record(Stream::kCompute));
  host_tokens_ = tokens;
  if (absl::Status s = backend_->copy_to_device(bufs_->tokens, host_tokens_.data(),
                                                host_tokens_.size() * sizeof(int32_t),
                                                Stream::kUpload);
      !s.ok()) {
    return s;
  }
  backend_->stream_wait(Stream::kCompute, backend_->record(Stream::kUpload));
  return absl::OkStatus();
}

absl::Status LlamaDecoder::append(const std::vector<int32_t>& tokens, std::vector<float>& logits) {
  DSINF_CHECK_MSG(backend_ != nullptr, "append() before bind()");
  if (tokens.empty()) return absl::InvalidArgumentError("nothing to append");
  if (tokens.size() > static_cast<size_t>(config_.n_positions - position_)) {
    return absl::InvalidArgumentError(
        absl::StrCat(position_, " + ", tokens.size(), " tokens exceed the model's ",
                     config_.n_positions, " positions (max_position_embeddings)"));
  }
  for (size_t first = 0; first < tokens.size(); first += pass_rows_) {
    const size_t end = std::min(tokens.size(), first + pass_rows_);
    if (absl::Status s = pass({tokens.begin() + first, tokens.begin() + end}); !s.ok()) return s;
  }
  kernels::Backend& k = *backend_;
  logits.resize(config_.vocab_size);
  k.stream_wait(Stream::kDownload, k.record(Stream::kCompute));
  absl::Status status = k.copy_to_host(logits.data(), bufs_->logits,
                                       logits.size() * sizeof(float), Stream::kDownload);
  if (status.ok()) status = k.synchronize(Stream::kDownload);
  return status;
}

absl::Status LlamaDecoder::pass(const std::vector<int32_t>& tokens) {
  const int Tq = static_cast<int>(tokens.size()), P0 = position_;
  if (absl::Status s = upload_tokens(tokens); !s.ok()) return s;
  kernels::Backend& k = *backend_;
  const size_t embed = lora_.embed_copy >= 0 ? lora_.embed_copy : 0;
  absl::Status status = with_chunk(embed, [&](const float* E) {
    k.encoder_forward(bufs_->x, bufs_->tokens, E, nullptr, 1, Tq, config_.n_embd);
    return absl::OkStatus();
  });
  for (int l = 0; l < config_.n_layer && status.ok(); ++l) {
    status = with_chunk(1 + l, [&](const float* P) {
      if (!lora_.enabled) {
        layer(l, {P, nullptr}, P0, Tq);
        return absl::OkStatus();
      }
      return with_chunk(lora_.adapter_chunk(l), [&](const float* Ad) {
        layer(l, {P, Ad}, P0, Tq);
        return absl::OkStatus();
      });
    });
  }
  if (status.ok()) status = head(Tq);
  if (status.ok()) position_ = P0 + Tq;
  return status;
}

}  // namespace dsinf::trainer
