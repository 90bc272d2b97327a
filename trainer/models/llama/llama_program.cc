// The Llama family's layer program: activations and the forward and backward
// passes over a ChunkSource. Attention is the tiled kind (DecoderOps): per
// layer only the log-sum-exp of each query row is kept, so activation memory
// is linear in the window T.
#include <algorithm>
#include <array>
#include <cmath>

#include "memory/util/check.h"
#include "memory/util/trace.h"
#include "trainer/models/llama/llama.h"

namespace dsinf::trainer {

using kernels::Stream;

struct LlamaProgram::Activations {
  // Kept for backward, one set per layer (with checkpointing one set, recomputed).
  std::vector<float*> ln1, rstd1;                    // (N,C), (N)
  std::vector<float*> q_raw, k_raw, rstd_q, rstd_k;  // qk_norm only: (N,Q), (N,K), (N*NH), (N*KV)
  std::vector<float*> q, k, v;                       // after norm and RoPE: (N,Q), (N,K), (N,K)
  std::vector<float*> att, lse;                      // (N,Q), (B,NH,T)
  std::vector<float*> x_mid, ln2, rstd2;             // (N,C), (N,C), (N)
  std::vector<float*> gate, up, h;                   // (N,I) each
  std::vector<float*> x_out;                         // (N,C) per layer: the layer's output
  float* embedded = nullptr;                         // (N,C)
  float* lnf = nullptr;                              // (N,C)
  float* rstdf = nullptr;                            // (N)
  float* logits = nullptr;                           // (N,V), dlogits in backward
  float* losses = nullptr;                           // (N)
  int32_t* inputs = nullptr;                         // (N)
  int32_t* targets = nullptr;                        // (N)
  float* scratch = nullptr;                          // (N,C) projection outputs
  float* rope_cos = nullptr;                         // (T, D/2)
  float* rope_sin = nullptr;
  float* visit = nullptr;  // one gradient visit (the largest chunk)
  // Backward scratch.
  float* dres = nullptr;                                               // (N,C)
  float* dxn = nullptr;                                                // (N,C)
  float *datt = nullptr, *dq = nullptr, *dk = nullptr, *dv = nullptr;  // (N,Q), (N,Q), (N,K), (N,K)
  float *dq_raw = nullptr, *dk_raw = nullptr;                          // qk_norm only
  float *dh = nullptr, *dgate = nullptr, *dup = nullptr;               // (N,I)
  float* flash_scratch = nullptr;                                      // (B,NH,T)
  // LoRA: per set, u = dropout(x) A^T (N,r) of each adapted projection; scratch.
  std::vector<std::array<float*, kLoraModules>> lora_u;
  float* lora_tmp = nullptr;  // (N, widest output): B's product, scale * dout in backward
  float* lora_du = nullptr;   // (N,r)
  float* lora_x = nullptr;    // (N, widest input): the dropped input (lora_dropout > 0)
  float* lora_dx = nullptr;   // (N, widest input): its gradient (lora_dropout > 0)
  float* discard = nullptr;   // (max(C,D)): a frozen norm's weight gradient
};

namespace {

// LoRA's buffers: u per set and projection, and the scratch of project().
void declare_lora(ProgramBuffers& buffers, LlamaProgram::Activations& a, const ModelConfig& c,
                  size_t N, int sets) {
  const size_t f = sizeof(float);
  buffers.add(a.discard, std::max(c.n_embd, c.head_dim) * f);
  if (!c.lora.enabled) return;
  const size_t r = c.lora.r;
  size_t widest_in = 0, widest_out = 0;
  a.lora_u.assign(sets, {});
  for (int m = 0; m < kLoraModules; ++m) {
    if (!c.lora.targets(lora_module_names()[m])) continue;
    const LoraShape s = lora_shape(c, m);
    widest_in = std::max<size_t>(widest_in, s.in);
    widest_out = std::max<size_t>(widest_out, s.out);
    for (int set = 0; set < sets; ++set) buffers.add(a.lora_u[set][m], N * r * f);
  }
  buffers.add(a.lora_tmp, N * widest_out * f);
  buffers.add(a.lora_du, N * r * f);
  if (c.lora.dropout > 0) {
    buffers.add(a.lora_x, N * widest_in * f);
    buffers.add(a.lora_dx, N * widest_in * f);
  }
}

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

void LlamaProgram::declare(ProgramBuffers& buffers, Activations& a, const ModelConfig& c,
                           int max_batch) {
  const size_t B = max_batch, T = c.window(), C = c.n_embd, V = c.vocab_size;
  const size_t NH = c.n_head, KV = c.n_kv_head, D = c.head_dim, I = c.intermediate_size;
  const size_t N = B * T, Q = NH * D, K = KV * D, f = sizeof(float);
  const int sets = c.activation_checkpointing ? 1 : c.n_layer;
  auto per_set = [&](std::vector<float*>& v, size_t elems, bool present = true) {
    v.assign(sets, nullptr);
    if (!present) return;
    for (int s = 0; s < sets; ++s) buffers.add(v[s], elems * f);
  };
  per_set(a.ln1, N * C);
  per_set(a.rstd1, N);
  per_set(a.q_raw, N * Q, c.qk_norm);
  per_set(a.k_raw, N * K, c.qk_norm);
  per_set(a.rstd_q, N * NH, c.qk_norm);
  per_set(a.rstd_k, N * KV, c.qk_norm);
  per_set(a.q, N * Q);
  per_set(a.k, N * K);
  per_set(a.v, N * K);
  per_set(a.att, N * Q);
  per_set(a.lse, B * NH * T);
  per_set(a.x_mid, N * C);
  per_set(a.ln2, N * C);
  per_set(a.rstd2, N);
  per_set(a.gate, N * I);
  per_set(a.up, N * I);
  per_set(a.h, N * I);
  a.x_out.assign(c.n_layer, nullptr);
  for (int l = 0; l < c.n_layer; ++l) buffers.add(a.x_out[l], N * C * f);
  for (float** p : {&a.embedded, &a.lnf, &a.scratch, &a.dres, &a.dxn}) buffers.add(*p, N * C * f);
  for (float** p : {&a.rstdf, &a.losses}) buffers.add(*p, N * f);
  buffers.add(a.logits, N * V * f);
  buffers.add(a.inputs, N * sizeof(int32_t));
  buffers.add(a.targets, N * sizeof(int32_t));
  buffers.add(a.rope_cos, T * (D / 2) * f);
  buffers.add(a.rope_sin, T * (D / 2) * f);
  buffers.add(a.visit, largest_chunk_bytes(LlamaModel::make_layouts(c)));
  for (float** p : {&a.datt, &a.dq}) buffers.add(*p, N * Q * f);
  for (float** p : {&a.dk, &a.dv}) buffers.add(*p, N * K * f);
  if (c.qk_norm) {
    buffers.add(a.dq_raw, N * Q * f);
    buffers.add(a.dk_raw, N * K * f);
  }
  for (float** p : {&a.dh, &a.dgate, &a.dup}) buffers.add(*p, N * I * f);
  buffers.add(a.flash_scratch, B * NH * T * f);
  declare_lora(buffers, a, c, N, sets);
}

LlamaProgram::LlamaProgram(kernels::Backend* backend, const ModelConfig& config, int max_batch)
    : backend_(backend),
      config_(config),
      max_batch_(max_batch),
      acts_(std::make_unique<Activations>()),
      buffers_(backend) {
  // block_ is a member initialised after layouts_: fill it here.
  layouts_ = LlamaModel::make_layouts(config, &block_, &lora_);
}

LlamaProgram::~LlamaProgram() = default;

size_t LlamaProgram::activation_bytes_needed(const ModelConfig& config, int max_batch) {
  ProgramBuffers sizing(nullptr);
  Activations scratch;
  declare(sizing, scratch, config, max_batch);
  return sizing.total_bytes();
}

absl::StatusOr<std::unique_ptr<LlamaProgram>> LlamaProgram::create(kernels::Backend* backend,
                                                                   const ModelConfig& config,
                                                                   int max_batch) {
  DSINF_CHECK(max_batch >= 1);
  std::unique_ptr<LlamaProgram> program(new LlamaProgram(backend, config, max_batch));
  declare(program->buffers_, *program->acts_, config, max_batch);
  if (absl::Status s = program->buffers_.allocate(); !s.ok()) return s;
  if (absl::Status s = program->upload_rope_tables(); !s.ok()) return s;
  return program;
}

absl::Status LlamaProgram::upload_rope_tables() {
  const RopeTables tables = make_rope_tables(config_, config_.window());
  const size_t bytes = tables.cos.size() * sizeof(float);
  kernels::Backend& k = *backend_;
  if (absl::Status s = k.copy_to_device(acts_->rope_cos, tables.cos.data(), bytes, Stream::kUpload);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = k.copy_to_device(acts_->rope_sin, tables.sin.data(), bytes, Stream::kUpload);
      !s.ok()) {
    return s;
  }
  return k.synchronize(Stream::kUpload);  // the tables are host locals
}

const float* LlamaProgram::tensor(const float* base, size_t chunk, int index) const {
  return index < 0 || base == nullptr ? nullptr
                                      : base + layouts_[chunk].tensors()[index].offset_elems;
}
float* LlamaProgram::tensor(float* base, size_t chunk, int index) const {
  return index < 0 || base == nullptr ? nullptr
                                      : base + layouts_[chunk].tensors()[index].offset_elems;
}

template <typename Body>
absl::Status LlamaProgram::visit(size_t c, Body&& body) {
  if (!layouts_[c].trainable()) return body(static_cast<float*>(nullptr));
  return grad_visit(*backend_, *source_, layouts_, acts_->visit, c, std::forward<Body>(body));
}

template <typename Body>
absl::Status LlamaProgram::with_chunk(size_t c, Body&& body) {
  absl::StatusOr<const float*> P = source_->acquire_params(c);
  if (!P.ok()) return P.status();
  absl::Status status = body(*P);
  status.Update(source_->release_params(c));
  return status;
}

float LlamaProgram::lora_dropout() const {
  return dropout_key_.has_value() ? static_cast<float>(config_.lora.dropout) : 0.0f;
}

uint64_t LlamaProgram::mask_key(int l, int m) const {
  const uint64_t site = static_cast<uint64_t>(l) * kLoraModules + static_cast<uint64_t>(m);
  return mix64(mix64(config_.seed ^ 0x6d61736bull) ^ (mix64(dropout_key_.value_or(0)) + site));
}

void LlamaProgram::project(float* out, const float* in, const LayerChunks& lc, int l, int m,
                           int w, int b, int N) {
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const size_t c = 1 + l;
  const LoraShape shape = lora_shape(config_, m);
  k.matmul_forward(out, in, tensor(lc.P, c, w), tensor(lc.P, c, b), N, shape.in, shape.out);
  if (lc.Ad == nullptr || lora_.a[m] < 0) return;
  const size_t ac = lora_.adapter_chunk(l), n_out = static_cast<size_t>(N) * shape.out;
  const int r = config_.lora.r;
  const float p = lora_dropout();
  const float* x = in;
  if (p > 0) {
    k.dropout_scale(a.lora_x, in, static_cast<size_t>(N) * shape.in, 1.0f / (1.0f - p), p,
                    mask_key(l, m));
    x = a.lora_x;
  }
  // PEFT's order: result + lora_B(lora_A(dropout(x))) * scaling.
  float* u = a.lora_u[act_slot(l)][m];
  k.matmul_forward(u, x, tensor(lc.Ad, ac, lora_.a[m]), nullptr, N, shape.in, r);
  k.matmul_forward(a.lora_tmp, u, tensor(lc.Ad, ac, lora_.b[m]), nullptr, N, r, shape.out);
  k.scale(a.lora_tmp, static_cast<float>(config_.lora.scale()), n_out);
  k.residual_forward(out, out, a.lora_tmp, n_out);
}

absl::Status LlamaProgram::project_backward(float* din, const float* dout, const float* in,
                                            const LayerChunks& lc, int l, int m, int w, int b,
                                            int N) {
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const size_t c = 1 + l, f = sizeof(float);
  const LoraShape shape = lora_shape(config_, m);
  k.matmul_backward(din, tensor(lc.G, c, w), tensor(lc.G, c, b), dout, in, tensor(lc.P, c, w), N,
                    shape.in, shape.out);
  if (lc.Ad == nullptr || lora_.a[m] < 0) return absl::OkStatus();
  const size_t ac = lora_.adapter_chunk(l), n_in = static_cast<size_t>(N) * shape.in;
  const int r = config_.lora.r;
  const float p = lora_dropout();
  absl::Status status;
  k.dropout_scale(a.lora_tmp, dout, static_cast<size_t>(N) * shape.out,
                  static_cast<float>(config_.lora.scale()), 0.0f, 0);
  status.Update(k.fill_zero(a.lora_du, static_cast<size_t>(N) * r * f, Stream::kCompute));
  k.matmul_backward(a.lora_du, tensor(lc.GA, ac, lora_.b[m]), nullptr, a.lora_tmp,
                    a.lora_u[act_slot(l)][m], tensor(lc.Ad, ac, lora_.b[m]), N, r, shape.out);
  const float* A = tensor(lc.Ad, ac, lora_.a[m]);
  float* gA = tensor(lc.GA, ac, lora_.a[m]);
  if (p <= 0) {
    k.matmul_backward(din, gA, nullptr, a.lora_du, in, A, N, shape.in, r);
    return status;
  }
  // The forward's mask, from its key: the dropped input again, and its gradient.
  const float keep_scale = 1.0f / (1.0f - p);
  k.dropout_scale(a.lora_x, in, n_in, keep_scale, p, mask_key(l, m));
  status.Update(k.fill_zero(a.lora_dx, n_in * f, Stream::kCompute));
  k.matmul_backward(a.lora_dx, gA, nullptr, a.lora_du, a.lora_x, A, N, shape.in, r);
  k.dropout_scale(a.lora_dx, a.lora_dx, n_in, keep_scale, p, mask_key(l, m));
  k.residual_forward(din, din, a.lora_dx, n_in);
  return status;
}

void LlamaProgram::block_forward(int l, const LayerChunks& lc, const float* x_in, int B) {
  trace::Scope span(trace::Lane::kCompute, "block forward", 1 + l);
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const LlamaBlockTensors& t = block_;
  const int T = config_.window(), C = config_.n_embd, NH = config_.n_head, KV = config_.n_kv_head;
  const int D = config_.head_dim, I = config_.intermediate_size, N = B * T;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  const size_t s = act_slot(l), c = 1 + l;
  auto w = [&](int index) { return tensor(lc.P, c, index); };
  k.rmsnorm_forward(a.ln1[s], a.rstd1[s], x_in, w(t.ln1), N, C, eps);
  float* q = config_.qk_norm ? a.q_raw[s] : a.q[s];
  float* kk = config_.qk_norm ? a.k_raw[s] : a.k[s];
  project(q, a.ln1[s], lc, l, kLoraQ, t.wq, t.bq, N);
  project(kk, a.ln1[s], lc, l, kLoraK, t.wk, t.bk, N);
  project(a.v[s], a.ln1[s], lc, l, kLoraV, t.wv, t.bv, N);
  if (config_.qk_norm) {
    k.rmsnorm_forward(a.q[s], a.rstd_q[s], q, w(t.q_norm), N * NH, D, eps);
    k.rmsnorm_forward(a.k[s], a.rstd_k[s], kk, w(t.k_norm), N * KV, D, eps);
  }
  k.rope_forward(a.q[s], a.rope_cos, a.rope_sin, B, T, NH, D);
  k.rope_forward(a.k[s], a.rope_cos, a.rope_sin, B, T, KV, D);
  k.flash_attention_forward(a.att[s], a.lse[s], a.q[s], a.k[s], a.v[s], B, T, NH, KV, D,
                            1.0f / std::sqrt(static_cast<float>(D)));
  project(a.scratch, a.att[s], lc, l, kLoraO, t.wo, t.bo, N);
  k.residual_forward(a.x_mid[s], x_in, a.scratch, static_cast<size_t>(N) * C);
  k.rmsnorm_forward(a.ln2[s], a.rstd2[s], a.x_mid[s], w(t.ln2), N, C, eps);
  project(a.gate[s], a.ln2[s], lc, l, kLoraGate, t.w_gate, t.b_gate, N);
  project(a.up[s], a.ln2[s], lc, l, kLoraUp, t.w_up, t.b_up, N);
  k.swiglu_forward(a.h[s], a.gate[s], a.up[s], static_cast<size_t>(N) * I);
  project(a.scratch, a.h[s], lc, l, kLoraDown, t.w_down, t.b_down, N);
  k.residual_forward(a.x_out[l], a.x_mid[s], a.scratch, static_cast<size_t>(N) * C);
}

absl::StatusOr<float> LlamaProgram::forward(const int32_t* inputs, const int32_t* targets, int B) {
  DSINF_CHECK(B >= 1 && B <= max_batch_);
  DSINF_CHECK_MSG(source_ != nullptr, "forward() before set_chunk_source()");
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const int T = config_.window(), C = config_.n_embd, V = config_.vocab_size, N = B * T;
  if (absl::Status s = upload_batch(k, a.inputs, a.targets, inputs, targets, N, V); !s.ok()) {
    return s;
  }
  // A trained copy of embed_tokens or lm_head (LoRA's modules_to_save) stands in for its original.
  const size_t embed = lora_.embed_copy >= 0 ? lora_.embed_copy : 0;
  absl::Status status = with_chunk(embed, [&](const float* E) {
    k.encoder_forward(a.embedded, a.inputs, E, nullptr, B, T, C);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  const float* x = a.embedded;
  for (int l = 0; l < config_.n_layer && status.ok(); ++l) {
    status = with_chunk(1 + l, [&](const float* P) {
      if (!lora_.enabled) {
        block_forward(l, {P, nullptr, nullptr, nullptr}, x, B);
        return absl::OkStatus();
      }
      return with_chunk(lora_.adapter_chunk(l), [&](const float* Ad) {
        block_forward(l, {P, nullptr, Ad, nullptr}, x, B);
        return absl::OkStatus();
      });
    });
    x = a.x_out[l];
  }
  if (!status.ok()) return status;
  const size_t fin = lora_.base_chunks - 1;
  const bool head_in_final = !config_.tie_word_embeddings && lora_.lm_head_copy < 0;
  status = with_chunk(fin, [&](const float* F) {
    k.rmsnorm_forward(a.lnf, a.rstdf, x, F, N, C, static_cast<float>(config_.rms_norm_eps));
    if (head_in_final) {
      trace::Scope span(trace::Lane::kCompute, "logits and loss", fin);
      k.matmul_forward(a.logits, a.lnf, tensor(F, fin, 1), nullptr, N, C, V);
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  if (!head_in_final) {
    const size_t head = config_.tie_word_embeddings ? 0 : lora_.lm_head_copy;
    status = with_chunk(head, [&](const float* H) {
      trace::Scope span(trace::Lane::kCompute, "logits and loss", head);
      k.matmul_forward(a.logits, a.lnf, H, nullptr, N, C, V);
      return absl::OkStatus();
    });
    if (!status.ok()) return status;
  }
  k.softmax_crossentropy(a.losses, nullptr, a.logits, a.targets, N, V, 0.0f);
  absl::StatusOr<double> sum = download_loss_sum(k, a.losses, N);
  if (!sum.ok()) return sum.status();
  last_batch_ = B;
  last_loss_sum_ = *sum;
  return static_cast<float>(*sum / static_cast<double>(N));
}

absl::Status LlamaProgram::attention_backward(int l, const LayerChunks& lc, int B) {
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const LlamaBlockTensors& t = block_;
  const int T = config_.window(), C = config_.n_embd, NH = config_.n_head, KV = config_.n_kv_head;
  const int D = config_.head_dim, N = B * T, Q = NH * D, K = KV * D;
  const size_t s = act_slot(l), c = 1 + l, f = sizeof(float);
  auto w = [&](int index) { return tensor(lc.P, c, index); };
  // A frozen norm's weight gradient is computed into a scratch that nothing reads.
  auto gn = [&](int index) { return lc.G != nullptr ? tensor(lc.G, c, index) : a.discard; };
  absl::Status status;
  auto zero = [&](float* p, size_t elems) {
    status.Update(k.fill_zero(p, elems * f, Stream::kCompute));
  };
  zero(a.datt, static_cast<size_t>(N) * Q);
  status.Update(project_backward(a.datt, a.dres, a.att[s], lc, l, kLoraO, t.wo, t.bo, N));
  zero(a.dq, static_cast<size_t>(N) * Q);
  zero(a.dk, static_cast<size_t>(N) * K);
  zero(a.dv, static_cast<size_t>(N) * K);
  k.flash_attention_backward(a.dq, a.dk, a.dv, a.datt, a.q[s], a.k[s], a.v[s], a.att[s], a.lse[s],
                             a.flash_scratch, B, T, NH, KV, D,
                             1.0f / std::sqrt(static_cast<float>(D)));
  k.rope_backward(a.dq, a.rope_cos, a.rope_sin, B, T, NH, D);
  k.rope_backward(a.dk, a.rope_cos, a.rope_sin, B, T, KV, D);
  float* dq = a.dq;
  float* dk = a.dk;
  if (config_.qk_norm) {
    zero(a.dq_raw, static_cast<size_t>(N) * Q);
    zero(a.dk_raw, static_cast<size_t>(N) * K);
    k.rmsnorm_backward(a.dq_raw, gn(t.q_norm), a.dq, a.q_raw[s], w(t.q_norm), a.rstd_q[s], N * NH,
                       D);
    k.rmsnorm_backward(a.dk_raw, gn(t.k_norm), a.dk, a.k_raw[s], w(t.k_norm), a.rstd_k[s], N * KV,
                       D);
    dq = a.dq_raw;
    dk = a.dk_raw;
  }
  zero(a.dxn, static_cast<size_t>(N) * C);
  status.Update(project_backward(a.dxn, dq, a.ln1[s], lc, l, kLoraQ, t.wq, t.bq, N));
  status.Update(project_backward(a.dxn, dk, a.ln1[s], lc, l, kLoraK, t.wk, t.bk, N));
  status.Update(project_backward(a.dxn, a.dv, a.ln1[s], lc, l, kLoraV, t.wv, t.bv, N));
  return status;
}

// a.dres holds d(x_out) on entry and d(x_in) on return.
absl::Status LlamaProgram::block_backward(int l, const LayerChunks& lc, const float* x_in, int B) {
  trace::Scope span(trace::Lane::kCompute, "block backward", 1 + l);
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const LlamaBlockTensors& t = block_;
  const int T = config_.window(), C = config_.n_embd, I = config_.intermediate_size, N = B * T;
  const size_t s = act_slot(l), c = 1 + l, NI = static_cast<size_t>(N) * I, f = sizeof(float);
  auto w = [&](int index) { return tensor(lc.P, c, index); };
  auto gn = [&](int index) { return lc.G != nullptr ? tensor(lc.G, c, index) : a.discard; };
  absl::Status status;
  status.Update(k.fill_zero(a.dh, NI * f, Stream::kCompute));
  status.Update(project_backward(a.dh, a.dres, a.h[s], lc, l, kLoraDown, t.w_down, t.b_down, N));
  status.Update(k.fill_zero(a.dgate, NI * f, Stream::kCompute));
  status.Update(k.fill_zero(a.dup, NI * f, Stream::kCompute));
  k.swiglu_backward(a.dgate, a.dup, a.dh, a.gate[s], a.up[s], NI);
  status.Update(k.fill_zero(a.dxn, static_cast<size_t>(N) * C * f, Stream::kCompute));
  status.Update(
      project_backward(a.dxn, a.dgate, a.ln2[s], lc, l, kLoraGate, t.w_gate, t.b_gate, N));
  status.Update(project_backward(a.dxn, a.dup, a.ln2[s], lc, l, kLoraUp, t.w_up, t.b_up, N));
  k.rmsnorm_backward(a.dres, gn(t.ln2), a.dxn, a.x_mid[s], w(t.ln2), a.rstd2[s], N, C);
  status.Update(attention_backward(l, lc, B));
  k.rmsnorm_backward(a.dres, gn(t.ln1), a.dxn, x_in, w(t.ln1), a.rstd1[s], N, C);
  return status;
}

// One layer's backward: its chunks acquired (recomputed from its input with
// checkpointing), the gradient visit of its base, or with LoRA of its adapters.
absl::Status LlamaProgram::layer_backward(int l, int B) {
  Activations& a = *acts_;
  const float* x_in = l > 0 ? a.x_out[l - 1] : a.embedded;
  return with_chunk(1 + l, [&](const float* P) {
    if (!lora_.enabled) {
      // Recomputing the layer from its input gives the same bits as the forward did.
      if (config_.activation_checkpointing) block_forward(l, {P, nullptr, nullptr, nullptr}, x_in, B);
      return visit(1 + l, [&](float* G) {
        return block_backward(l, {P, G, nullptr, nullptr}, x_in, B);
      });
    }
    return with_chunk(lora_.adapter_chunk(l), [&](const float* Ad) {
      if (config_.activation_checkpointing) block_forward(l, {P, nullptr, Ad, nullptr}, x_in, B);
      return visit(lora_.adapter_chunk(l), [&](float* GA) {
        return block_backward(l, {P, nullptr, Ad, GA}, x_in, B);
      });
    });
  });
}

// The loss through lm_head and the final norm: leaves d(last layer output) in a.dres.
absl::Status LlamaProgram::head_backward(int B) {
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const int T = config_.window(), C = config_.n_embd, V = config_.vocab_size, N = B * T;
  const size_t fin = lora_.base_chunks - 1;
  const size_t NC = static_cast<size_t>(N) * C, f = sizeof(float);
  const bool head_in_final = !config_.tie_word_embeddings && lora_.lm_head_copy < 0;
  const float* x_last = config_.n_layer > 0 ? a.x_out[config_.n_layer - 1] : a.embedded;
  if (!head_in_final) {
    // The logits' weight is the embedding (tied) or lm_head's trained copy.
    const size_t head = config_.tie_word_embeddings ? 0 : lora_.lm_head_copy;
    absl::Status status = with_chunk(head, [&](const float* H) {
      return visit(head, [&](float* G) {
        absl::Status s = k.fill_zero(a.dxn, NC * f, Stream::kCompute);
        k.matmul_backward(a.dxn, G, nullptr, a.logits, a.lnf, H, N, C, V);
        return s;
      });
    });
    if (!status.ok()) return status;
  }
  return with_chunk(fin, [&](const float* F) {
    return visit(fin, [&](float* G) {
      absl::Status s;
      if (head_in_final) {
        s.Update(k.fill_zero(a.dxn, NC * f, Stream::kCompute));
        k.matmul_backward(a.dxn, tensor(G, fin, 1), nullptr, a.logits, a.lnf, tensor(F, fin, 1), N,
                          C, V);
      }
      s.Update(k.fill_zero(a.dres, NC * f, Stream::kCompute));
      k.rmsnorm_backward(a.dres, G != nullptr ? G : a.discard, a.dxn, x_last, F, a.rstdf, N, C);
      return s;
    });
  });
}

absl::Status LlamaProgram::backward(float dloss) {
  DSINF_CHECK_MSG(last_batch_ > 0, "backward() without a forward()");
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const int B = last_batch_, T = config_.window(), C = config_.n_embd, V = config_.vocab_size;
  last_batch_ = 0;  // the activations are spent (logits become dlogits)
  k.softmax_crossentropy(a.losses, a.logits, a.logits, a.targets, B * T, V, dloss);
  if (absl::Status s = head_backward(B); !s.ok()) return s;
  for (int l = config_.n_layer - 1; l >= 0; --l) {
    if (absl::Status s = layer_backward(l, B); !s.ok()) return s;
  }
  const size_t embed = lora_.embed_copy >= 0 ? lora_.embed_copy : 0;
  if (!layouts_[embed].trainable()) return absl::OkStatus();
  return grad_visit(k, *source_, layouts_, a.visit, embed, [&](float* G) {
    k.encoder_backward(G, nullptr, a.dres, a.inputs, B, T, C);
    return absl::OkStatus();
  });
}

}  // namespace dsinf::trainer
