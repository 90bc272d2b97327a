// GPT-2's layer program: activations and the forward and backward passes
// over a ChunkSource.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "memory/util/check.h"
#include "memory/util/trace.h"
#include "trainer/models/gpt2/gpt2.h"
#include "trainer/models/program_buffers.h"

namespace dsinf::trainer {

using namespace gpt2;
using kernels::Stream;

struct Gpt2Program::Activations {
  // Forward, kept for backward. Per layer l:
  std::vector<float*> ln1;        // (B,T,C)
  std::vector<float*> ln1_mean;   // (B,T)
  std::vector<float*> ln1_rstd;   // (B,T)
  std::vector<float*> qkv;        // (B,T,3C)
  std::vector<float*> atty;       // (B,T,C)
  std::vector<float*> att;        // (B,NH,T,T)
  std::vector<float*> residual2;  // (B,T,C)
  std::vector<float*> ln2;        // (B,T,C)
  std::vector<float*> ln2_mean;   // (B,T)
  std::vector<float*> ln2_rstd;   // (B,T)
  std::vector<float*> fch;        // (B,T,4C)
  std::vector<float*> fch_gelu;   // (B,T,4C)
  std::vector<float*> residual3;  // (B,T,C) the layer's output
  float* encoded = nullptr;       // (B,T,C)
  float* lnf = nullptr;           // (B,T,C)
  float* lnf_mean = nullptr;      // (B,T)
  float* lnf_rstd = nullptr;      // (B,T)
  float* logits = nullptr;        // (B,T,V); reused for dlogits in backward
  float* losses = nullptr;        // (B,T)
  int32_t* inputs = nullptr;      // (B,T)
  int32_t* targets = nullptr;     // (B,T)
  float* scratch_btc = nullptr;   // (B,T,C) attention projection / fc projection outputs
  // Backward scratch.
  float* dresidual = nullptr;  // (B,T,C)
  float* dbtc = nullptr;       // (B,T,C)
  float* dbtc2 = nullptr;      // (B,T,C)
  float* dqkv = nullptr;       // (B,T,3C)
  float* dfch = nullptr;       // (B,T,4C)
  float* dfch_gelu = nullptr;  // (B,T,4C)
  std::vector<void*> owned;    // every buffer above, for release
};

namespace {

struct ActivationBuffer {
  void** slot;  // where the device pointer goes
  size_t bytes;
};

// Every activation buffer with its size: the one list both sizing and allocation use.
// The per-layer vectors of `a` (a GPT2::Activations) are resized to n_layer.
template <typename Acts>
std::vector<ActivationBuffer> activation_buffers(Acts& a, const ModelConfig& c, int max_batch) {
  const size_t B = max_batch, T = c.window(), C = c.n_embd, NH = c.n_head, V = c.vocab_size;
  const size_t BT = B * T, BTC = BT * C, f = sizeof(float), i = sizeof(int32_t);
  std::vector<ActivationBuffer> list;
  auto add = [&](auto*& ptr, size_t bytes) {
    list.push_back({reinterpret_cast<void**>(&ptr), bytes});
  };
  // With checkpointing only the layer outputs (residual3) are kept per layer;
  // the rest is one set, recomputed layer by layer in backward.
  const int sets = c.activation_checkpointing ? 1 : c.n_layer;
  for (auto* per_layer : {&a.ln1, &a.ln1_mean, &a.ln1_rstd, &a.qkv, &a.atty, &a.att, &a.residual2,
                          &a.ln2, &a.ln2_mean, &a.ln2_rstd, &a.fch, &a.fch_gelu}) {
    per_layer->assign(sets, nullptr);
  }
  a.residual3.assign(c.n_layer, nullptr);
  for (int l = 0; l < c.n_layer; ++l) add(a.residual3[l], BTC * f);
  for (int l = 0; l < sets; ++l) {
    add(a.ln1[l], BTC * f);
    add(a.ln1_mean[l], BT * f);
    add(a.ln1_rstd[l], BT * f);
    add(a.qkv[l], 3 * BTC * f);
    add(a.atty[l], BTC * f);
    add(a.att[l], B * NH * T * T * f);
    add(a.residual2[l], BTC * f);
    add(a.ln2[l], BTC * f);
    add(a.ln2_mean[l], BT * f);
    add(a.ln2_rstd[l], BT * f);
    add(a.fch[l], 4 * BTC * f);
    add(a.fch_gelu[l], 4 * BTC * f);
  }
  add(a.encoded, BTC * f);
  add(a.lnf, BTC * f);
  add(a.lnf_mean, BT * f);
  add(a.lnf_rstd, BT * f);
  add(a.logits, BT * V * f);
  add(a.losses, BT * f);
  add(a.inputs, BT * i);
  add(a.targets, BT * i);
  add(a.scratch_btc, BTC * f);
  add(a.dresidual, BTC * f);
  add(a.dbtc, BTC * f);
  add(a.dbtc2, BTC * f);
  add(a.dqkv, 3 * BTC * f);
  add(a.dfch, 4 * BTC * f);
  add(a.dfch_gelu, 4 * BTC * f);
  return list;
}

}  // namespace

Gpt2Program::Gpt2Program(kernels::Backend* backend, const ModelConfig& config, int max_batch)
    : backend_(backend),
      config_(config),
      max_batch_(max_batch),
      layouts_(Gpt2Model::make_layouts(config)) {}

Gpt2Program::~Gpt2Program() {
  if (visit_ != nullptr) backend_->release(visit_);
  if (acts_) {
    for (void* p : acts_->owned) backend_->release(p);
  }
}

size_t Gpt2Program::activation_bytes_needed(const ModelConfig& config, int max_batch) {
  size_t total = 0;
  Activations scratch;
  for (const ActivationBuffer& b : activation_buffers(scratch, config, max_batch)) {
    total += memory::align_up(b.bytes, memory::kChunkAlignment);
  }
  size_t largest_chunk = 0;
  for (const memory::ChunkLayout& layout : Gpt2Model::make_layouts(config)) {
    largest_chunk = std::max(largest_chunk, layout.bytes());
  }
  return total + largest_chunk;  // the gradient visit buffer
}

absl::StatusOr<std::unique_ptr<Gpt2Program>> Gpt2Program::create(kernels::Backend* backend,
                                                                 const ModelConfig& config,
                                                                 int max_batch) {
  DSINF_CHECK(max_batch >= 1);
  std::unique_ptr<Gpt2Program> program(new Gpt2Program(backend, config, max_batch));
  if (absl::Status s = program->allocate(); !s.ok()) return s;
  return program;
}

absl::Status Gpt2Program::allocate() {
  size_t largest_chunk = 0;
  for (const memory::ChunkLayout& layout : layouts_) {
    largest_chunk = std::max(largest_chunk, layout.bytes());
  }
  absl::StatusOr<void*> visit = backend_->allocate(largest_chunk);
  if (!visit.ok()) return visit.status();
  visit_ = static_cast<float*>(*visit);
  acts_ = std::make_unique<Activations>();
  for (const ActivationBuffer& b : activation_buffers(*acts_, config_, max_batch_)) {
    absl::StatusOr<void*> p = backend_->allocate(b.bytes);
    if (!p.ok()) return p.status();
    acts_->owned.push_back(*p);
    *b.slot = *p;
  }
  return absl::OkStatus();
}

void Gpt2Program::block_forward(int l, const float* P, const float* residual_in, int B) {
  trace::Scope span(trace::Lane::kCompute, "block forward", 1 + l);
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const int T = config_.window(), C = config_.n_embd, NH = config_.n_head, N = B * T;
  const size_t c = 1 + l, s = act_slot(l);
  auto w = [&](size_t t) { return P + tensor_offset(c, t); };
  k.layernorm_forward(a.ln1[s], a.ln1_mean[s], a.ln1_rstd[s], residual_in, w(kLn1W), w(kLn1B), N,
                      C);
  k.matmul_forward(a.qkv[s], a.ln1[s], w(kQkvW), w(kQkvB), N, C, 3 * C);
  k.attention_forward(a.atty[s], a.att[s], a.qkv[s], B, T, C, NH);
  k.matmul_forward(a.scratch_btc, a.atty[s], w(kAttProjW), w(kAttProjB), N, C, C);
  k.residual_forward(a.residual2[s], residual_in, a.scratch_btc, static_cast<size_t>(N) * C);
  k.layernorm_forward(a.ln2[s], a.ln2_mean[s], a.ln2_rstd[s], a.residual2[s], w(kLn2W), w(kLn2B), N,
                      C);
  k.matmul_forward(a.fch[s], a.ln2[s], w(kFcW), w(kFcB), N, C, 4 * C);
  k.gelu_forward(a.fch_gelu[s], a.fch[s], static_cast<size_t>(N) * 4 * C);
  k.matmul_forward(a.scratch_btc, a.fch_gelu[s], w(kFcProjW), w(kFcProjB), N, 4 * C, C);
  k.residual_forward(a.residual3[l], a.residual2[s], a.scratch_btc, static_cast<size_t>(N) * C);
}

absl::StatusOr<float> Gpt2Program::forward(const int32_t* inputs, const int32_t* targets, int B) {
  DSINF_CHECK(B >= 1 && B <= max_batch_);
  DSINF_CHECK_MSG(source_ != nullptr, "forward() before set_chunk_source()");
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const int T = config_.window(), C = config_.n_embd, V = config_.vocab_size, N = B * T;
  const size_t BT = static_cast<size_t>(N);
  if (absl::Status s = upload_batch(k, a.inputs, a.targets, inputs, targets, BT, V); !s.ok()) {
    return s;
  }
  absl::StatusOr<const float*> embed = source_->acquire_params(0);
  if (!embed.ok()) return embed.status();
  {
    trace::Scope span(trace::Lane::kCompute, "encoder", 0);
    k.encoder_forward(a.encoded, a.inputs, *embed + tensor_offset(0, kWte),
                      *embed + tensor_offset(0, kWpe), B, T, C);
  }
  if (absl::Status s = source_->release_params(0); !s.ok()) return s;
  const float* residual = a.encoded;
  for (int l = 0; l < config_.n_layer; ++l) {
    absl::StatusOr<const float*> P = source_->acquire_params(1 + l);
    if (!P.ok()) return P.status();
    block_forward(l, *P, residual, B);
    if (absl::Status s = source_->release_params(1 + l); !s.ok()) return s;
    residual = a.residual3[l];
  }
  const size_t f = layouts_.size() - 1;
  absl::StatusOr<const float*> fin = source_->acquire_params(f);
  if (!fin.ok()) return fin.status();
  k.layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, residual, *fin + tensor_offset(f, kLnfW),
                      *fin + tensor_offset(f, kLnfB), N, C);
  if (absl::Status s = source_->release_params(f); !s.ok()) return s;
  embed = source_->acquire_params(0);
  if (!embed.ok()) return embed.status();
  {
    trace::Scope span(trace::Lane::kCompute, "logits and loss", 0);
    k.matmul_forward(a.logits, a.lnf, *embed + tensor_offset(0, kWte), nullptr, N, C, V);
    k.softmax_crossentropy(a.losses, nullptr, a.logits, a.targets, N, V, 0.0f);
  }
  if (absl::Status s = source_->release_params(0); !s.ok()) return s;

