// The CUDA twins of the CPU decoder kernels (kernels/cpu/decoder_ops.h): the
// same shapes, layouts and "+=" conventions as kernels/decoder_ops.h, on
// device memory, queued on a stream. CudaBackend (cuda_backend.cc) calls
// these; the gpu-labelled tests compare each against the CPU.
//
// Everything computes in fp32 with plain kernels written for clarity (no
// tensor cores): one warp per row for RMSNorm, grid-stride loops for the
// elementwise ops, and attention in tiles with an online softmax, never
// allocating a (T,T) buffer. Every result is deterministic: reductions run in
// a fixed order and nothing uses floating-point atomics.
//
// Errors: a failed launch returns kInternal naming the kernel, a bad shape
// kInvalidArgument. Nothing here waits for the device.
//
// This header needs no CUDA headers: streams are cudaStream_t passed as void*.
#pragma once

#include <cstddef>

#include "absl/status/status.h"

namespace dsinf::kernels::cuda {

using StreamHandle = void*;  // a cudaStream_t (same as ops.h's)

// The largest head dimension the attention kernels take (their per-lane registers).
inline constexpr int kMaxAttentionHeadDim = 256;

absl::Status rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N,
                             int C, float eps, StreamHandle stream);
// dweight is reduced over rows in a fixed order per column.
absl::Status rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                              const float* weight, const float* rstd, int N, int C,
                              StreamHandle stream);
// D even.
absl::Status rope_forward(float* x, const float* cos, const float* sin, int B, int T, int H, int D,
                          StreamHandle stream);
absl::Status rope_backward(float* dx, const float* cos, const float* sin, int B, int T, int H,
                           int D, StreamHandle stream);
absl::Status swiglu_forward(float* out, const float* gate, const float* up, size_t n,
                            StreamHandle stream);
absl::Status swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                             const float* up, size_t n, StreamHandle stream);
// One block per (b, query head, tile of query rows), one warp per query row;
// D <= kMaxAttentionHeadDim.
absl::Status flash_attention_forward(float* out, float* lse, const float* q, const float* k,
                                     const float* v, int B, int T, int NH, int KV, int D,
                                     float scale, StreamHandle stream);
// scratch (B,NH,T) receives dout . out per row; then dq per query row (over
// the keys in order) and dk, dv per key row (over the group's query heads and
// the later query rows in order), each written by one warp.
absl::Status flash_attention_backward(float* dq, float* dk, float* dv, const float* dout,
                                      const float* q, const float* k, const float* v,
                                      const float* out, const float* lse, float* scratch, int B,
                                      int T, int NH, int KV, int D, float scale,
                                      StreamHandle stream);

// Attention of Tq queries at positions [P - Tq, P) over a key/value cache of
// positions [0, P) (kernels/decoder_ops.h; batch 1). One warp per (query,
// head) row, walking the keys 32 at a time with an online softmax; D <=
// kMaxAttentionHeadDim.
absl::Status cached_attention_forward(float* out, const float* q, const float* k_cache,
                                      const float* v_cache, int Tq, int P, int NH, int KV, int D,
                                      float scale, StreamHandle stream);

}  // namespace dsinf::kernels::cuda
