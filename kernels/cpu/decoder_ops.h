// The CPU reference kernels of the decoder families' ops (kernels/decoder_ops.h):
// one function template per op, instantiated for float (what CpuBackend runs)
// and double (what the finite-difference tests check against), as in
// kernels/cpu/ops.h.
//
// Shapes are decoder_ops.h's: B batch, T sequence length, NH query heads, KV
// key/value heads (NH % KV == 0), D head dimension, N rows, C channels; every
// tensor is dense and row-major; "+=" outputs accumulate into what the caller
// put there.
//
// Determinism: every output element is computed by exactly one task with a
// fixed loop order (see parallel.h), so results are bit-identical whatever
// the oneTBB thread count or schedule. Attention's products are register-
// blocked loops in which every element adds its products in index order
// starting from its current value, so the blocking never changes a bit either.
#pragma once

#include <cstddef>
#include <type_traits>

namespace dsinf::kernels::cpu {

// Queries and keys are taken kAttentionTile at a time: the attention kernels'
// scratch is a few kAttentionTile x kAttentionTile and kAttentionTile x D
// blocks per task, never (T,T).
inline constexpr int kAttentionTile = 64;

// out (N,C) = (inp * rstd) * weight; rstd (N) = 1 / sqrt(mean over C of inp^2 + eps), the sum
// of squares accumulated in Real (fp32 for float, as Hugging Face's LlamaRMSNorm computes it)
// over 8 interleaved lanes added pairwise: a fixed order that vectorizes.
template <typename Real>
void rmsnorm_forward(Real* out, Real* rstd, const Real* inp, const Real* weight, int N, int C,
                     std::type_identity_t<Real> eps);

// dinp (N,C) +=, dweight (C) += from dout (N,C); inp (N,C), weight (C) and rstd (N) as in forward.
// dweight is reduced over rows partitioned by column, each summed over the rows in order.
template <typename Real>
void rmsnorm_backward(Real* dinp, Real* dweight, const Real* dout, const Real* inp,
                      const Real* weight, const Real* rstd, int N, int C);

// Rotate-half rotary embedding in place on x (B,T,H,D); cos, sin (T, D/2); D even.
template <typename Real>
void rope_forward(Real* x, const Real* cos, const Real* sin, int B, int T, int H, int D);

// Its transpose, in place on dx (B,T,H,D).
template <typename Real>
void rope_backward(Real* dx, const Real* cos, const Real* sin, int B, int T, int H, int D);

// out (n) = silu(gate) * up, silu(x) = x / (1 + exp(-x)).
template <typename Real>
void swiglu_forward(Real* out, const Real* gate, const Real* up, size_t n);

// dgate (n) += dout * up * silu'(gate), dup (n) += dout * silu(gate).
template <typename Real>
void swiglu_backward(Real* dgate, Real* dup, const Real* dout, const Real* gate, const Real* up,
                     size_t n);

// Causal grouped-query attention, flash style: out (B,T,NH,D), lse (B,NH,T) (natural log) from
// q (B,T,NH,D), k and v (B,T,KV,D). One task per (b, query head, query tile) walks the key tiles
// up to the diagonal in order with an online softmax (running max and sum per row).
template <typename Real>
void flash_attention_forward(Real* out, Real* lse, const Real* q, const Real* k, const Real* v,
                             int B, int T, int NH, int KV, int D, std::type_identity_t<Real> scale);

// dq (B,T,NH,D) +=, dk and dv (B,T,KV,D) += from dout (B,T,NH,D), recomputing the probabilities
// from lse; scratch (B,NH,T) receives each row's dout . out. dq: one task per (b, query head,
// query tile) over the key tiles in order; dk and dv: one task per (b, kv head, key tile) over
// the group's query heads in order and, per head, the query tiles from the diagonal on.
template <typename Real>
void flash_attention_backward(Real* dq, Real* dk, Real* dv, const Real* dout, const Real* q,
                              const Real* k, const Real* v, const Real* out, const Real* lse,
                              Real* scratch, int B, int T, int NH, int KV, int D,
                              std::type_identity_t<Real> scale);

// Attention of Tq queries at positions [P - Tq, P) over a cache of keys and values of positions
// [0, P) (kernels/decoder_ops.h): q, out (Tq,NH,D); k_cache, v_cache (>= P rows, KV, D). One task
// per (query, head) row: the scores in a row buffer, its max, exponentials and sum, then the
// weighted values, each summed over the keys in order.
template <typename Real>
void cached_attention_forward(Real* out, const Real* q, const Real* k_cache, const Real* v_cache,
                              int Tq, int P, int NH, int KV, int D,
                              std::type_identity_t<Real> scale);

}  // namespace dsinf::kernels::cpu
