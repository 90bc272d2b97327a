// The ops of the decoder families (Llama, Mistral, Qwen2, Qwen3) beside the
// GPT-2 ones in kernels/ops.h: RMSNorm, rotary embeddings, the SwiGLU gate and
// causal grouped-query attention computed in tiles with an online softmax, so
// that no (T,T) tensor is ever materialised (flash-attention's scheme: forward
// keeps only each row's log-sum-exp; backward recomputes the probabilities).
// Queued on the compute stream of the Device, like every op; "+=" outputs
// accumulate into what the caller put there.
//
// Shapes: B batch, T sequence length, NH query heads, KV key/value heads
// (NH % KV == 0; query head h reads key/value head h / (NH / KV)), D head
// dimension, N rows, C channels. Every tensor is dense and row-major.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dsinf::kernels {

class DecoderOps {
 public:
  virtual ~DecoderOps() = default;

  // out (N,C) = inp * rstd * weight with rstd (N) = 1 / sqrt(mean over C of inp^2 + eps),
  // computed in fp32 (Hugging Face's LlamaRMSNorm). rstd is kept for backward.
  virtual void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight,
                               int N, int C, float eps) = 0;
  // dinp (N,C) +=, dweight (C) += from dout (N,C); inp, weight and rstd as in forward.
  virtual void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                                const float* weight, const float* rstd, int N, int C) = 0;

  // Rotary position embedding in place on x (B,T,H,D), Hugging Face's rotate-half
  // convention: for i < D/2, with c = cos[t,i], s = sin[t,i] (tables (T, D/2)),
  //   x[i] <- x[i] c - x[i + D/2] s,   x[i + D/2] <- x[i + D/2] c + x[i] s.
  virtual void rope_forward(float* x, const float* cos, const float* sin, int B, int T, int H,
                            int D) = 0;
  // The transpose of that rotation, in place on the gradient dx (B,T,H,D):
  //   dx[i] <- dx[i] c + dx[i + D/2] s,   dx[i + D/2] <- dx[i + D/2] c - dx[i] s.
  virtual void rope_backward(float* dx, const float* cos, const float* sin, int B, int T, int H,
                             int D) = 0;

  // out (n) = silu(gate) * up, silu(x) = x / (1 + exp(-x)).
  virtual void swiglu_forward(float* out, const float* gate, const float* up, size_t n) = 0;
  // dgate (n) +=, dup (n) += from dout (n).
  virtual void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                               const float* up, size_t n) = 0;

  // Causal attention: out (B,T,NH,D) = softmax(scale * q k^T, masked to keys <= the query's
  // position) v, per head; q (B,T,NH,D), k and v (B,T,KV,D). lse (B,NH,T) receives each row's
  // natural log-sum-exp of the scaled, masked scores, for backward.
  virtual void flash_attention_forward(float* out, float* lse, const float* q, const float* k,
                                       const float* v, int B, int T, int NH, int KV, int D,
                                       float scale) = 0;
  // dq (B,T,NH,D) +=, dk (B,T,KV,D) +=, dv (B,T,KV,D) += from dout (B,T,NH,D); q, k, v, out and
  // lse as forward produced them. scratch holds B*NH*T floats (each row's dout . out).
  virtual void flash_attention_backward(float* dq, float* dk, float* dv, const float* dout,
                                        const float* q, const float* k, const float* v,
                                        const float* out, const float* lse, float* scratch, int B,
                                        int T, int NH, int KV, int D, float scale) = 0;

  // Attention of Tq new queries against a key/value cache (generation, batch 1): q and out
  // (Tq,NH,D) are the rows of positions [P - Tq, P); k_cache and v_cache (at least P rows, KV, D)
  // hold the keys and values of positions [0, P), the new ones included. Query i attends to the
  // keys of positions 0 .. P - Tq + i (causal), grouped as flash_attention_forward's.
  virtual void cached_attention_forward(float* out, const float* q, const float* k_cache,
                                        const float* v_cache, int Tq, int P, int NH, int KV, int D,
                                        float scale) = 0;
};

}  // namespace dsinf::kernels
