#include "kernels/cpu/decoder_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "memory/util/check.h"

namespace dsinf::kernels::cpu {
namespace {

constexpr int kTile = kAttentionTile;

// Dot product with 8 interleaved partial sums added pairwise at the end (ops.cc's order): fixed,
// so deterministic, and vectorizable without reassociating anything.
template <typename Real>
Real dot(const Real* __restrict a, const Real* __restrict b, int n) {
  constexpr int kLanes = 8;
  Real acc[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) acc[j] += a[i + j] * b[i + j];
  }
  for (int j = 0; i < n; ++i, ++j) acc[j] += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// x[i] <- x[i] c - x[i + D/2] s, x[i + D/2] <- x[i + D/2] c + x[i] s over the halves lo and hi
// of one row; kTranspose applies the transposed rotation (the sines change sign).
template <bool kTranspose, typename Real>
void rotate_half(Real* __restrict lo, Real* __restrict hi, const Real* __restrict cos,
                 const Real* __restrict sin, int half) {
  for (int i = 0; i < half; ++i) {
    const Real a = lo[i], b = hi[i], c = cos[i], s = sin[i];
    if constexpr (kTranspose) {
      lo[i] = a * c + b * s;
      hi[i] = b * c - a * s;
    } else {
      lo[i] = a * c - b * s;
      hi[i] = b * c + a * s;
    }
  }
}

template <bool kTranspose, typename Real>
void rope(Real* x, const Real* cos, const Real* sin, int B, int T, int H, int D) {
  DSINF_CHECK_MSG(D % 2 == 0, "rotary embeddings need an even head dimension");
  const int half = D / 2;
  parallel_over(static_cast<size_t>(B) * T * H, D, [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {  // r = (b*T + t)*H + h
      const size_t t = r / H % T;
      Real* row = x + r * D;
      rotate_half<kTranspose>(row, row + half, cos + t * half, sin + t * half, half);
    }
  });
}

// ---- attention's tile products ----

// C (kRows,kCols) += A (kRows,K) @ B (K,kCols), row strides lda, ldb, ldc; the block of C lives
// in registers across K. Each element adds its products to its own value in k order.
template <int kRows, int kCols, typename Real>
inline void gemm_block(int K, const Real* __restrict A, size_t lda, const Real* __restrict B,
                       size_t ldb, Real* __restrict C, size_t ldc) {
  Real acc[kRows][kCols];
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < kCols; ++c) acc[r][c] = C[r * ldc + c];
  }
  for (int kk = 0; kk < K; ++kk) {
    const Real* b = B + kk * ldb;
    for (int r = 0; r < kRows; ++r) {
      const Real a = A[r * lda + kk];
      for (int c = 0; c < kCols; ++c) acc[r][c] += a * b[c];
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < kCols; ++c) C[r * ldc + c] = acc[r][c];
  }
}

// 4 x 8 float accumulators are 8 SSE registers, leaving room for B's row and A's broadcasts.
constexpr int kBlockRows = 4;
constexpr int kBlockCols = 8;

template <int kRows, typename Real>
void gemm_rows(int N, int K, const Real* A, size_t lda, const Real* B, size_t ldb, Real* C,
               size_t ldc) {
  int j = 0;
  for (; j + kBlockCols <= N; j += kBlockCols) {
    gemm_block<kRows, kBlockCols>(K, A, lda, B + j, ldb, C + j, ldc);
  }
  for (; j < N; ++j) gemm_block<kRows, 1>(K, A, lda, B + j, ldb, C + j, ldc);
}

// C (M,N) += A (M,K) @ B (K,N), row-major with row strides lda, ldb, ldc (C shares no memory
// with A or B). Every element of C gets the same bits whatever M, N and the blocking.
template <typename Real>
void gemm_acc(int M, int N, int K, const Real* A, size_t lda, const Real* B, size_t ldb, Real* C,
              size_t ldc) {
  int i = 0;
  for (; i + kBlockRows <= M; i += kBlockRows) {
    gemm_rows<kBlockRows>(N, K, A + i * lda, lda, B, ldb, C + i * ldc, ldc);
  }
  for (; i < M; ++i) gemm_rows<1>(N, K, A + i * lda, lda, B, ldb, C + i * ldc, ldc);
}

// dst (cols, rows) with row stride ldd = the transpose of src (rows, cols) with row stride lds.
template <typename Real>
void transpose(const Real* __restrict src, size_t lds, int rows, int cols, Real* __restrict dst,
               size_t ldd) {
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) dst[c * ldd + r] = src[r * lds + c];
  }
}

