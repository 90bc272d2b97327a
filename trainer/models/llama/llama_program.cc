// The Llama family's layer program: activations and the forward and backward
// passes over a ChunkSource. Attention is the tiled kind (DecoderOps): per
// layer only the log-sum-exp of each query row is kept, so activation memory
// is linear in the window T.
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
};

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
}

LlamaProgram::LlamaProgram(kernels::Backend* backend, const ModelConfig& config, int max_batch)
    : backend_(backend),
      config_(config),
      max_batch_(max_batch),
      acts_(std::make_unique<Activations>()),
      buffers_(backend) {
  // block_ is a member initialised after layouts_: fill it here.
  layouts_ = LlamaModel::make_layouts(config, &block_);
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
  return index < 0 ? nullptr : base + layouts_[chunk].tensors()[index].offset_elems;
}
float* LlamaProgram::tensor(float* base, size_t chunk, int index) const {
  return index < 0 ? nullptr : base + layouts_[chunk].tensors()[index].offset_elems;
}

void LlamaProgram::block_forward(int l, const float* P, const float* x_in, int B) {
  trace::Scope span(trace::Lane::kCompute, "block forward", 1 + l);
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const LlamaBlockTensors& t = block_;
  const int T = config_.window(), C = config_.n_embd, NH = config_.n_head, KV = config_.n_kv_head;
  const int D = config_.head_dim, I = config_.intermediate_size, N = B * T;
  const int Q = NH * D, K = KV * D;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  const size_t s = act_slot(l), c = 1 + l;
  auto w = [&](int index) { return tensor(P, c, index); };
  k.rmsnorm_forward(a.ln1[s], a.rstd1[s], x_in, w(t.ln1), N, C, eps);
  float* q = config_.qk_norm ? a.q_raw[s] : a.q[s];
  float* kk = config_.qk_norm ? a.k_raw[s] : a.k[s];
  k.matmul_forward(q, a.ln1[s], w(t.wq), w(t.bq), N, C, Q);
  k.matmul_forward(kk, a.ln1[s], w(t.wk), w(t.bk), N, C, K);
  k.matmul_forward(a.v[s], a.ln1[s], w(t.wv), w(t.bv), N, C, K);
  if (config_.qk_norm) {
    k.rmsnorm_forward(a.q[s], a.rstd_q[s], q, w(t.q_norm), N * NH, D, eps);
    k.rmsnorm_forward(a.k[s], a.rstd_k[s], kk, w(t.k_norm), N * KV, D, eps);
  }
  k.rope_forward(a.q[s], a.rope_cos, a.rope_sin, B, T, NH, D);
  k.rope_forward(a.k[s], a.rope_cos, a.rope_sin, B, T, KV, D);
  k.flash_attention_forward(a.att[s], a.lse[s], a.q[s], a.k[s], a.v[s], B, T, NH, KV, D,
                            1.0f / std::sqrt(static_cast<float>(D)));
  k.matmul_forward(a.scratch, a.att[s], w(t.wo), w(t.bo), N, Q, C);
  k.residual_forward(a.x_mid[s], x_in, a.scratch, static_cast<size_t>(N) * C);
  k.rmsnorm_forward(a.ln2[s], a.rstd2[s], a.x_mid[s], w(t.ln2), N, C, eps);
  k.matmul_forward(a.gate[s], a.ln2[s], w(t.w_gate), w(t.b_gate), N, C, I);
  k.matmul_forward(a.up[s], a.ln2[s], w(t.w_up), w(t.b_up), N, C, I);
  k.swiglu_forward(a.h[s], a.gate[s], a.up[s], static_cast<size_t>(N) * I);
  k.matmul_forward(a.scratch, a.h[s], w(t.w_down), w(t.b_down), N, I, C);
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
  absl::StatusOr<const float*> embed = source_->acquire_params(0);
  if (!embed.ok()) return embed.status();
  k.encoder_forward(a.embedded, a.inputs, *embed, nullptr, B, T, C);
  if (absl::Status s = source_->release_params(0); !s.ok()) return s;
  const float* x = a.embedded;
  for (int l = 0; l < config_.n_layer; ++l) {
    absl::StatusOr<const float*> P = source_->acquire_params(1 + l);
    if (!P.ok()) return P.status();
    block_forward(l, *P, x, B);
    if (absl::Status s = source_->release_params(1 + l); !s.ok()) return s;
    x = a.x_out[l];
  }
  const size_t fin = layouts_.size() - 1;
  absl::StatusOr<const float*> F = source_->acquire_params(fin);
  if (!F.ok()) return F.status();
  k.rmsnorm_forward(a.lnf, a.rstdf, x, *F, N, C, static_cast<float>(config_.rms_norm_eps));
  if (!config_.tie_word_embeddings) {
    trace::Scope span(trace::Lane::kCompute, "logits and loss", fin);
    k.matmul_forward(a.logits, a.lnf, tensor(*F, fin, 1), nullptr, N, C, V);
  }
  if (absl::Status s = source_->release_params(fin); !s.ok()) return s;
  if (config_.tie_word_embeddings) {
    embed = source_->acquire_params(0);
    if (!embed.ok()) return embed.status();
    trace::Scope span(trace::Lane::kCompute, "logits and loss", 0);
    k.matmul_forward(a.logits, a.lnf, *embed, nullptr, N, C, V);
    if (absl::Status s = source_->release_params(0); !s.ok()) return s;
  }
  k.softmax_crossentropy(a.losses, nullptr, a.logits, a.targets, N, V, 0.0f);
  absl::StatusOr<double> sum = download_loss_sum(k, a.losses, N);
  if (!sum.ok()) return sum.status();
  last_batch_ = B;
  last_loss_sum_ = *sum;
  return static_cast<float>(*sum / static_cast<double>(N));
}

