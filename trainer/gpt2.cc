#include "trainer/gpt2.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "memory/util/check.h"
#include "memory/util/trace.h"
#include "trainer/rng.h"

namespace dsinf::trainer {
namespace {

using kernels::Stream;

// Tensor indices inside the chunks, in layout order.
enum EmbedTensor : size_t { kWte = 0, kWpe = 1 };
enum BlockTensor : size_t {
  kLn1W = 0,
  kLn1B,
  kQkvW,
  kQkvB,
  kAttProjW,
  kAttProjB,
  kLn2W,
  kLn2B,
  kFcW,
  kFcB,
  kFcProjW,
  kFcProjB,
  kNumBlockTensors
};
enum FinalTensor : size_t { kLnfW = 0, kLnfB = 1 };

const char* const kBlockNames[kNumBlockTensors] = {
    "ln_1.weight",        "ln_1.bias",        "attn.c_attn.weight", "attn.c_attn.bias",
    "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight",        "ln_2.bias",
    "mlp.c_fc.weight",    "mlp.c_fc.bias",    "mlp.c_proj.weight",  "mlp.c_proj.bias"};

// Matrix weights stored (out, in) here and (in, out) by Hugging Face's Conv1D.
bool is_conv1d_weight(size_t t) {
  return t == kQkvW || t == kAttProjW || t == kFcW || t == kFcProjW;
}

}  // namespace

std::vector<memory::ChunkLayout> GPT2::make_layouts(const ModelConfig& c) {
  const int64_t C = c.n_embd, V = c.vocab_size, T = c.n_positions;
  std::vector<memory::ChunkLayout> layouts;
  memory::ChunkLayout embed(sizeof(float));
  embed.add("wte.weight", {V, C});
  embed.add("wpe.weight", {T, C});
  layouts.push_back(std::move(embed));
  const std::vector<std::vector<int64_t>> block_shapes = {
      {C}, {C}, {3 * C, C}, {3 * C}, {C, C}, {C}, {C}, {C}, {4 * C, C}, {4 * C}, {C, 4 * C}, {C}};
  for (int l = 0; l < c.n_layer; ++l) {
    memory::ChunkLayout block(sizeof(float));
    for (size_t t = 0; t < kNumBlockTensors; ++t) {
      block.add(absl::StrCat("h.", l, ".", kBlockNames[t]), block_shapes[t]);
    }
    layouts.push_back(std::move(block));
  }
  memory::ChunkLayout final_ln(sizeof(float));
  final_ln.add("ln_f.weight", {C});
  final_ln.add("ln_f.bias", {C});
  layouts.push_back(std::move(final_ln));
  return layouts;
}

namespace {}  // namespace

struct GPT2::Activations {
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
  const size_t B = max_batch, T = c.n_positions, C = c.n_embd, NH = c.n_head, V = c.vocab_size;
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

GPT2::GPT2(kernels::Backend* backend, const ModelConfig& config, int max_batch)
    : backend_(backend), config_(config), max_batch_(max_batch), layouts_(make_layouts(config)) {}

GPT2::~GPT2() {
  for (float* p : params_) backend_->release(p);
  for (float* p : grads_) backend_->release(p);
  if (visit_ != nullptr) backend_->release(visit_);
  if (acts_) {
    for (void* p : acts_->owned) backend_->release(p);
  }
}

size_t GPT2::activation_bytes_needed(const ModelConfig& config, int max_batch) {
  size_t total = 0;
  Activations scratch;
  for (const ActivationBuffer& b : activation_buffers(scratch, config, max_batch)) {
    total += memory::align_up(b.bytes, memory::kChunkAlignment);
  }
  size_t largest_chunk = 0;
  for (const memory::ChunkLayout& layout : make_layouts(config)) {
    largest_chunk = std::max(largest_chunk, layout.bytes());
  }
  return total + largest_chunk;  // the gradient visit buffer
}

size_t GPT2::device_bytes_needed(const ModelConfig& config, int max_batch) {
  size_t total = activation_bytes_needed(config, max_batch);
  for (const memory::ChunkLayout& layout : make_layouts(config)) total += 2 * layout.bytes();
  return total;
}

absl::StatusOr<std::unique_ptr<GPT2>> GPT2::create(kernels::Backend* backend,
                                                   const ModelConfig& config, int max_batch,
                                                   bool resident_chunks) {
  DSINF_CHECK(max_batch >= 1);
  std::unique_ptr<GPT2> model(new GPT2(backend, config, max_batch));
  if (absl::Status s = model->allocate(resident_chunks); !s.ok()) return s;
  return model;
}

absl::Status GPT2::allocate(bool resident_chunks) {
  for (const memory::ChunkLayout& layout : layouts_) {
    if (!resident_chunks) break;
    absl::StatusOr<void*> p = backend_->allocate(layout.bytes());
    if (!p.ok()) return p.status();
    params_.push_back(static_cast<float*>(*p));
    absl::StatusOr<void*> g = backend_->allocate(layout.bytes());
    if (!g.ok()) return g.status();
    grads_.push_back(static_cast<float*>(*g));
  }
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

size_t GPT2::num_parameters() const {
  size_t n = 0;
  for (const memory::ChunkLayout& layout : layouts_) {
    for (const memory::TensorSlot& t : layout.tensors()) n += t.numel;
  }
  return n;
}

absl::Status GPT2::init_random(uint64_t seed) {
  Rng rng(seed);
  const float residual_std = 0.02f / std::sqrt(2.0f * static_cast<float>(config_.n_layer));
  for (size_t c = 0; c < layouts_.size(); ++c) {
    std::vector<float> host(layouts_[c].numel_padded(), 0.0f);
    const bool is_block = c >= 1 && c <= static_cast<size_t>(config_.n_layer);
    for (size_t t = 0; t < layouts_[c].tensors().size(); ++t) {
      const memory::TensorSlot& slot = layouts_[c].tensors()[t];
      float* dst = host.data() + slot.offset_elems;
      const bool is_matrix = slot.shape.size() == 2;
      const bool is_ln_weight =
          (!is_block && c != 0 && t == kLnfW) || (is_block && (t == kLn1W || t == kLn2W));
      if (is_matrix) {
        const float std_dev =
            (is_block && (t == kAttProjW || t == kFcProjW)) ? residual_std : 0.02f;
        for (size_t i = 0; i < slot.numel; ++i) dst[i] = static_cast<float>(rng.normal()) * std_dev;
      } else {
        std::fill(dst, dst + slot.numel, is_ln_weight ? 1.0f : 0.0f);
      }
    }
    if (absl::Status s = source_->write_params(c, host.data()); !s.ok()) return s;
  }
  return absl::OkStatus();
}

namespace {

std::string hf_name(const std::string& name) { return "transformer." + name; }

// Copies `src` laid out (rows, cols) into `dst` laid out (cols, rows).
void transpose(float* dst, const float* src, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
  }
}

bool tensor_is_conv1d(size_t chunk, size_t tensor, int n_layer) {
  return chunk >= 1 && chunk <= static_cast<size_t>(n_layer) && is_conv1d_weight(tensor);
}

}  // namespace

absl::Status GPT2::load_hf(const SafetensorsFile& file) {
  std::vector<std::string> expected;
  for (size_t c = 0; c < layouts_.size(); ++c) {
    std::vector<float> host(layouts_[c].numel_padded(), 0.0f);
    for (size_t t = 0; t < layouts_[c].tensors().size(); ++t) {
      const memory::TensorSlot& slot = layouts_[c].tensors()[t];
      std::string name = hf_name(slot.name);
      if (!file.entries().contains(name) && file.entries().contains(slot.name)) name = slot.name;
      expected.push_back(name);
      const bool conv1d = tensor_is_conv1d(c, t, config_.n_layer);
      std::vector<int64_t> hf_shape = slot.shape;
      if (conv1d) std::swap(hf_shape[0], hf_shape[1]);
      if (!file.entries().contains(name)) {
        return absl::InvalidArgumentError(
            absl::StrCat(file.path(), ": missing tensor '", hf_name(slot.name), "'"));
      }
      absl::StatusOr<std::vector<float>> values = file.read_f32(name, hf_shape);
      if (!values.ok()) return values.status();
      float* dst = host.data() + slot.offset_elems;
      if (conv1d) {
        transpose(dst, values->data(), hf_shape[0], hf_shape[1]);
      } else {
        std::copy(values->begin(), values->end(), dst);
      }
      if (c == 0 && t == kWte) {
        for (const char* head : {"lm_head.weight", "transformer.lm_head.weight"}) {
          if (!file.entries().contains(head)) continue;
          expected.push_back(head);
          absl::StatusOr<std::vector<float>> tied = file.read_f32(head, slot.shape);
          if (!tied.ok()) return tied.status();
          if (*tied != *values) {
            return absl::InvalidArgumentError(
                absl::StrCat(file.path(), ": '", head,
                             "' differs from the token embedding; dsinf's GPT-2 ties them"));
          }
        }
      }
    }
    if (absl::Status s = source_->write_params(c, host.data()); !s.ok()) return s;
  }
  for (const auto& [name, entry] : file.entries()) {
    const bool known = std::find(expected.begin(), expected.end(), name) != expected.end();
    const bool buffer = name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias");
    if (!known && !buffer) {
      return absl::InvalidArgumentError(absl::StrCat(
          file.path(), ": tensor '", name, "' does not belong to a GPT-2 with n_layer ",
          config_.n_layer, " (check model.n_layer against the file)"));
    }
  }
  return backend_->synchronize(Stream::kUpload);
}

absl::StatusOr<std::vector<HostTensor>> GPT2::export_hf(bool gradients) {
  std::vector<HostTensor> out;
  for (size_t c = 0; c < layouts_.size(); ++c) {
    std::vector<float> host(layouts_[c].numel_padded());
    if (absl::Status s = source_->read_chunk(c, gradients, host.data()); !s.ok()) return s;
    for (size_t t = 0; t < layouts_[c].tensors().size(); ++t) {
      const memory::TensorSlot& slot = layouts_[c].tensors()[t];
      HostTensor tensor{hf_name(slot.name), slot.shape, std::vector<float>(slot.numel)};
      const float* src = host.data() + slot.offset_elems;
      if (tensor_is_conv1d(c, t, config_.n_layer)) {
        std::swap(tensor.shape[0], tensor.shape[1]);
        transpose(tensor.data.data(), src, slot.shape[0], slot.shape[1]);
      } else {
        std::copy(src, src + slot.numel, tensor.data.begin());
      }
      out.push_back(std::move(tensor));
    }
  }
  return out;
}

void GPT2::block_forward(int l, const float* P, const float* residual_in, int B) {
  trace::Scope span(trace::Lane::kCompute, "block forward", 1 + l);
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const int T = config_.n_positions, C = config_.n_embd, NH = config_.n_head, N = B * T;
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

absl::StatusOr<float> GPT2::forward(const int32_t* inputs, const int32_t* targets, int B) {
  DSINF_CHECK(B >= 1 && B <= max_batch_);
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const int T = config_.n_positions, C = config_.n_embd, V = config_.vocab_size, N = B * T;
  const size_t BT = static_cast<size_t>(N);
  for (size_t i = 0; i < BT; ++i) {
    DSINF_CHECK(inputs[i] >= 0 && inputs[i] < V && targets[i] >= 0 && targets[i] < V);
  }
  if (absl::Status s = k.copy_to_device(a.inputs, inputs, BT * sizeof(int32_t), Stream::kUpload);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = k.copy_to_device(a.targets, targets, BT * sizeof(int32_t), Stream::kUpload);
      !s.ok()) {
    return s;
  }
  k.stream_wait(Stream::kCompute, k.record(Stream::kUpload));

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

  std::vector<float> losses(BT);
  k.stream_wait(Stream::kDownload, k.record(Stream::kCompute));
  if (absl::Status s =
          k.copy_to_host(losses.data(), a.losses, BT * sizeof(float), Stream::kDownload);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = k.synchronize(Stream::kDownload); !s.ok()) return s;
  double sum = 0;
  for (float x : losses) sum += x;
  last_batch_ = B;
  last_loss_sum_ = sum;
  return static_cast<float>(sum / static_cast<double>(BT));
}

absl::Status GPT2::block_backward(int l, const float* P, float* G, const float* residual_in,
                                  float* dresidual, int B) {
  trace::Scope span(trace::Lane::kCompute, "block backward", 1 + l);
  absl::Status status;
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const int T = config_.n_positions, C = config_.n_embd, NH = config_.n_head, N = B * T;
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

template <typename Body>
absl::Status GPT2::grad_visit(size_t c, Body&& body) {
  if (absl::Status s = backend_->fill_zero(visit_, layouts_[c].bytes(), Stream::kCompute);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = body(visit_); !s.ok()) return s;
  return source_->accumulate_grads(c, visit_);
}

absl::Status GPT2::backward(float dloss) {
  DSINF_CHECK_MSG(last_batch_ > 0, "backward() without a forward()");
  kernels::Backend& k = *backend_;
  Activations& a = *acts_;
  const int B = last_batch_, T = config_.n_positions, C = config_.n_embd, V = config_.vocab_size;
  const int N = B * T, L = config_.n_layer;
  const size_t BTC = static_cast<size_t>(N) * C, f = sizeof(float);
  const size_t fin = layouts_.size() - 1;
  last_batch_ = 0;  // the activations are spent (logits become dlogits)
  k.softmax_crossentropy(a.losses, a.logits, a.logits, a.targets, N, V, dloss);
  // The logits' matrix product: the embedding's first gradient visit.
  absl::StatusOr<const float*> embed = source_->acquire_params(0);
  if (!embed.ok()) return embed.status();
  absl::Status status = grad_visit(0, [&](float* G) {
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
  status = grad_visit(fin, [&](float* G) {
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
    status = grad_visit(
        1 + l, [&](float* G) { return block_backward(l, *P, G, residual_in, a.dresidual, B); });
    status.Update(source_->release_params(1 + l));
    if (!status.ok()) return status;
  }
  // The embedding's second visit needs no parameters.
  return grad_visit(0, [&](float* G) {
    k.encoder_backward(G + tensor_offset(0, kWte), G + tensor_offset(0, kWpe), a.dresidual,
                       a.inputs, B, T, C);
    return absl::OkStatus();
  });
}

absl::Status ResidentChunks::accumulate_grads(size_t c, const float* visit) {
  backend_->residual_forward(grads_[c], grads_[c], visit, layouts_[c].numel_padded());
  return absl::OkStatus();
}

absl::Status ResidentChunks::write_params(size_t c, const float* host) {
  if (absl::Status s = backend_->copy_to_device(
          params_[c], host, layouts_[c].numel_padded() * sizeof(float), Stream::kUpload);
      !s.ok()) {
    return s;
  }
  return backend_->synchronize(Stream::kUpload);
}

absl::Status ResidentChunks::read_chunk(size_t c, bool gradients, float* host) {
  if (absl::Status s =
          backend_->copy_to_host(host, gradients ? grads_[c] : params_[c],
                                 layouts_[c].numel_padded() * sizeof(float), Stream::kDownload);
      !s.ok()) {
    return s;
  }
  return backend_->synchronize(Stream::kDownload);
}

absl::Status GPT2::zero_grad() {
  DSINF_CHECK_MSG(resident_chunks(),
                  "zero_grad() is the resident chunks'; a source zeroes its own");
  for (size_t c = 0; c < layouts_.size(); ++c) {
    if (absl::Status s = backend_->fill_zero(grads_[c], layouts_[c].bytes(), Stream::kCompute);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace dsinf::trainer