// Where rows live in q, k, v, out, lse and scratch.
struct Geometry {
  int B, T, NH, KV, D;
  int tiles() const { return (T + kTile - 1) / kTile; }
  int group() const { return NH / KV; }
  size_t q_ld() const { return static_cast<size_t>(NH) * D; }   // q, out, dout, dq
  size_t kv_ld() const { return static_cast<size_t>(KV) * D; }  // k, v, dk, dv
  size_t q_at(int b, int t, int h) const { return ((static_cast<size_t>(b) * T + t) * NH + h) * D; }
  size_t kv_at(int b, int t, int g) const {
    return ((static_cast<size_t>(b) * T + t) * KV + g) * D;
  }
  size_t row_at(int b, int h, int t) const {  // lse and scratch (B,NH,T)
    return (static_cast<size_t>(b) * NH + h) * T + t;
  }
};

Geometry checked_geometry(int B, int T, int NH, int KV, int D) {
  DSINF_CHECK_MSG(B >= 0 && T >= 0 && D >= 0, "negative attention shape");
  DSINF_CHECK_MSG(KV > 0 && NH > 0 && NH % KV == 0, "NH must be a positive multiple of KV");
  return Geometry{B, T, NH, KV, D};
}

// A task's blocks: two kTile x kTile score-sized ones, two kTile x D transposes and two
// kTile x D accumulators, plus a row's running max and sum per query.
template <typename Real>
struct TileScratch {
  explicit TileScratch(int D)
      : a(kTile * kTile),
        b(kTile * kTile),
        at(static_cast<size_t>(kTile) * D),
        bt(static_cast<size_t>(kTile) * D),
        acc1(static_cast<size_t>(kTile) * D),
        acc2(static_cast<size_t>(kTile) * D),
        max(kTile),
        sum(kTile) {}
  std::vector<Real> a, b, at, bt, acc1, acc2, max, sum;
};

// One key tile of the online softmax for rows query rows starting at i0: s (rows, kTile) holds
// the raw scores q.k of keys j0 .. j0+cols-1 and becomes the probabilities relative to the new
// running max (zero where masked); the running sum is updated and the rows of o (rows, D)
// rescaled to the new max.
template <typename Real>
void online_softmax(Real* s, Real* max, Real* sum, Real* o, int rows, int cols, int i0, int j0,
                    int D, Real scale) {
  for (int i = 0; i < rows; ++i) {
    const int valid = std::min(cols, i0 + i - j0 + 1);  // keys <= the query's position
    Real* row = s + i * kTile;
    Real new_max = max[i];
    for (int j = 0; j < valid; ++j) {
      row[j] *= scale;
      new_max = std::max(new_max, row[j]);
    }
    Real row_sum = 0;
    for (int j = 0; j < valid; ++j) {
      row[j] = std::exp(row[j] - new_max);
      row_sum += row[j];
    }
    std::fill(row + valid, row + cols, Real(0));
    const Real alpha = std::exp(max[i] - new_max);  // 0 on the first tile (max = -inf)
    sum[i] = sum[i] * alpha + row_sum;
    max[i] = new_max;
    Real* o_row = o + static_cast<size_t>(i) * D;
    for (int d = 0; d < D; ++d) o_row[d] *= alpha;
  }
}

// The forward of query tile qt of head h in batch row b.
template <typename Real>
void forward_tile(const Geometry& g, Real* out, Real* lse, const Real* q, const Real* k,
                  const Real* v, Real scale, int b, int h, int qt, TileScratch<Real>& w) {
  const int D = g.D, i0 = qt * kTile, rows = std::min(kTile, g.T - i0), kvh = h / g.group();
  const Real* q_tile = q + g.q_at(b, i0, h);
  Real* o = w.acc1.data();
  std::fill(o, o + static_cast<size_t>(rows) * D, Real(0));
  std::fill(w.max.begin(), w.max.end(), -std::numeric_limits<Real>::infinity());
  std::fill(w.sum.begin(), w.sum.end(), Real(0));
  for (int j0 = 0; j0 < i0 + rows; j0 += kTile) {
    const int cols = std::min(kTile, i0 + rows - j0);
    transpose(k + g.kv_at(b, j0, kvh), g.kv_ld(), cols, D, w.at.data(), kTile);
    std::fill(w.a.begin(), w.a.begin() + rows * kTile, Real(0));
    gemm_acc(rows, cols, D, q_tile, g.q_ld(), w.at.data(), kTile, w.a.data(), kTile);
    online_softmax(w.a.data(), w.max.data(), w.sum.data(), o, rows, cols, i0, j0, D, scale);
    gemm_acc(rows, D, cols, w.a.data(), kTile, v + g.kv_at(b, j0, kvh), g.kv_ld(), o, D);
  }
  for (int i = 0; i < rows; ++i) {
    Real* out_row = out + g.q_at(b, i0 + i, h);
    const Real* o_row = o + static_cast<size_t>(i) * D;
    for (int d = 0; d < D; ++d) out_row[d] = o_row[d] / w.sum[i];
    lse[g.row_at(b, h, i0 + i)] = w.max[i] + std::log(w.sum[i]);
  }
}

