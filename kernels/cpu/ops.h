// The CPU reference kernels: one function template per op of the Backend
// interface (kernels/backend.h), instantiated for float (what CpuBackend runs)
// and double (what the finite-difference tests check against). The scalar
// template parameter is `Real` so that T keeps its llm.c meaning below.
//
// Conventions are those of backend.h: B batch, T sequence length, C channels,
// NH heads, V vocabulary, N = B*T rows, OC output channels; every tensor is
// dense and row-major; "+=" outputs accumulate into what the caller put there.
//
// Determinism: every output element is computed by exactly one task with a
// fixed loop order, and reductions across rows are partitioned over output
// columns, each summed over rows in index order. Results are therefore
// bit-identical whatever the oneTBB thread count or schedule. Matmuls call
// OpenBLAS gemm single-threaded (the kernels set OpenBLAS to one thread) on
// fixed output tiles, in parallel over tiles.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "kernels/backend.h"
#include "kernels/cpu/half.h"

namespace dsinf::kernels::cpu {

// Arguments that never decide Real, so `nullptr` (optional tensors) and plain literals (dloss, s)
// can be passed without naming the instantiation.
template <typename X>
using NoDeduce = std::type_identity_t<X>;

// out (B,T,C) = wte[inp[b,t]] + wpe[t]; inp (B,T) token ids < V; wte (V,C); wpe (T,C), or null
// for no position embeddings (out = wte[inp[b,t]]).
template <typename Real>
void encoder_forward(Real* out, const int32_t* inp, const Real* wte, NoDeduce<const Real*> wpe,
                     int B, int T, int C);

// dwte (V,C) +=, dwpe (T,C) += from dout (B,T,C); inp (B,T). dwpe null: no position embeddings.
template <typename Real>
void encoder_backward(Real* dwte, NoDeduce<Real*> dwpe, const Real* dout, const int32_t* inp, int B,
                      int T, int C);

// out (N,C) = (inp - mean) * rstd * weight + bias; mean (N), rstd (N) saved for backward;
// inp (N,C); weight (C); bias (C). Biased variance, eps 1e-5.
template <typename Real>
void layernorm_forward(Real* out, Real* mean, Real* rstd, const Real* inp, const Real* weight,
                       const Real* bias, int N, int C);

// dinp (N,C) +=, dweight (C) +=, dbias (C) +=; dout (N,C); inp (N,C); weight (C);
// mean (N), rstd (N) from layernorm_forward.
template <typename Real>
void layernorm_backward(Real* dinp, Real* dweight, Real* dbias, const Real* dout, const Real* inp,
                        const Real* weight, const Real* mean, const Real* rstd, int N, int C);

// out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC); bias may be null.
template <typename Real>
void matmul_forward(Real* out, const Real* inp, const Real* weight, NoDeduce<const Real*> bias,
                    int N, int C, int OC);

// dinp (N,C) += dout @ weight; dweight (OC,C) += dout^T @ inp; dbias (OC) += column sums of
// dout (null: the layer has no bias). dout (N,OC); inp (N,C); weight (OC,C). dinp and dweight
// must not be null.
template <typename Real>
void matmul_backward(Real* dinp, Real* dweight, NoDeduce<Real*> dbias, const Real* dout,
                     const Real* inp, const Real* weight, int N, int C, int OC);

// dbias (OC) += column sums of dout (N,OC), each over the rows in order: matmul_backward's bias
// gradient on its own.
template <typename Real>
void bias_backward(Real* dbias, const Real* dout, int N, int OC);

// x as a product's operand reads it in precision p: rounded to nearest even to bf16 or fp16
// (fp16 overflows to infinity) and back, as tensor cores read it; x itself for kFp32.
inline float round_operand(Precision p, float x) {
  if (p == Precision::kBf16) return bf16_to_float(float_to_bf16(x));
  if (p == Precision::kFp16) return f16_to_float(float_to_f16(x));
  return x;
}

// Causal multi-head self-attention. qkv (B,T,3C) holds q at channels [0,C), k at [C,2C),
// v at [2C,3C); head h uses channels [h*hs,(h+1)*hs) of each, hs = C/NH. out (B,T,C);
// att (B,NH,T,T) the softmax probabilities of scores q.k/sqrt(hs) over t2 <= t, exact
// zeros above the diagonal.
// `operands` (a reduced precision) rounds att where it multiplies v, as a GPU's
// bf16/fp16 product reads it; q, k, v are the caller's to round (they are only
// ever product operands). Real float only for a reduced precision.
template <typename Real>
void attention_forward(Real* out, Real* att, const Real* qkv, int B, int T, int C, int NH,
                       Precision operands = Precision::kFp32);

// dqkv (B,T,3C) += from dout (B,T,C); qkv (B,T,3C); att (B,NH,T,T) from attention_forward.
// `operands` rounds att and d(score) where they are product operands (the
// softmax gradient itself stays in Real); dout, q, k, v are the caller's to round.
template <typename Real>
void attention_backward(Real* dqkv, const Real* dout, const Real* qkv, const Real* att, int B,
                        int T, int C, int NH, Precision operands = Precision::kFp32);

// out (n) = 0.5*x*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x^3))), x = inp (n). tanh is evaluated
// from one exp (see ops.cc), equal to std::tanh to a few ulp.
template <typename Real>
void gelu_forward(Real* out, const Real* inp, size_t n);

// dinp (n) += gelu'(inp) * dout; inp (n); dout (n).
template <typename Real>
void gelu_backward(Real* dinp, const Real* inp, const Real* dout, size_t n);

// out (n) = a (n) + b (n); out may alias a or b.
template <typename Real>
void residual_forward(Real* out, const Real* a, const Real* b, size_t n);

// Per row of logits (N,V): losses (N) = logsumexp(logits) - logits[target], computed with max
// subtraction; targets (N) < V. When dlogits (N,V) is not null it receives
// (softmax(logits) - onehot(target)) * dloss; dlogits may alias logits.
template <typename Real>
void softmax_crossentropy(Real* losses, NoDeduce<Real*> dlogits, const Real* logits,
                          const int32_t* targets, int N, int V, NoDeduce<Real> dloss);

// x (n) *= s.
template <typename Real>
void scale(Real* x, NoDeduce<Real> s, size_t n);

// out (n) = in * s where dropout_keep(key, i, p), else 0; out may alias in.
template <typename Real>
void dropout_scale(Real* out, const Real* in, size_t n, NoDeduce<Real> s, float p, uint64_t key);

// Sum of squares of x (n): each fixed block of kSumSquaresBlock elements is summed in double
// (over a fixed set of lanes), then the block sums are added in index order.
inline constexpr size_t kSumSquaresBlock = 4096;
template <typename Real>
double sum_squares(const Real* x, size_t n);

// One Adam step over params, grads, m, v (all n), PyTorch AdamW form, updated in place.
// Per call, in double from the (float) hyper-parameters, then cast to Real once (the double
// instantiation uses the same float AdamHyper, widened):
//   bc1 = bias_correction ? 1 - beta1^step : 1;  bc2 = bias_correction ? 1 - beta2^step : 1
//   step_size = lr / bc1;  sqrt_bc2 = sqrt(bc2);  decay = 1 - lr * weight_decay
//   one_minus_beta1 = 1 - beta1;  one_minus_beta2 = 1 - beta2
// Per element, in Real, evaluated exactly in this order:
//   g = grad * grad_scale
//   if (!adam_w_mode) g = g + weight_decay * p                       // L2
//   m = beta1 * m + one_minus_beta1 * g
//   v = beta2 * v + one_minus_beta2 * (g * g)
//   if (adam_w_mode) p = p * decay                                   // decoupled
//   p = p - (step_size * m) / (sqrt(v) / sqrt_bc2 + eps)
// The fused optimizer kernels are checked against this formula.
template <typename Real>
void adam_step(Real* params, const Real* grads, Real* m, Real* v, size_t n, const AdamHyper& hyper);

}  // namespace dsinf::kernels::cpu
