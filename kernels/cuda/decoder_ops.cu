// The CUDA decoder kernels (see decoder_ops.h, and kernels/cpu/decoder_ops.cc
// for the semantics each reproduces). Plain fp32 kernels written for clarity.
//
// Attention. A block holds kRowsPerBlock rows of one (b, head), one warp per
// row, and walks tiles of kTileRows rows of the other side staged in shared
// memory, one lane per staged row:
//  - forward and dq: the block's rows are queries, the staged rows keys and
//    values up to the block's last query. Lane j scores key j0 + j; the warp
//    reduces max and sum with butterflies; then each lane, owning dimensions
//    lane, lane + 32, ... of the row's accumulator (registers), adds the
//    tile's keys in order, their weights broadcast by shuffles. The forward
//    keeps a running max and sum (online softmax); dq recomputes the
//    probabilities from lse.
//  - dk, dv: the block's rows are keys of one kv head, the staged rows queries
//    (with dout, lse and delta) of each query head of the group in turn, from
//    the block's first key on; lane i handles query i0 + i.
// Every sum runs in a fixed order and each output element is written by one
// lane, so results are deterministic; no (T,T) buffer exists.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/decoder_ops.h"
#include "kernels/cuda/warp.cuh"

namespace dsinf::kernels::cuda {
namespace {

constexpr int kThreads = 256;  // a multiple of 32
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr size_t kMaxBlocks = 8192;  // grid-stride kernels
// RMSNorm's dweight: a block owns kColTile adjacent columns (one per lane) and
// kRowLanes row lanes; lane y sums rows y, y + kRowLanes, ... in order and the
// lanes' partials are added in lane order.
constexpr int kColTile = 32;
constexpr int kRowLanes = 16;
constexpr int kColThreads = kColTile * kRowLanes;
// Attention: rows per block (one per warp), rows per staged tile (one per lane)
// and accumulator registers per lane.
constexpr int kRowsPerBlock = kWarpsPerBlock;
constexpr int kTileRows = 32;
constexpr int kDimsPerLane = kMaxAttentionHeadDim / 32;
constexpr size_t kDefaultSharedBytes = size_t{48} << 10;  // more needs an opt-in

absl::Status invalid(const std::string& what) { return absl::InvalidArgumentError(what); }

cudaStream_t as_stream(StreamHandle s) { return static_cast<cudaStream_t>(s); }

unsigned grid_for(size_t units) {
  const size_t blocks = (units + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::clamp<size_t>(blocks, 1, kMaxBlocks));
}

// Blocks for `rows` rows at one warp per row.
unsigned row_blocks(size_t rows) {
  return static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

// ------------------------------------------------------------ RMSNorm --

// One warp per row.
__global__ void __launch_bounds__(kThreads)
    rmsnorm_forward_kernel(float* out, float* rstd, const float* inp, const float* weight, int N,
                           int C, float eps) {
  const int lane = threadIdx.x & 31;
  const int row =
      static_cast<int>(blockIdx.x) * kWarpsPerBlock + static_cast<int>(threadIdx.x >> 5);
  if (row >= N) return;
  const float* x = inp + static_cast<size_t>(row) * C;
  float sq = 0.0f;
  for (int c = lane; c < C; c += 32) sq += x[c] * x[c];
  const float s = 1.0f / sqrtf(warp_sum(sq) / static_cast<float>(C) + eps);
  float* o = out + static_cast<size_t>(row) * C;
  for (int c = lane; c < C; c += 32) o[c] = (x[c] * s) * weight[c];
  if (lane == 0) rstd[row] = s;
}

// dinp += per row, one warp per row: dx = s * (w dout - norm * mean(w dout * norm)).
__global__ void __launch_bounds__(kThreads)
    rmsnorm_backward_kernel(float* dinp, const float* dout, const float* inp, const float* weight,
                            const float* rstd, int N, int C) {
  const int lane = threadIdx.x & 31;
  const int row =
      static_cast<int>(blockIdx.x) * kWarpsPerBlock + static_cast<int>(threadIdx.x >> 5);
  if (row >= N) return;
  const size_t base = static_cast<size_t>(row) * C;
  const float* x = inp + base;
  const float* dy = dout + base;
  const float s = rstd[row];
  float sum = 0.0f;
  for (int c = lane; c < C; c += 32) sum += (weight[c] * dy[c]) * (x[c] * s);
  const float mean = warp_sum(sum) / static_cast<float>(C);
  float* dx = dinp + base;
  for (int c = lane; c < C; c += 32) dx[c] += (weight[c] * dy[c] - (x[c] * s) * mean) * s;
}

// dweight[c] += sum over rows n of (inp[n][c] * rstd[n]) * dout[n][c]. Block (kColTile, kRowLanes).
__global__ void __launch_bounds__(kColThreads)
    rmsnorm_dweight_kernel(float* dweight, const float* dout, const float* inp, const float* rstd,
                           int N, int C) {
  __shared__ float part[kRowLanes][kColTile];
  const int x = threadIdx.x;
  const int y = threadIdx.y;
  const int c = static_cast<int>(blockIdx.x) * kColTile + x;
  float acc = 0.0f;
  if (c < C) {
    for (int n = y; n < N; n += kRowLanes) {
      const size_t i = static_cast<size_t>(n) * C + c;
      acc += (inp[i] * rstd[n]) * dout[i];
    }
  }
  part[y][x] = acc;
  __syncthreads();
  if (y == 0 && c < C) {
    float total = 0.0f;
    for (int r = 0; r < kRowLanes; ++r) total += part[r][x];
    dweight[c] += total;
  }
}

// ---------------------------------------------------- RoPE and SwiGLU --

// One thread per (row, i < D/2) pair; rows are (b, t, h) of x (B,T,H,D).
template <bool kTranspose>
__global__ void __launch_bounds__(kThreads)
    rope_kernel(float* x, const float* cos, const float* sin, size_t pairs, int T, int H,
                int half) {
  const size_t stride = size_t{gridDim.x} * blockDim.x;
  for (size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x; i < pairs; i += stride) {
    const size_t r = i / half;
    const int j = static_cast<int>(i - r * half);
    const size_t t = r / H % T;
    float* row = x + r * 2 * half;
    const float a = row[j], b = row[j + half];
    const float c = cos[t * half + j], s = sin[t * half + j];
    if constexpr (kTranspose) {
      row[j] = a * c + b * s;
      row[j + half] = b * c - a * s;
    } else {
      row[j] = a * c - b * s;
      row[j + half] = b * c + a * s;
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    swiglu_forward_kernel(float* out, const float* gate, const float* up, size_t n) {
  const size_t stride = size_t{gridDim.x} * blockDim.x;
  for (size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void __launch_bounds__(kThreads)
    swiglu_backward_kernel(float* dgate, float* dup, const float* dout, const float* gate,
                           const float* up, size_t n) {
  const size_t stride = size_t{gridDim.x} * blockDim.x;
  for (size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float g = gate[i];
    const float e = 1.0f + expf(-g);
    const float sigmoid = 1.0f / e;
    dgate[i] += dout[i] * up[i] * (sigmoid * (1.0f + g * (1.0f - sigmoid)));
    dup[i] += dout[i] * (g / e);
  }
}

// ----------------------------------------------------------- attention --

struct AttentionDims {
  int B, T, NH, KV, D;
  float scale;
};

// Element offset of row (b, t) of head `head` in a (B,T,heads,D) tensor.
__device__ __forceinline__ size_t row_offset(const AttentionDims& a, int b, int t, int heads,
                                             int head) {
  return ((static_cast<size_t>(b) * a.T + t) * heads + head) * a.D;
}

// Stages rows [first, first + count) of head `head` of a (B,T,heads,D) tensor in shared memory
// with row stride ld; rows past T are zeros. The whole block calls it.
__device__ void stage_rows(float* dst, int ld, const float* src, const AttentionDims& a, int b,
                           int first, int count, int heads, int head) {
  for (int i = threadIdx.x; i < count * a.D; i += blockDim.x) {
    const int r = i / a.D;
    const int d = i - r * a.D;
    const int t = first + r;
    dst[r * ld + d] = t < a.T ? src[row_offset(a, b, t, heads, head) + d] : 0.0f;
  }
}

__device__ __forceinline__ float dot(const float* x, const float* y, int D) {
  float acc = 0.0f;
  for (int d = 0; d < D; ++d) acc += x[d] * y[d];
  return acc;
}

// acc[r] (dimension lane + 32 r) += sum over the 32 staged rows i in order of w_i * rows[i][d],
// w_i being lane i's `w`.
__device__ __forceinline__ void add_weighted_rows(float (&acc)[kDimsPerLane], float w,
                                                  const float* rows, int ld, int D, int lane) {
  for (int i = 0; i < kTileRows; ++i) {
    const float wi = __shfl_sync(0xffffffffu, w, i);
#pragma unroll
    for (int r = 0; r < kDimsPerLane; ++r) {
      const int d = lane + 32 * r;
      if (d < D) acc[r] += wi * rows[i * ld + d];
    }
  }
}

// Shared floats of each kernel, for D.
size_t forward_shared_floats(int D) {
  return size_t{kTileRows} * (D + 1) + size_t{kTileRows} * D + size_t{kRowsPerBlock} * D;
}
size_t dq_shared_floats(int D) {
  return 2 * size_t{kTileRows} * (D + 1) + 2 * size_t{kRowsPerBlock} * D;
}
size_t dkv_shared_floats(int D) { return dq_shared_floats(D) + 2 * kTileRows; }

// Block b of a grid of B * heads * ceil(T / kRowsPerBlock): (batch row, head, first row).
struct BlockRows {
  int b, head, first;
};
__device__ __forceinline__ BlockRows block_rows(const AttentionDims& a, int heads) {
  const int tiles = (a.T + kRowsPerBlock - 1) / kRowsPerBlock;
  const int tile = static_cast<int>(blockIdx.x % tiles);
  const int head = static_cast<int>(blockIdx.x / tiles % heads);
  const int b = static_cast<int>(blockIdx.x / tiles / heads);
  return {b, head, tile * kRowsPerBlock};
}

__global__ void __launch_bounds__(kThreads)
    flash_forward_kernel(float* out, float* lse, const float* q, const float* k, const float* v,
                         AttentionDims a) {
  extern __shared__ float smem[];
  const int D = a.D;
  float* k_s = smem;                       // (kTileRows, D + 1)
  float* v_s = k_s + kTileRows * (D + 1);  // (kTileRows, D)
  float* q_s = v_s + kTileRows * D;        // (kRowsPerBlock, D)
  const BlockRows blk = block_rows(a, a.NH);
  const int g = blk.head / (a.NH / a.KV);
  const int warp = static_cast<int>(threadIdx.x >> 5), lane = static_cast<int>(threadIdx.x & 31);
  const int t = blk.first + warp;  // this warp's query
  const int last = min(a.T, blk.first + kRowsPerBlock) - 1;
  stage_rows(q_s, D, q, a, blk.b, blk.first, kRowsPerBlock, a.NH, blk.head);
  float o[kDimsPerLane] = {};
  float m = -INFINITY, l = 0.0f;
  for (int j0 = 0; j0 <= last; j0 += kTileRows) {
    __syncthreads();  // the previous tile is consumed
    stage_rows(k_s, D + 1, k, a, blk.b, j0, kTileRows, a.KV, g);
    stage_rows(v_s, D, v, a, blk.b, j0, kTileRows, a.KV, g);
    __syncthreads();
    if (t >= a.T || j0 > t) continue;  // the same for the whole warp
    const int key = j0 + lane;
    const float s = key <= t ? dot(q_s + warp * D, k_s + lane * (D + 1), D) * a.scale : -INFINITY;
    const float m_new = fmaxf(m, warp_max(s));
    const float p = key <= t ? expf(s - m_new) : 0.0f;
    const float alpha = expf(m - m_new);  // 0 on the first tile (m = -inf)
    l = l * alpha + warp_sum(p);
    m = m_new;
#pragma unroll
    for (int r = 0; r < kDimsPerLane; ++r) o[r] *= alpha;
    add_weighted_rows(o, p, v_s, D, D, lane);
  }
  if (t >= a.T) return;
  float* out_row = out + row_offset(a, blk.b, t, a.NH, blk.head);
#pragma unroll
  for (int r = 0; r < kDimsPerLane; ++r) {
    if (lane + 32 * r < D) out_row[lane + 32 * r] = o[r] / l;
  }
  if (lane == 0) lse[(static_cast<size_t>(blk.b) * a.NH + blk.head) * a.T + t] = m + logf(l);
}

// delta (B,NH,T) = dout . out per row; one warp per row.
__global__ void __launch_bounds__(kThreads)
    flash_delta_kernel(float* delta, const float* dout, const float* out, AttentionDims a) {
  const int lane = threadIdx.x & 31;
  const size_t row = size_t{blockIdx.x} * kWarpsPerBlock + (threadIdx.x >> 5);
  if (row >= static_cast<size_t>(a.B) * a.NH * a.T) return;
  const int t = static_cast<int>(row % a.T);
  const int h = static_cast<int>(row / a.T % a.NH);
  const int b = static_cast<int>(row / a.T / a.NH);
  const size_t at = row_offset(a, b, t, a.NH, h);
  float acc = 0.0f;
  for (int d = lane; d < a.D; d += 32) acc += dout[at + d] * out[at + d];
  acc = warp_sum(acc);
  if (lane == 0) delta[row] = acc;
}

// dq += per query row, over the keys up to it in order.
__global__ void __launch_bounds__(kThreads)
    flash_dq_kernel(float* dq, const float* dout, const float* q, const float* k, const float* v,
                    const float* lse, const float* delta, AttentionDims a) {
  extern __shared__ float smem[];
  const int D = a.D;
  float* k_s = smem;                       // (kTileRows, D + 1)
  float* v_s = k_s + kTileRows * (D + 1);  // (kTileRows, D + 1)
  float* q_s = v_s + kTileRows * (D + 1);  // (kRowsPerBlock, D)
  float* do_s = q_s + kRowsPerBlock * D;   // (kRowsPerBlock, D)
  const BlockRows blk = block_rows(a, a.NH);
  const int g = blk.head / (a.NH / a.KV);
  const int warp = static_cast<int>(threadIdx.x >> 5), lane = static_cast<int>(threadIdx.x & 31);
  const int t = blk.first + warp;
  const int last = min(a.T, blk.first + kRowsPerBlock) - 1;
  stage_rows(q_s, D, q, a, blk.b, blk.first, kRowsPerBlock, a.NH, blk.head);
  stage_rows(do_s, D, dout, a, blk.b, blk.first, kRowsPerBlock, a.NH, blk.head);
  const size_t stat = (static_cast<size_t>(blk.b) * a.NH + blk.head) * a.T + t;
  const float lse_t = t < a.T ? lse[stat] : 0.0f;
  const float delta_t = t < a.T ? delta[stat] : 0.0f;
  float acc[kDimsPerLane] = {};
  for (int j0 = 0; j0 <= last; j0 += kTileRows) {
    __syncthreads();
    stage_rows(k_s, D + 1, k, a, blk.b, j0, kTileRows, a.KV, g);
    stage_rows(v_s, D + 1, v, a, blk.b, j0, kTileRows, a.KV, g);
    __syncthreads();
    if (t >= a.T || j0 > t) continue;
    const int key = j0 + lane;
    float ds = 0.0f;
    if (key <= t) {
      const float p = expf(dot(q_s + warp * D, k_s + lane * (D + 1), D) * a.scale - lse_t);
      const float dp = dot(do_s + warp * D, v_s + lane * (D + 1), D);
      ds = p * (dp - delta_t) * a.scale;
    }
    add_weighted_rows(acc, ds, k_s, D + 1, D, lane);
  }
  if (t >= a.T) return;
  float* dq_row = dq + row_offset(a, blk.b, t, a.NH, blk.head);
#pragma unroll
  for (int r = 0; r < kDimsPerLane; ++r) {
    if (lane + 32 * r < D) dq_row[lane + 32 * r] += acc[r];
  }
}

// Stages lse and delta of queries [first, first + kTileRows) of head h (zeros past T).
__device__ void stage_stats(float* lse_s, float* delta_s, const float* lse, const float* delta,
                            const AttentionDims& a, int b, int h, int first) {
  if (threadIdx.x >= kTileRows) return;
  const int t = first + static_cast<int>(threadIdx.x);
  const size_t at = (static_cast<size_t>(b) * a.NH + h) * a.T + t;
  lse_s[threadIdx.x] = t < a.T ? lse[at] : 0.0f;
  delta_s[threadIdx.x] = t < a.T ? delta[at] : 0.0f;
}

// dk, dv += per key row of one kv head, over the group's query heads in order and, per head,
// the queries from the key on in order.
__global__ void __launch_bounds__(kThreads)
    flash_dkv_kernel(float* dk, float* dv, const float* dout, const float* q, const float* k,
                     const float* v, const float* lse, const float* delta, AttentionDims a) {
  extern __shared__ float smem[];
  const int D = a.D;
  float* q_s = smem;                        // (kTileRows, D + 1)
  float* do_s = q_s + kTileRows * (D + 1);  // (kTileRows, D + 1)
  float* k_s = do_s + kTileRows * (D + 1);  // (kRowsPerBlock, D)
  float* v_s = k_s + kRowsPerBlock * D;     // (kRowsPerBlock, D)
  float* lse_s = v_s + kRowsPerBlock * D;   // (kTileRows)
  float* delta_s = lse_s + kTileRows;       // (kTileRows)
  const BlockRows blk = block_rows(a, a.KV);
  const int group = a.NH / a.KV;
  const int warp = static_cast<int>(threadIdx.x >> 5), lane = static_cast<int>(threadIdx.x & 31);
  const int key = blk.first + warp;
  stage_rows(k_s, D, k, a, blk.b, blk.first, kRowsPerBlock, a.KV, blk.head);
  stage_rows(v_s, D, v, a, blk.b, blk.first, kRowsPerBlock, a.KV, blk.head);
  float dk_acc[kDimsPerLane] = {}, dv_acc[kDimsPerLane] = {};
  for (int h = blk.head * group; h < (blk.head + 1) * group; ++h) {
    for (int i0 = blk.first; i0 < a.T; i0 += kTileRows) {
      __syncthreads();
      stage_rows(q_s, D + 1, q, a, blk.b, i0, kTileRows, a.NH, h);
      stage_rows(do_s, D + 1, dout, a, blk.b, i0, kTileRows, a.NH, h);
      stage_stats(lse_s, delta_s, lse, delta, a, blk.b, h, i0);
      __syncthreads();
      if (key >= a.T) continue;
      const int query = i0 + lane;
      float p = 0.0f, ds = 0.0f;
      if (query < a.T && query >= key) {
        p = expf(dot(q_s + lane * (D + 1), k_s + warp * D, D) * a.scale - lse_s[lane]);
        const float dp = dot(do_s + lane * (D + 1), v_s + warp * D, D);
        ds = p * (dp - delta_s[lane]) * a.scale;
      }
      add_weighted_rows(dv_acc, p, do_s, D + 1, D, lane);
      add_weighted_rows(dk_acc, ds, q_s, D + 1, D, lane);
    }
  }
  if (key >= a.T) return;
  const size_t at = row_offset(a, blk.b, key, a.KV, blk.head);
#pragma unroll
  for (int r = 0; r < kDimsPerLane; ++r) {
    if (lane + 32 * r < D) {
      dk[at + lane + 32 * r] += dk_acc[r];
      dv[at + lane + 32 * r] += dv_acc[r];
    }
  }
}

struct CachedDims {
  int Tq, P, NH, KV, D;
  float scale;
};

// One warp per row r = i * NH + h of q (Tq,NH,D): query i sits at position P - Tq + i and sees
// the cached keys 0 .. that position, 32 at a time (lane j scores key j0 + j), with a running max
// and sum; each lane owns dimensions lane, lane + 32, ... of the output.
__global__ void __launch_bounds__(kThreads)
    cached_attention_kernel(float* out, const float* q, const float* k_cache,
                            const float* v_cache, CachedDims a) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  const size_t row = size_t{blockIdx.x} * kWarpsPerBlock + (threadIdx.x >> 5);
  if (row >= static_cast<size_t>(a.Tq) * a.NH) return;  // the same for the whole warp
  const int h = static_cast<int>(row % a.NH), i = static_cast<int>(row / a.NH);
  const int g = h / (a.NH / a.KV), last = a.P - a.Tq + i, D = a.D;
  const size_t kv_ld = static_cast<size_t>(a.KV) * D;
  const float* q_row = q + row * D;
  const float* k_head = k_cache + static_cast<size_t>(g) * D;
  const float* v_head = v_cache + static_cast<size_t>(g) * D;
  float o[kDimsPerLane] = {};
  float m = -INFINITY, l = 0.0f;
  for (int j0 = 0; j0 <= last; j0 += 32) {
    const int key = j0 + lane;
    const float s = key <= last ? dot(q_row, k_head + key * kv_ld, D) * a.scale : -INFINITY;
    const float m_new = fmaxf(m, warp_max(s));
    const float p = key <= last ? expf(s - m_new) : 0.0f;
    const float alpha = expf(m - m_new);  // 0 on the first keys (m = -inf)
    l = l * alpha + warp_sum(p);
    m = m_new;
#pragma unroll
    for (int r = 0; r < kDimsPerLane; ++r) o[r] *= alpha;
    const int keys = min(32, last + 1 - j0);
    for (int j = 0; j < keys; ++j) {
      const float w = __shfl_sync(0xffffffffu, p, j);
      const float* v_row = v_head + (j0 + j) * kv_ld;
#pragma unroll
      for (int r = 0; r < kDimsPerLane; ++r) {
        const int d = lane + 32 * r;
        if (d < D) o[r] += w * v_row[d];
      }
    }
  }
  float* out_row = out + row * D;
#pragma unroll
  for (int r = 0; r < kDimsPerLane; ++r) {
    if (lane + 32 * r < D) out_row[lane + 32 * r] = o[r] / l;
  }
}

absl::Status check_attention(int B, int T, int NH, int KV, int D, const char* op) {
  const std::string name(op);
  if (B < 0 || T < 0 || NH < 0 || KV < 0 || D < 0) return invalid(name + ": negative shape");
  if (KV == 0 || NH == 0 || NH % KV != 0) {
    return invalid(name + ": NH must be a positive multiple of KV");
  }
  if (D > kMaxAttentionHeadDim) {
    return invalid(name + ": head dimension " + std::to_string(D) + " above " +
                   std::to_string(kMaxAttentionHeadDim));
  }
  const size_t tiles = (static_cast<size_t>(T) + kRowsPerBlock - 1) / kRowsPerBlock;
  if (static_cast<size_t>(B) * NH * tiles > static_cast<size_t>(INT32_MAX)) {
    return invalid(name + ": too many blocks");
  }
  return absl::OkStatus();
}

// Launches `kernel` with `floats` floats of dynamic shared memory, opting in above 48 KiB.
template <typename Kernel, typename... Args>
absl::Status launch_attention(Kernel* kernel, const char* name, size_t blocks, size_t floats,
                              cudaStream_t stream, Args... args) {
  const size_t bytes = floats * sizeof(float);
  if (bytes > kDefaultSharedBytes) {
    DSINF_CUDA_RETURN_IF_ERROR(
        cuda_status(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(bytes)),
                    std::string("cudaFuncSetAttribute (shared memory of ") + name + ")"));
  }
  kernel<<<static_cast<unsigned>(blocks), kThreads, bytes, stream>>>(args...);
  return launch_status(std::string("launch of ") + name);
}

}  // namespace

// -------------------------------------------------------------- RMSNorm --

absl::Status rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N,
                             int C, float eps, StreamHandle stream) {
  if (N < 0 || C < 0) return invalid("rmsnorm_forward: negative shape");
  if (N == 0) return absl::OkStatus();
  if (!out || !rstd || !inp || !weight) return invalid("rmsnorm_forward: null tensor");
  rmsnorm_forward_kernel<<<row_blocks(N), kThreads, 0, as_stream(stream)>>>(out, rstd, inp, weight,
                                                                            N, C, eps);
  return launch_status("launch of rmsnorm_forward_kernel");
}

absl::Status rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                              const float* weight, const float* rstd, int N, int C,
                              StreamHandle stream) {
  if (N < 0 || C < 0) return invalid("rmsnorm_backward: negative shape");
  if (N == 0 || C == 0) return absl::OkStatus();
  if (!dinp || !dweight || !dout || !inp || !weight || !rstd) {
    return invalid("rmsnorm_backward: null tensor");
  }
  const cudaStream_t st = as_stream(stream);
  rmsnorm_backward_kernel<<<row_blocks(N), kThreads, 0, st>>>(dinp, dout, inp, weight, rstd, N, C);
  DSINF_CUDA_RETURN_IF_ERROR(launch_status("launch of rmsnorm_backward_kernel"));
  const dim3 block(kColTile, kRowLanes);
  const unsigned grid = static_cast<unsigned>((C + kColTile - 1) / kColTile);
  rmsnorm_dweight_kernel<<<grid, block, 0, st>>>(dweight, dout, inp, rstd, N, C);
  return launch_status("launch of rmsnorm_dweight_kernel");
}

// ------------------------------------------------------ RoPE and SwiGLU --

namespace {

template <bool kTranspose>
absl::Status rope(float* x, const float* cos, const float* sin, int B, int T, int H, int D,
                  StreamHandle stream, const char* name) {
  if (B < 0 || T < 0 || H < 0 || D < 0) return invalid(std::string(name) + ": negative shape");
  if (D % 2 != 0) return invalid(std::string(name) + ": odd head dimension");
  const size_t pairs = static_cast<size_t>(B) * T * H * (D / 2);
  if (pairs == 0) return absl::OkStatus();
  if (!x || !cos || !sin) return invalid(std::string(name) + ": null tensor");
  rope_kernel<kTranspose>
      <<<grid_for(pairs), kThreads, 0, as_stream(stream)>>>(x, cos, sin, pairs, T, H, D / 2);
  return launch_status(std::string("launch of rope_kernel for ") + name);
}

}  // namespace

absl::Status rope_forward(float* x, const float* cos, const float* sin, int B, int T, int H, int D,
                          StreamHandle stream) {
  return rope<false>(x, cos, sin, B, T, H, D, stream, "rope_forward");
}

absl::Status rope_backward(float* dx, const float* cos, const float* sin, int B, int T, int H,
                           int D, StreamHandle stream) {
  return rope<true>(dx, cos, sin, B, T, H, D, stream, "rope_backward");
}

absl::Status swiglu_forward(float* out, const float* gate, const float* up, size_t n,
                            StreamHandle stream) {
  if (n == 0) return absl::OkStatus();
  if (!out || !gate || !up) return invalid("swiglu_forward: null tensor");
  swiglu_forward_kernel<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(out, gate, up, n);
  return launch_status("launch of swiglu_forward_kernel");
}

absl::Status swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                             const float* up, size_t n, StreamHandle stream) {
  if (n == 0) return absl::OkStatus();
  if (!dgate || !dup || !dout || !gate || !up) return invalid("swiglu_backward: null tensor");
  swiglu_backward_kernel<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(dgate, dup, dout, gate,
                                                                          up, n);
  return launch_status("launch of swiglu_backward_kernel");
}

// ------------------------------------------------------------ attention --

absl::Status flash_attention_forward(float* out, float* lse, const float* q, const float* k,
                                     const float* v, int B, int T, int NH, int KV, int D,
                                     float scale, StreamHandle stream) {
  DSINF_CUDA_RETURN_IF_ERROR(check_attention(B, T, NH, KV, D, "flash_attention_forward"));
  if (B == 0 || T == 0) return absl::OkStatus();
  if (!out || !lse || !q || !k || !v) return invalid("flash_attention_forward: null tensor");
  const AttentionDims a{B, T, NH, KV, D, scale};
  const size_t blocks = static_cast<size_t>(B) * NH * ((T + kRowsPerBlock - 1) / kRowsPerBlock);
  return launch_attention(flash_forward_kernel, "flash_forward_kernel", blocks,
                          forward_shared_floats(D), as_stream(stream), out, lse, q, k, v, a);
}

absl::Status flash_attention_backward(float* dq, float* dk, float* dv, const float* dout,
                                      const float* q, const float* k, const float* v,
                                      const float* out, const float* lse, float* scratch, int B,
                                      int T, int NH, int KV, int D, float scale,
                                      StreamHandle stream) {
  DSINF_CUDA_RETURN_IF_ERROR(check_attention(B, T, NH, KV, D, "flash_attention_backward"));
  if (B == 0 || T == 0) return absl::OkStatus();
  if (!dq || !dk || !dv || !dout || !q || !k || !v || !out || !lse || !scratch) {
    return invalid("flash_attention_backward: null tensor");
  }
  const cudaStream_t st = as_stream(stream);
  const AttentionDims a{B, T, NH, KV, D, scale};
  const size_t rows = static_cast<size_t>(B) * NH * T;
  flash_delta_kernel<<<row_blocks(rows), kThreads, 0, st>>>(scratch, dout, out, a);
  DSINF_CUDA_RETURN_IF_ERROR(launch_status("launch of flash_delta_kernel"));
  const size_t tiles = (static_cast<size_t>(T) + kRowsPerBlock - 1) / kRowsPerBlock;
  DSINF_CUDA_RETURN_IF_ERROR(launch_attention(
      flash_dq_kernel, "flash_dq_kernel", static_cast<size_t>(B) * NH * tiles, dq_shared_floats(D),
      st, dq, dout, q, k, v, lse, static_cast<const float*>(scratch), a));
  return launch_attention(flash_dkv_kernel, "flash_dkv_kernel", static_cast<size_t>(B) * KV * tiles,
                          dkv_shared_floats(D), st, dk, dv, dout, q, k, v, lse,
                          static_cast<const float*>(scratch), a);
}

absl::Status cached_attention_forward(float* out, const float* q, const float* k_cache,
                                      const float* v_cache, int Tq, int P, int NH, int KV, int D,
                                      float scale, StreamHandle stream) {
  DSINF_CUDA_RETURN_IF_ERROR(check_attention(1, Tq, NH, KV, D, "cached_attention_forward"));
  if (P < Tq) return invalid("cached_attention_forward: P below Tq");
  if (Tq == 0) return absl::OkStatus();
  if (!out || !q || !k_cache || !v_cache) return invalid("cached_attention_forward: null tensor");
  const CachedDims a{Tq, P, NH, KV, D, scale};
  cached_attention_kernel<<<row_blocks(static_cast<size_t>(Tq) * NH), kThreads, 0,
                            as_stream(stream)>>>(out, q, k_cache, v_cache, a);
  return launch_status("launch of cached_attention_kernel");
}

}  // namespace dsinf::kernels::cuda

#undef DSINF_CUDA_RETURN_IF_ERROR