// p = exp(scale * s - lse) and ds = p * (dp - delta) * scale for one block of score pairs, in
// place: s (rows, kTile) becomes p, dp becomes ds. Pair (r, c) is query q0 + r*dq + c*dc and key
// k0 + r*kr + c*kc (the block is stored either way round); lse and delta are indexed by the
// query's offset from q0 (they are contiguous along the query index). Masked pairs get zeros.
struct PairLayout {
  int q0, dq_row, dq_col, k0, dk_row, dk_col;
};
template <typename Real>
void probabilities_and_dscores(Real* s, Real* dp, int rows, int cols, const PairLayout& at,
                               const Real* lse, const Real* delta, Real scale) {
  for (int r = 0; r < rows; ++r) {
    Real* s_row = s + r * kTile;
    Real* dp_row = dp + r * kTile;
    for (int c = 0; c < cols; ++c) {
      const int qi = r * at.dq_row + c * at.dq_col;
      const int query = at.q0 + qi, key = at.k0 + r * at.dk_row + c * at.dk_col;
      if (key > query) {
        s_row[c] = 0;
        dp_row[c] = 0;
        continue;
      }
      const Real p = std::exp(s_row[c] * scale - lse[qi]);
      s_row[c] = p;
      dp_row[c] = p * (dp_row[c] - delta[qi]) * scale;
    }
  }
}

}  // namespace

// ---- RMSNorm ----

template <typename Real>
void rmsnorm_forward(Real* out, Real* rstd, const Real* inp, const Real* weight, int N, int C,
                     std::type_identity_t<Real> eps) {
  parallel_over(N, 2 * static_cast<size_t>(C), [&](size_t n0, size_t n1) {
    for (size_t n = n0; n < n1; ++n) {
      const Real* x = inp + n * C;
      const Real s = Real(1) / std::sqrt(dot(x, x, C) / Real(C) + eps);
      Real* out_n = out + n * C;
      for (int c = 0; c < C; ++c) out_n[c] = (x[c] * s) * weight[c];
      rstd[n] = s;
    }
  });
}

template <typename Real>
void rmsnorm_backward(Real* dinp, Real* dweight, const Real* dout, const Real* inp,
                      const Real* weight, const Real* rstd, int N, int C) {
  // out = norm * w with norm = x * s: dx = s * (w dout - norm * mean over C of (w dout * norm)).
  parallel_over(N, 2 * static_cast<size_t>(C), [&](size_t n0, size_t n1) {
    for (size_t n = n0; n < n1; ++n) {
      const Real* x = inp + n * C;
      const Real* dout_n = dout + n * C;
      const Real s = rstd[n];
      Real dnorm_norm_mean = 0;
      for (int c = 0; c < C; ++c) dnorm_norm_mean += (weight[c] * dout_n[c]) * (x[c] * s);
      dnorm_norm_mean /= C;
      Real* dinp_n = dinp + n * C;
      for (int c = 0; c < C; ++c) {
        dinp_n[c] += (weight[c] * dout_n[c] - (x[c] * s) * dnorm_norm_mean) * s;
      }
    }
  });
  parallel_over_columns(C, N, [&](size_t c0, size_t c1) {
    for (size_t n = 0; n < static_cast<size_t>(N); ++n) {
      const Real* x = inp + n * C;
      const Real* dout_n = dout + n * C;
      const Real s = rstd[n];
      for (size_t c = c0; c < c1; ++c) dweight[c] += (x[c] * s) * dout_n[c];
    }
  });
}

// ---- rotary embeddings ----

template <typename Real>
void rope_forward(Real* x, const Real* cos, const Real* sin, int B, int T, int H, int D) {
  rope<false>(x, cos, sin, B, T, H, D);
}