  absl::StatusOr<double> sum = download_loss_sum(k, a.losses, BT);
  if (!sum.ok()) return sum.status();
  last_batch_ = B;
  last_loss_sum_ = *sum;
  return static_cast<float>(*sum / static_cast<double>(BT));
}

absl::Status Gpt2Program::block_backward(int l, const float* P, float* G, const float* residual_in,
                                         float* dresidual, int B) {
  trace::Scope span(trace::Lane::kCompute, "block backward", 1 + l);
  absl::Status status;
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const int T = config_.window(), C = config_.n_embd, NH = config_.n_head, N = B * T;
  const size_t c = 1 + l, s = act_slot(l), BTC = static_cast<size_t>(N) * C, f = sizeof(float);
  auto w = [&](size_t t) { return P + tensor_offset(c, t); };
  auto g = [&](size_t t) { return G + tensor_offset(c, t); };
  // dresidual holds d(residual3); the MLP branch, then LayerNorm 2, turn it into d(residual2).
  status.Update(k.fill_zero(a.dfch_gelu, 4 * BTC * f, Stream::kCompute));
  k.matmul_backward(a.dfch_gelu, g(kFcProjW), g(kFcProjB), dresidual, a.fch_gelu[s], w(kFcProjW), N,
                    4 * C, C);
  status.Update(k.fill_zero(a.dfch, 4 * BTC * f, Stream::kCompute));
  k.gelu_backward(a.dfch, a.fch[s], a.dfch_gelu, 4 * BTC);
  status.Update(k.fill_zero(a.dbtc, BTC * f, Stream::kCompute));
  k.matmul_backward(a.dbtc, g(kFcW), g(kFcB), a.dfch, a.ln2[s], w(kFcW), N, C, 4 * C);
  k.layernorm_backward(dresidual, g(kLn2W), g(kLn2B), a.dbtc, a.residual2[s], w(kLn2W),
                       a.ln2_mean[s], a.ln2_rstd[s], N, C);
  // The attention branch, then LayerNorm 1, turn d(residual2) into d(residual_in).
  status.Update(k.fill_zero(a.dbtc2, BTC * f, Stream::kCompute));
  k.matmul_backward(a.dbtc2, g(kAttProjW), g(kAttProjB), dresidual, a.atty[s], w(kAttProjW), N, C,
                    C);
  status.Update(k.fill_zero(a.dqkv, 3 * BTC * f, Stream::kCompute));
  k.attention_backward(a.dqkv, a.dbtc2, a.qkv[s], a.att[s], B, T, C, NH);
  status.Update(k.fill_zero(a.dbtc, BTC * f, Stream::kCompute));
  k.matmul_backward(a.dbtc, g(kQkvW), g(kQkvB), a.dqkv, a.ln1[s], w(kQkvW), N, C, 3 * C);
  k.layernorm_backward(dresidual, g(kLn1W), g(kLn1B), a.dbtc, residual_in, w(kLn1W), a.ln1_mean[s],
                       a.ln1_rstd[s], N, C);
  return status;
}

