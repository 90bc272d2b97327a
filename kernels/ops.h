// The op half of the backend interface: every op a model's layer program
// runs, queued on the compute stream of a Device (kernels/device.h). A new
// model family adds the ops it needs as a new interface beside this one,
// implemented by each backend; nothing here changes for it.
//
// Shapes: B batch, T sequence length, C channels, NH heads, V vocabulary,
// N = B*T rows, OC output channels. Pointers are device pointers.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dsinf::kernels {

// The target of a position that carries no loss (a prompt token of SFT
// data, padding); any negative target is ignored the same way.
inline constexpr int32_t kIgnoreTarget = -100;

struct AdamHyper {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  bool adam_w_mode = true;  // decoupled weight decay (AdamW); else L2 added to the gradient
  bool bias_correction = true;
  int64_t step = 1;         // 1-based optimizer step, for bias correction
  float grad_scale = 1.0f;  // gradients are multiplied by this first (unscale x clip)
};

class Ops {
 public:
  virtual ~Ops() = default;

  // ---- ops, queued on the compute stream; "+=" outputs accumulate ----
  // out (B,T,C) = wte[inp] + wpe[t]; inp (B,T) token ids < V. wpe null: no position
  // embeddings (the decoder families rotate q and k instead), out = wte[inp].
  virtual void encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe,
                               int B, int T, int C) = 0;
  // dwte (V,C) +=, dwpe (T,C) += from dout (B,T,C); dwpe null: no position embeddings.
  virtual void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp,
                                int B, int T, int C) = 0;
  // out (N,C); mean, rstd (N); LayerNorm with eps 1e-5 over C.
  virtual void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                 const float* weight, const float* bias, int N, int C) = 0;
  // dinp (N,C) +=, dweight (C) +=, dbias (C) +=.
  virtual void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                  const float* inp, const float* weight, const float* mean,
                                  const float* rstd, int N, int C) = 0;
  // out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC); bias may be null.
  virtual void matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                              int N, int C, int OC) = 0;
  // dinp (N,C) +=, dweight (OC,C) +=, dbias (OC) += (null: no bias). dweight null: the
  // input's gradient only (a frozen weight), and then dbias must be null too.
  virtual void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                               const float* inp, const float* weight, int N, int C, int OC) = 0;
  // Causal self-attention. qkv (B,T,3C) = [q | k | v]; out (B,T,C); att (B,NH,T,T) the softmax
  // probabilities, kept for backward (entries above the diagonal are written as 0).
  virtual void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C,
                                 int NH) = 0;
  // dqkv (B,T,3C) += from dout (B,T,C).
  virtual void attention_backward(float* dqkv, const float* dout, const float* qkv,
                                  const float* att, int B, int T, int C, int NH) = 0;
  // GELU, tanh approximation, elementwise over n.
  virtual void gelu_forward(float* out, const float* inp, size_t n) = 0;
  virtual void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) = 0;  // +=
  // out = a + b, elementwise (out may alias a or b).
  virtual void residual_forward(float* out, const float* a, const float* b, size_t n) = 0;
  // Softmax cross-entropy over V for each of N rows. losses (N) = -log softmax(logits)[target].
  // When dlogits is not null it receives (softmax - onehot(target)) * dloss (may alias logits).
  // A negative target (kIgnoreTarget: a masked position, Hugging Face's -100
  // label) gives a loss of 0 and a zero gradient row.
  virtual void softmax_crossentropy(float* losses, float* dlogits, const float* logits,
                                    const int32_t* targets, int N, int V, float dloss) = 0;
  // x *= s over n elements.
  virtual void scale(float* x, float s, size_t n) = 0;
  // out (n) = in * s where kept, 0 where dropped (kernels/dropout_mask.h: element i of
  // key `key` with probability p; p 0 keeps all: a scaled copy). out may alias in.
  // Dropout is dropout_scale(out, in, n, 1 / (1 - p), p, key); its backward is the same
  // call on the gradient.
  virtual void dropout_scale(float* out, const float* in, size_t n, float s, float p,
                             uint64_t key) = 0;
  // Sum of squares of x (n), accumulated in double in a fixed order (deterministic).
  virtual double sum_squares(const float* x, size_t n) = 0;
  // One Adam/AdamW step over n elements: params, m, v updated in place from grads.
  virtual void adam_step(float* params, const float* grads, float* m, float* v, size_t n,
                         const AdamHyper& hyper) = 0;
};

}  // namespace dsinf::kernels