template <typename Real>
void rope_backward(Real* dx, const Real* cos, const Real* sin, int B, int T, int H, int D) {
  rope<true>(dx, cos, sin, B, T, H, D);
}

// ---- SwiGLU ----

template <typename Real>
void swiglu_forward(Real* out, const Real* gate, const Real* up, size_t n) {
  parallel_over(n, 16, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      const Real g = gate[i];
      out[i] = g / (Real(1) + std::exp(-g)) * up[i];
    }
  });
}

template <typename Real>
void swiglu_backward(Real* dgate, Real* dup, const Real* dout, const Real* gate, const Real* up,
                     size_t n) {
  parallel_over(n, 16, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      const Real g = gate[i];
      const Real e = Real(1) + std::exp(-g);
      const Real sigmoid = Real(1) / e;
      const Real silu = g / e;
      // silu'(g) = sigmoid * (1 + g * (1 - sigmoid))
      dgate[i] += dout[i] * up[i] * (sigmoid * (Real(1) + g * (Real(1) - sigmoid)));
      dup[i] += dout[i] * silu;
    }
  });
}

// ---- attention ----

template <typename Real>
void flash_attention_forward(Real* out, Real* lse, const Real* q, const Real* k, const Real* v,
                             int B, int T, int NH, int KV, int D,
                             std::type_identity_t<Real> scale) {
  const Geometry g = checked_geometry(B, T, NH, KV, D);
  const size_t tiles = g.tiles();
  // Work per item on average: half the keys, two products of D per pair.
  const size_t work = static_cast<size_t>(T) * kTile * std::max(D, 1);
  parallel_over(static_cast<size_t>(B) * NH * tiles, work, [&](size_t i0, size_t i1) {
    TileScratch<Real> w(D);
    for (size_t item = i0; item < i1; ++item) {  // item = (b*NH + h)*tiles + qt
      const int qt = static_cast<int>(item % tiles);
      const int h = static_cast<int>(item / tiles % NH);
      const int b = static_cast<int>(item / tiles / NH);
      forward_tile(g, out, lse, q, k, v, Real(scale), b, h, qt, w);
    }
  });
}