absl::Status Gpt2Program::backward(float dloss) {
  DSINF_CHECK_MSG(last_batch_ > 0, "backward() without a forward()");
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const int B = last_batch_, T = config_.window(), C = config_.n_embd, V = config_.vocab_size;
  const int N = B * T, L = config_.n_layer;
  const size_t BTC = static_cast<size_t>(N) * C, f = sizeof(float);
  const size_t fin = layouts_.size() - 1;
  last_batch_ = 0;  // the activations are spent (logits become dlogits)
  k.softmax_crossentropy(a.losses, a.logits, a.logits, a.targets, N, V, dloss);
  // The logits' matrix product: the embedding's first gradient visit.
  absl::StatusOr<const float*> embed = source_->acquire_params(0);
  if (!embed.ok()) return embed.status();
  absl::Status status = grad_visit(k, *source_, layouts_, visit_, 0, [&](float* G) {
    trace::Scope span(trace::Lane::kCompute, "logits backward", 0);
    absl::Status s = k.fill_zero(a.dbtc, BTC * f, Stream::kCompute);
    k.matmul_backward(a.dbtc, G + tensor_offset(0, kWte), nullptr, a.logits, a.lnf,
                      *embed + tensor_offset(0, kWte), N, C, V);
    return s;
  });
  status.Update(source_->release_params(0));
  if (!status.ok()) return status;

  const float* last = L > 0 ? a.residual3[L - 1] : a.encoded;
  absl::StatusOr<const float*> P = source_->acquire_params(fin);
  if (!P.ok()) return P.status();
  status = grad_visit(k, *source_, layouts_, visit_, fin, [&](float* G) {
    absl::Status s = k.fill_zero(a.dresidual, BTC * f, Stream::kCompute);
    k.layernorm_backward(a.dresidual, G + tensor_offset(fin, kLnfW), G + tensor_offset(fin, kLnfB),
                         a.dbtc, last, *P + tensor_offset(fin, kLnfW), a.lnf_mean, a.lnf_rstd, N,
                         C);
    return s;
  });
  status.Update(source_->release_params(fin));
  if (!status.ok()) return status;

  for (int l = L - 1; l >= 0; --l) {
    const float* residual_in = l > 0 ? a.residual3[l - 1] : a.encoded;
    P = source_->acquire_params(1 + l);
    if (!P.ok()) return P.status();
    // Recomputing the layer from its input gives the same bits as the forward did.
    if (config_.activation_checkpointing) block_forward(l, *P, residual_in, B);
    status = grad_visit(k, *source_, layouts_, visit_, 1 + l, [&](float* G) {
      return block_backward(l, *P, G, residual_in, a.dresidual, B);
    });
    status.Update(source_->release_params(1 + l));
    if (!status.ok()) return status;
  }
  // The embedding's second visit needs no parameters.
  return grad_visit(k, *source_, layouts_, visit_, 0, [&](float* G) {
    k.encoder_backward(G + tensor_offset(0, kWte), G + tensor_offset(0, kWpe), a.dresidual,
                       a.inputs, B, T, C);
    return absl::OkStatus();
  });
}

}  // namespace dsinf::trainer