absl::Status LlamaProgram::attention_backward(int l, const float* P, float* G, int B) {
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const LlamaBlockTensors& t = block_;
  const int T = config_.window(), C = config_.n_embd, NH = config_.n_head, KV = config_.n_kv_head;
  const int D = config_.head_dim, N = B * T, Q = NH * D, K = KV * D;
  const size_t s = act_slot(l), c = 1 + l, f = sizeof(float);
  auto w = [&](int index) { return tensor(P, c, index); };
  auto g = [&](int index) { return tensor(G, c, index); };
  absl::Status status;
  auto zero = [&](float* p, size_t elems) {
    status.Update(k.fill_zero(p, elems * f, Stream::kCompute));
  };
  zero(a.datt, static_cast<size_t>(N) * Q);
  k.matmul_backward(a.datt, g(t.wo), g(t.bo), a.dres, a.att[s], w(t.wo), N, Q, C);
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
    k.rmsnorm_backward(a.dq_raw, g(t.q_norm), a.dq, a.q_raw[s], w(t.q_norm), a.rstd_q[s], N * NH,
                       D);
    k.rmsnorm_backward(a.dk_raw, g(t.k_norm), a.dk, a.k_raw[s], w(t.k_norm), a.rstd_k[s], N * KV,
                       D);
    dq = a.dq_raw;
    dk = a.dk_raw;
  }
  zero(a.dxn, static_cast<size_t>(N) * C);
  k.matmul_backward(a.dxn, g(t.wq), g(t.bq), dq, a.ln1[s], w(t.wq), N, C, Q);
  k.matmul_backward(a.dxn, g(t.wk), g(t.bk), dk, a.ln1[s], w(t.wk), N, C, K);
  k.matmul_backward(a.dxn, g(t.wv), g(t.bv), a.dv, a.ln1[s], w(t.wv), N, C, K);
  return status;
}