namespace {

// dq of query tile qt of head h in batch row b: over the key tiles up to the diagonal in order.
template <typename Real>
void dq_tile(const Geometry& g, Real* dq, const Real* dout, const Real* q, const Real* k,
             const Real* v, const Real* lse, const Real* delta, Real scale, int b, int h, int qt,
             TileScratch<Real>& w) {
  const int D = g.D, i0 = qt * kTile, rows = std::min(kTile, g.T - i0), kvh = h / g.group();
  const Real* q_tile = q + g.q_at(b, i0, h);
  const Real* dout_tile = dout + g.q_at(b, i0, h);
  Real* acc = w.acc1.data();
  std::fill(acc, acc + static_cast<size_t>(rows) * D, Real(0));
  for (int j0 = 0; j0 < i0 + rows; j0 += kTile) {
    const int cols = std::min(kTile, i0 + rows - j0);
    const Real* k_tile = k + g.kv_at(b, j0, kvh);
    transpose(k_tile, g.kv_ld(), cols, D, w.at.data(), kTile);
    transpose(v + g.kv_at(b, j0, kvh), g.kv_ld(), cols, D, w.bt.data(), kTile);
    std::fill(w.a.begin(), w.a.begin() + rows * kTile, Real(0));
    std::fill(w.b.begin(), w.b.begin() + rows * kTile, Real(0));
    gemm_acc(rows, cols, D, q_tile, g.q_ld(), w.at.data(), kTile, w.a.data(), kTile);
    gemm_acc(rows, cols, D, dout_tile, g.q_ld(), w.bt.data(), kTile, w.b.data(), kTile);
    const PairLayout at{i0, 1, 0, j0, 0, 1};  // rows are queries, columns keys
    probabilities_and_dscores(w.a.data(), w.b.data(), rows, cols, at, lse + g.row_at(b, h, i0),
                              delta + g.row_at(b, h, i0), scale);
    gemm_acc(rows, D, cols, w.b.data(), kTile, k_tile, g.kv_ld(), acc, D);
  }
  for (int i = 0; i < rows; ++i) {
    Real* dq_row = dq + g.q_at(b, i0 + i, h);
    const Real* acc_row = acc + static_cast<size_t>(i) * D;
    for (int d = 0; d < D; ++d) dq_row[d] += acc_row[d];
  }
}

// dk and dv of key tile kt of kv head kvh in batch row b: over the group's query heads in order
// and, per head, the query tiles from the diagonal on in order.
template <typename Real>
void dkv_tile(const Geometry& g, Real* dk, Real* dv, const Real* dout, const Real* q, const Real* k,
              const Real* v, const Real* lse, const Real* delta, Real scale, int b, int kvh, int kt,
              TileScratch<Real>& w) {
  const int D = g.D, j0 = kt * kTile, cols = std::min(kTile, g.T - j0);
  const Real* k_tile = k + g.kv_at(b, j0, kvh);
  const Real* v_tile = v + g.kv_at(b, j0, kvh);
  Real* dk_acc = w.acc1.data();
  Real* dv_acc = w.acc2.data();
  std::fill(dk_acc, dk_acc + static_cast<size_t>(cols) * D, Real(0));
  std::fill(dv_acc, dv_acc + static_cast<size_t>(cols) * D, Real(0));
  for (int h = kvh * g.group(); h < (kvh + 1) * g.group(); ++h) {
    for (int i0 = j0; i0 < g.T; i0 += kTile) {
      const int rows = std::min(kTile, g.T - i0);
      const Real* q_tile = q + g.q_at(b, i0, h);
      const Real* dout_tile = dout + g.q_at(b, i0, h);
      transpose(q_tile, g.q_ld(), rows, D, w.at.data(), kTile);
      transpose(dout_tile, g.q_ld(), rows, D, w.bt.data(), kTile);
      std::fill(w.a.begin(), w.a.begin() + cols * kTile, Real(0));
      std::fill(w.b.begin(), w.b.begin() + cols * kTile, Real(0));
      gemm_acc(cols, rows, D, k_tile, g.kv_ld(), w.at.data(), kTile, w.a.data(), kTile);
      gemm_acc(cols, rows, D, v_tile, g.kv_ld(), w.bt.data(), kTile, w.b.data(), kTile);
      const PairLayout at{i0, 0, 1, j0, 1, 0};  // rows are keys, columns queries
      probabilities_and_dscores(w.a.data(), w.b.data(), cols, rows, at, lse + g.row_at(b, h, i0),
                                delta + g.row_at(b, h, i0), scale);
      gemm_acc(cols, D, rows, w.a.data(), kTile, dout_tile, g.q_ld(), dv_acc, D);
      gemm_acc(cols, D, rows, w.b.data(), kTile, q_tile, g.q_ld(), dk_acc, D);
    }
  }
  for (int j = 0; j < cols; ++j) {
    Real* dk_row = dk + g.kv_at(b, j0 + j, kvh);
    Real* dv_row = dv + g.kv_at(b, j0 + j, kvh);
    for (int d = 0; d < D; ++d) {
      dk_row[d] += dk_acc[static_cast<size_t>(j) * D + d];
      dv_row[d] += dv_acc[static_cast<size_t>(j) * D + d];
    }
  }
}

}  // namespace

template <typename Real>
void flash_attention_backward(Real* dq, Real* dk, Real* dv, const Real* dout, const Real* q,
                              const Real* k, const Real* v, const Real* out, const Real* lse,
                              Real* scratch, int B, int T, int NH, int KV, int D,
                              std::type_identity_t<Real> scale) {
  const Geometry g = checked_geometry(B, T, NH, KV, D);
  const size_t tiles = g.tiles();
  // delta[b,h,t] = dout . out: the row sums of p * dp that the softmax backward subtracts.
  parallel_over(static_cast<size_t>(B) * NH * T, D, [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {  // r = (b*NH + h)*T + t
      const int t = static_cast<int>(r % T);
      const int h = static_cast<int>(r / T % NH);
      const int b = static_cast<int>(r / T / NH);
      scratch[r] = dot(dout + g.q_at(b, t, h), out + g.q_at(b, t, h), D);
    }
  });
  const size_t work = static_cast<size_t>(T) * kTile * std::max(D, 1);
  parallel_over(static_cast<size_t>(B) * NH * tiles, 2 * work, [&](size_t i0, size_t i1) {
    TileScratch<Real> w(D);
    for (size_t item = i0; item < i1; ++item) {  // item = (b*NH + h)*tiles + qt
      const int qt = static_cast<int>(item % tiles);
      const int h = static_cast<int>(item / tiles % NH);
      const int b = static_cast<int>(item / tiles / NH);
      dq_tile(g, dq, dout, q, k, v, lse, scratch, Real(scale), b, h, qt, w);
    }
  });
  parallel_over(static_cast<size_t>(B) * KV * tiles, 2 * work * g.group(),
                [&](size_t i0, size_t i1) {
                  TileScratch<Real> w(D);
                  for (size_t item = i0; item < i1; ++item) {  // item = (b*KV + kvh)*tiles + kt
                    const int kt = static_cast<int>(item % tiles);
                    const int kvh = static_cast<int>(item / tiles % KV);
                    const int b = static_cast<int>(item / tiles / KV);
                    dkv_tile(g, dk, dv, dout, q, k, v, lse, scratch, Real(scale), b, kvh, kt, w);
                  }
                });
}

template <typename Real>
void cached_attention_forward(Real* out, const Real* q, const Real* k_cache, const Real* v_cache,
                              int Tq, int P, int NH, int KV, int D,
                              std::type_identity_t<Real> scale) {
  DSINF_CHECK_MSG(Tq >= 0 && D >= 0 && P >= Tq, "cached attention needs 0 <= Tq <= P");
  DSINF_CHECK_MSG(KV > 0 && NH > 0 && NH % KV == 0, "NH must be a positive multiple of KV");
  const int group = NH / KV;
  const size_t q_ld = static_cast<size_t>(NH) * D, kv_ld = static_cast<size_t>(KV) * D;
  const size_t work = static_cast<size_t>(P) * 2 * std::max(D, 1);
  parallel_over(static_cast<size_t>(Tq) * NH, work, [&](size_t r0, size_t r1) {
    std::vector<Real> scores(static_cast<size_t>(P));
    for (size_t r = r0; r < r1; ++r) {  // r = i*NH + h
      const int h = static_cast<int>(r % NH), i = static_cast<int>(r / NH);
      const int last = P - Tq + i;  // the query's position: keys 0..last
      const Real* q_row = q + r * D;
      const Real* k_head = k_cache + static_cast<size_t>(h / group) * D;
      const Real* v_head = v_cache + static_cast<size_t>(h / group) * D;
      Real max = -std::numeric_limits<Real>::infinity();
      for (int j = 0; j <= last; ++j) {
        scores[j] = dot(q_row, k_head + j * kv_ld, D) * Real(scale);
        max = std::max(max, scores[j]);
      }
      Real sum = 0;
      for (int j = 0; j <= last; ++j) {
        scores[j] = std::exp(scores[j] - max);
        sum += scores[j];
      }
      Real* out_row = out + static_cast<size_t>(i) * q_ld + static_cast<size_t>(h) * D;
      std::fill(out_row, out_row + D, Real(0));
      for (int j = 0; j <= last; ++j) {
        const Real w = scores[j] / sum;
        const Real* v_row = v_head + j * kv_ld;
        for (int d = 0; d < D; ++d) out_row[d] += w * v_row[d];
      }
    }
  });
}

#define DSINF_INSTANTIATE_CPU_DECODER_OPS(Real)                                                    \
  template void rmsnorm_forward<Real>(Real*, Real*, const Real*, const Real*, int, int, Real);     \
  template void rmsnorm_backward<Real>(Real*, Real*, const Real*, const Real*, const Real*,        \
                                       const Real*, int, int);                                     \
  template void rope_forward<Real>(Real*, const Real*, const Real*, int, int, int, int);           \
  template void rope_backward<Real>(Real*, const Real*, const Real*, int, int, int, int);          \
  template void swiglu_forward<Real>(Real*, const Real*, const Real*, size_t);                     \
  template void swiglu_backward<Real>(Real*, Real*, const Real*, const Real*, const Real*,         \
                                      size_t);                                                     \
  template void flash_attention_forward<Real>(Real*, Real*, const Real*, const Real*, const Real*, \
                                              int, int, int, int, int, Real);                      \
  template void flash_attention_backward<Real>(Real*, Real*, Real*, const Real*, const Real*,      \
                                               const Real*, const Real*, const Real*, const Real*, \
                                               Real*, int, int, int, int, int, Real);      \
  template void cached_attention_forward<Real>(Real*, const Real*, const Real*, const Real*, int, \
                                               int, int, int, int, Real);

DSINF_INSTANTIATE_CPU_DECODER_OPS(float)
DSINF_INSTANTIATE_CPU_DECODER_OPS(double)

#undef DSINF_INSTANTIATE_CPU_DECODER_OPS

}  // namespace dsinf::kernels::cpu