// a.dres holds d(x_out) on entry and d(x_in) on return.
absl::Status LlamaProgram::block_backward(int l, const float* P, float* G, const float* x_in,
                                          int B) {
  trace::Scope span(trace::Lane::kCompute, "block backward", 1 + l);
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const LlamaBlockTensors& t = block_;
  const int T = config_.window(), C = config_.n_embd, I = config_.intermediate_size, N = B * T;
  const size_t s = act_slot(l), c = 1 + l, NI = static_cast<size_t>(N) * I, f = sizeof(float);
  auto w = [&](int index) { return tensor(P, c, index); };
  auto g = [&](int index) { return tensor(G, c, index); };
  absl::Status status;
  status.Update(k.fill_zero(a.dh, NI * f, Stream::kCompute));
  k.matmul_backward(a.dh, g(t.w_down), g(t.b_down), a.dres, a.h[s], w(t.w_down), N, I, C);
  status.Update(k.fill_zero(a.dgate, NI * f, Stream::kCompute));
  status.Update(k.fill_zero(a.dup, NI * f, Stream::kCompute));
  k.swiglu_backward(a.dgate, a.dup, a.dh, a.gate[s], a.up[s], NI);
  status.Update(k.fill_zero(a.dxn, static_cast<size_t>(N) * C * f, Stream::kCompute));
  k.matmul_backward(a.dxn, g(t.w_gate), g(t.b_gate), a.dgate, a.ln2[s], w(t.w_gate), N, C, I);
  k.matmul_backward(a.dxn, g(t.w_up), g(t.b_up), a.dup, a.ln2[s], w(t.w_up), N, C, I);
  k.rmsnorm_backward(a.dres, g(t.ln2), a.dxn, a.x_mid[s], w(t.ln2), a.rstd2[s], N, C);
  status.Update(attention_backward(l, P, G, B));
  k.rmsnorm_backward(a.dres, g(t.ln1), a.dxn, x_in, w(t.ln1), a.rstd1[s], N, C);
  return status;
}

// The loss through lm_head and the final norm: leaves d(last layer output) in a.dres.
absl::Status LlamaProgram::head_backward(int B) {
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const int T = config_.window(), C = config_.n_embd, V = config_.vocab_size, N = B * T;
  const size_t fin = layouts_.size() - 1, NC = static_cast<size_t>(N) * C, f = sizeof(float);
  const bool tied = config_.tie_word_embeddings;
  const float* x_last = config_.n_layer > 0 ? a.x_out[config_.n_layer - 1] : a.embedded;
  if (tied) {
    absl::StatusOr<const float*> E = source_->acquire_params(0);
    if (!E.ok()) return E.status();
    absl::Status status = grad_visit(k, *source_, layouts_, a.visit, 0, [&](float* G) {
      absl::Status s = k.fill_zero(a.dxn, NC * f, Stream::kCompute);
      k.matmul_backward(a.dxn, G, nullptr, a.logits, a.lnf, *E, N, C, V);
      return s;
    });
    status.Update(source_->release_params(0));
    if (!status.ok()) return status;
  }
  absl::StatusOr<const float*> F = source_->acquire_params(fin);
  if (!F.ok()) return F.status();
  absl::Status status = grad_visit(k, *source_, layouts_, a.visit, fin, [&](float* G) {
    absl::Status s;
    if (!tied) {
      s.Update(k.fill_zero(a.dxn, NC * f, Stream::kCompute));
      k.matmul_backward(a.dxn, tensor(G, fin, 1), nullptr, a.logits, a.lnf, tensor(*F, fin, 1), N,
                        C, V);
    }
    s.Update(k.fill_zero(a.dres, NC * f, Stream::kCompute));
    k.rmsnorm_backward(a.dres, G, a.dxn, x_last, *F, a.rstdf, N, C);
    return s;
  });
  status.Update(source_->release_params(fin));
  return status;
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
    const float* x_in = l > 0 ? a.x_out[l - 1] : a.embedded;
    absl::StatusOr<const float*> P = source_->acquire_params(1 + l);
    if (!P.ok()) return P.status();
    // Recomputing the layer from its input gives the same bits as the forward did.
    if (config_.activation_checkpointing) block_forward(l, *P, x_in, B);
    absl::Status status = grad_visit(k, *source_, layouts_, a.visit, 1 + l,
                                     [&](float* G) { return block_backward(l, *P, G, x_in, B); });
    status.Update(source_->release_params(1 + l));
    if (!status.ok()) return status;
  }
  return grad_visit(k, *source_, layouts_, a.visit, 0, [&](float* G) {
    k.encoder_backward(G, nullptr, a.dres, a.inputs, B, T, C);
    return absl::OkStatus();
  });
}

}  // namespace dsinf::trainer
