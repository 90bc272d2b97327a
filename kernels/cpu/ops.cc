#include "kernels/cpu/ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/dropout_mask.h"
#include "memory/util/check.h"

namespace dsinf::kernels::cpu {
namespace {

// round_operand for Real (a reduced precision rounds through float; kFp32 leaves x as it is).
template <typename Real>
Real operand(Precision p, Real x) {
  return p == Precision::kFp32 ? x : Real(round_operand(p, static_cast<float>(x)));
}

// GELU, tanh approximation.
constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2/pi)
constexpr double kGeluCubic = 0.044715;

// Row-major gemm: C (M,N) = op(A) @ op(B) + beta * C.
void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}
void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, const double* A, int lda,
          const double* B, int ldb, double beta, double* C, int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, 1.0, A, lda, B, ldb, beta, C, ldc);
}

// Multi-threaded OpenBLAS gemm is not bitwise reproducible across its thread counts (measured:
// 1 vs 2 threads differ), so every gemm call is single-threaded and the parallelism comes from
// tiling the output into fixed kGemmTile x kGemmTile tiles, a function of the shape alone.
constexpr int kGemmTile = 128;

void pin_blas_to_one_thread() {
#ifdef OPENBLAS_VERSION
  if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
#endif
}

// C (M,N) = op(A) @ op(B) + beta * C, op(A) (M,K) and op(B) (K,N), row-major; A is stored (K,M)
// when trans_a and B is stored (N,K) when trans_b.
template <typename Real>
void tiled_gemm(bool trans_a, bool trans_b, int M, int N, int K, const Real* A, int lda,
                const Real* B, int ldb, Real beta, Real* C, int ldc) {
  if (M == 0 || N == 0) return;
  pin_blas_to_one_thread();
  const size_t tiles_n = (N + kGemmTile - 1) / kGemmTile;
  const size_t tiles = (M + kGemmTile - 1) / kGemmTile * tiles_n;
  const size_t work_per_tile = size_t{kGemmTile} * kGemmTile * std::max(K, 1);
  parallel_over(tiles, work_per_tile, [&](size_t t0, size_t t1) {
    for (size_t tile = t0; tile < t1; ++tile) {
      const int m0 = static_cast<int>(tile / tiles_n) * kGemmTile;
      const int n0 = static_cast<int>(tile % tiles_n) * kGemmTile;
      const int m = std::min(kGemmTile, M - m0);
      const int n = std::min(kGemmTile, N - n0);
      const Real* a = trans_a ? A + m0 : A + static_cast<size_t>(m0) * lda;
      const Real* b = trans_b ? B + static_cast<size_t>(n0) * ldb : B + n0;
      gemm(trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, K, a,
           lda, b, ldb, beta, C + static_cast<size_t>(m0) * ldc + n0, ldc);
    }
  });
}

// Head h of row (b,t) in qkv (B,T,3C): part 0 = q, 1 = k, 2 = v.
template <typename Real>
const Real* qkv_head(const Real* qkv, int b, int t, int part, int h, int T, int C, int hs) {
  return qkv + (static_cast<size_t>(b) * T + t) * 3 * C + part * C + h * hs;
}
template <typename Real>
Real* qkv_head(Real* qkv, int b, int t, int part, int h, int T, int C, int hs) {
  return qkv + (static_cast<size_t>(b) * T + t) * 3 * C + part * C + h * hs;
}

// Dot product with 8 interleaved partial sums added pairwise at the end: a fixed order, so still
// deterministic, without the single add chain that makes a naive dot latency-bound.
template <typename Real>
Real dot(const Real* a, const Real* b, int n) {
  constexpr int kLanes = 8;
  Real acc[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) acc[j] += a[i + j] * b[i + j];
  }
  for (int j = 0; i < n; ++i, ++j) acc[j] += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// y (n) += a * x (n). Blocked by 8 so the compiler vectorizes it at -O2 too.
template <typename Real>
void axpy(Real* __restrict y, Real a, const Real* __restrict x, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) y[i + j] += a * x[i + j];
  }
  for (; i < n; ++i) y[i] += a * x[i];
}

// tanh(u) and 1 - tanh(u)^2 from one exp that cannot overflow, without a data-dependent branch:
// glibc's tanhf alone costs about twice this whole evaluation.
template <typename Real>
void tanh_and_sech2(Real u, Real* th, Real* sech2) {
  const Real e = std::exp(Real(-2) * std::abs(u));  // in (0, 1]
  const Real r = Real(1) / (Real(1) + e);
  *th = std::copysign((Real(1) - e) * r, u);
  *sech2 = Real(4) * e * r * r;
}

template <bool kAdamW, typename Real>
void adam_range(Real* __restrict params, const Real* __restrict grads, Real* __restrict m,
                Real* __restrict v, size_t begin, size_t end, Real grad_scale, Real weight_decay,
                Real beta1, Real beta2, Real one_minus_beta1, Real one_minus_beta2, Real decay,
                Real step_size, Real sqrt_bc2, Real eps) {
  for (size_t i = begin; i < end; ++i) {
    Real p = params[i];
    Real g = grads[i] * grad_scale;
    if constexpr (!kAdamW) g = g + weight_decay * p;
    const Real mi = beta1 * m[i] + one_minus_beta1 * g;
    const Real vi = beta2 * v[i] + one_minus_beta2 * (g * g);
    m[i] = mi;
    v[i] = vi;
    if constexpr (kAdamW) p = p * decay;
    params[i] = p - (step_size * mi) / (std::sqrt(vi) / sqrt_bc2 + eps);
  }
}

}  // namespace

template <typename Real>
void encoder_forward(Real* out, const int32_t* inp, const Real* wte, NoDeduce<const Real*> wpe,
                     int B, int T, int C) {
  parallel_over(static_cast<size_t>(B) * T, C, [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      Real* out_r = out + r * C;
      const Real* wte_r = wte + static_cast<size_t>(inp[r]) * C;
      if (wpe == nullptr) {
        std::copy(wte_r, wte_r + C, out_r);
        continue;
      }
      const Real* wpe_r = wpe + (r % T) * C;
      for (int c = 0; c < C; ++c) out_r[c] = wte_r[c] + wpe_r[c];
    }
  });
}

template <typename Real>
void encoder_backward(Real* dwte, NoDeduce<Real*> dwpe, const Real* dout, const int32_t* inp, int B,
                      int T, int C) {
  const size_t N = static_cast<size_t>(B) * T;
  // Each task owns a channel slice of dwte and dwpe and walks all tokens in order.
  parallel_over_columns(C, N, [&](size_t c0, size_t c1) {
    for (size_t r = 0; r < N; ++r) {
      const Real* dout_r = dout + r * C;
      Real* dwte_r = dwte + static_cast<size_t>(inp[r]) * C;
      for (size_t c = c0; c < c1; ++c) dwte_r[c] += dout_r[c];
      if (dwpe == nullptr) continue;
      Real* dwpe_r = dwpe + (r % T) * C;
      for (size_t c = c0; c < c1; ++c) dwpe_r[c] += dout_r[c];
    }
  });
}

template <typename Real>
void layernorm_forward(Real* out, Real* mean, Real* rstd, const Real* inp, const Real* weight,
                       const Real* bias, int N, int C) {
  const Real eps = Real(1e-5);
  parallel_over(N, 3 * static_cast<size_t>(C), [&](size_t n0, size_t n1) {
    for (size_t n = n0; n < n1; ++n) {
      const Real* x = inp + n * C;
      Real m = 0;
      for (int c = 0; c < C; ++c) m += x[c];
      m /= C;
      Real var = 0;
      for (int c = 0; c < C; ++c) {
        const Real d = x[c] - m;
        var += d * d;
      }
      var /= C;
      const Real s = Real(1) / std::sqrt(var + eps);
      Real* out_n = out + n * C;
      for (int c = 0; c < C; ++c) out_n[c] = (x[c] - m) * s * weight[c] + bias[c];
      mean[n] = m;
      rstd[n] = s;
    }
  });
}

template <typename Real>
void layernorm_backward(Real* dinp, Real* dweight, Real* dbias, const Real* dout, const Real* inp,
                        const Real* weight, const Real* mean, const Real* rstd, int N, int C) {
  parallel_over(N, 2 * static_cast<size_t>(C), [&](size_t n0, size_t n1) {
    for (size_t n = n0; n < n1; ++n) {
      const Real* x = inp + n * C;
      const Real* dout_n = dout + n * C;
      const Real m = mean[n];
      const Real s = rstd[n];
      Real dnorm_mean = 0;
      Real dnorm_norm_mean = 0;
      for (int c = 0; c < C; ++c) {
        const Real dnorm = weight[c] * dout_n[c];
        dnorm_mean += dnorm;
        dnorm_norm_mean += dnorm * ((x[c] - m) * s);
      }
      dnorm_mean /= C;
      dnorm_norm_mean /= C;
      Real* dinp_n = dinp + n * C;
      for (int c = 0; c < C; ++c) {
        const Real norm = (x[c] - m) * s;
        const Real dnorm = weight[c] * dout_n[c];
        dinp_n[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
      }
    }
  });
  parallel_over_columns(C, N, [&](size_t c0, size_t c1) {
    for (size_t n = 0; n < static_cast<size_t>(N); ++n) {
      const Real* x = inp + n * C;
      const Real* dout_n = dout + n * C;
      const Real m = mean[n];
      const Real s = rstd[n];
      for (size_t c = c0; c < c1; ++c) {
        dbias[c] += dout_n[c];
        dweight[c] += ((x[c] - m) * s) * dout_n[c];
      }
    }
  });
}

template <typename Real>
void matmul_forward(Real* out, const Real* inp, const Real* weight, NoDeduce<const Real*> bias,
                    int N, int C, int OC) {
  if (N == 0 || OC == 0) return;
  if (C == 0) {
    std::fill(out, out + static_cast<size_t>(N) * OC, Real(0));
  } else {
    tiled_gemm(false, true, N, OC, C, inp, C, weight, C, Real(0), out, OC);
  }
  if (bias == nullptr) return;
  parallel_over(N, OC, [&](size_t n0, size_t n1) {
    for (size_t n = n0; n < n1; ++n) {
      Real* out_n = out + n * OC;
      for (int o = 0; o < OC; ++o) out_n[o] += bias[o];
    }
  });
}

template <typename Real>
void matmul_backward(Real* dinp, Real* dweight, NoDeduce<Real*> dbias, const Real* dout,
                     const Real* inp, const Real* weight, int N, int C, int OC) {
  DSINF_CHECK_MSG(dinp != nullptr, "dinp may not be null");
  DSINF_CHECK_MSG(dweight != nullptr || dbias == nullptr, "a frozen weight's bias is frozen too");
  if (N == 0 || C == 0 || OC == 0) return;
  tiled_gemm(false, false, N, C, OC, dout, OC, weight, C, Real(1), dinp, C);
  if (dweight == nullptr) return;
  tiled_gemm(true, false, OC, C, N, dout, OC, inp, C, Real(1), dweight, C);
  if (dbias != nullptr) bias_backward(dbias, dout, N, OC);
}

template <typename Real>
void bias_backward(Real* dbias, const Real* dout, int N, int OC) {
  parallel_over_columns(OC, N, [&](size_t o0, size_t o1) {
    for (size_t n = 0; n < static_cast<size_t>(N); ++n) {
      const Real* dout_n = dout + n * OC;
      for (size_t o = o0; o < o1; ++o) dbias[o] += dout_n[o];
    }
  });
}

template <typename Real>
void attention_forward(Real* out, Real* att, const Real* qkv, int B, int T, int C, int NH,
                       Precision operands) {
  DSINF_CHECK_MSG(NH > 0 && C % NH == 0, "C must be a multiple of NH");
  const int hs = C / NH;
  const Real scale = Real(1.0 / std::sqrt(static_cast<double>(hs)));
  // One item per query row (b, h, t): it owns att[b,h,t,:] and out[b,t,h*hs:(h+1)*hs].
  auto query_row = [&](size_t item) {
    const int t = static_cast<int>(item % T);
    const int h = static_cast<int>(item / T % NH);
    const int b = static_cast<int>(item / (static_cast<size_t>(T) * NH));
    const Real* q = qkv_head(qkv, b, t, 0, h, T, C, hs);
    Real* att_row = att + item * T;  // item == (b*NH + h)*T + t
    Real max_score = -std::numeric_limits<Real>::infinity();
    for (int t2 = 0; t2 <= t; ++t2) {
      const Real score = dot(q, qkv_head(qkv, b, t2, 1, h, T, C, hs), hs) * scale;
      att_row[t2] = score;
      max_score = std::max(max_score, score);
    }
    Real sum = 0;
    for (int t2 = 0; t2 <= t; ++t2) {
      const Real e = std::exp(att_row[t2] - max_score);
      att_row[t2] = e;
      sum += e;
    }
    const Real inv_sum = Real(1) / sum;
    for (int t2 = 0; t2 <= t; ++t2) att_row[t2] *= inv_sum;
    for (int t2 = t + 1; t2 < T; ++t2) att_row[t2] = 0;
    Real* out_h = out + (static_cast<size_t>(b) * T + t) * C + h * hs;
    for (int i = 0; i < hs; ++i) out_h[i] = 0;
    for (int t2 = 0; t2 <= t; ++t2)
      axpy(out_h, operand(operands, att_row[t2]), qkv_head(qkv, b, t2, 2, h, T, C, hs), hs);
  };
  parallel_over(static_cast<size_t>(B) * NH * T, static_cast<size_t>(T) * hs,
                [&](size_t i0, size_t i1) {
                  for (size_t item = i0; item < i1; ++item) query_row(item);
                });
}

template <typename Real>
void attention_backward(Real* dqkv, const Real* dout, const Real* qkv, const Real* att, int B,
                        int T, int C, int NH, Precision operands) {
  DSINF_CHECK_MSG(NH > 0 && C % NH == 0, "C must be a multiple of NH");
  const int hs = C / NH;
  const Real scale = Real(1.0 / std::sqrt(static_cast<double>(hs)));
  // dk and dv of a key row collect from every later query row of the same (b, h), so one item
  // per (b, h) owns that head's channels of dqkv for the whole sequence and walks t in order.
  // datt (T): d loss / d att row, then d loss / d score row.
  auto head = [&](size_t item, std::vector<Real>& datt) {
    const int h = static_cast<int>(item % NH);
    const int b = static_cast<int>(item / NH);
    for (int t = 0; t < T; ++t) {
      const Real* att_row = att + (item * T + t) * T;
      const Real* dout_h = dout + (static_cast<size_t>(b) * T + t) * C + h * hs;
      // out = att @ v
      for (int t2 = 0; t2 <= t; ++t2) {
        datt[t2] = dot(qkv_head(qkv, b, t2, 2, h, T, C, hs), dout_h, hs);
        axpy(qkv_head(dqkv, b, t2, 2, h, T, C, hs), operand(operands, att_row[t2]), dout_h, hs);
      }
      // att = softmax(scores): dscore = att * (datt - sum(att * datt))
      const Real att_datt = dot(att_row, datt.data(), t + 1);
      for (int t2 = 0; t2 <= t; ++t2) datt[t2] = att_row[t2] * (datt[t2] - att_datt) * scale;
      // scores = q.k * scale
      const Real* q = qkv_head(qkv, b, t, 0, h, T, C, hs);
      Real* dq = qkv_head(dqkv, b, t, 0, h, T, C, hs);
      for (int t2 = 0; t2 <= t; ++t2) {
        const Real dscore = operand(operands, datt[t2]);
        axpy(dq, dscore, qkv_head(qkv, b, t2, 1, h, T, C, hs), hs);
        axpy(qkv_head(dqkv, b, t2, 1, h, T, C, hs), dscore, q, hs);
      }
    }
  };
  parallel_over(static_cast<size_t>(B) * NH, static_cast<size_t>(T) * T * hs,
                [&](size_t i0, size_t i1) {
                  std::vector<Real> datt(T);
                  for (size_t item = i0; item < i1; ++item) head(item, datt);
                });
}

template <typename Real>
void gelu_forward(Real* out, const Real* inp, size_t n) {
  const Real s = Real(kSqrt2OverPi);
  const Real c = Real(kGeluCubic);
  parallel_over(n, 16, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      const Real x = inp[i];
      Real th, unused;
      tanh_and_sech2(s * (x + c * x * x * x), &th, &unused);
      out[i] = Real(0.5) * x * (Real(1) + th);
    }
  });
}

template <typename Real>
void gelu_backward(Real* dinp, const Real* inp, const Real* dout, size_t n) {
  const Real s = Real(kSqrt2OverPi);
  const Real c = Real(kGeluCubic);
  parallel_over(n, 16, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      const Real x = inp[i];
      Real th, sech2;
      tanh_and_sech2(s * (x + c * x * x * x), &th, &sech2);
      const Real grad =
          Real(0.5) * (Real(1) + th) + Real(0.5) * x * sech2 * s * (Real(1) + Real(3) * c * x * x);
      dinp[i] += grad * dout[i];
    }
  });
}

template <typename Real>
void residual_forward(Real* out, const Real* a, const Real* b, size_t n) {
  parallel_over(n, 1, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) out[i] = a[i] + b[i];
  });
}

template <typename Real>
void softmax_crossentropy(Real* losses, NoDeduce<Real*> dlogits, const Real* logits,
                          const int32_t* targets, int N, int V, NoDeduce<Real> dloss) {
  DSINF_CHECK_MSG(N == 0 || V > 0, "empty vocabulary");
  parallel_over(N, 2 * static_cast<size_t>(V), [&](size_t n0, size_t n1) {
    for (size_t n = n0; n < n1; ++n) {
      const Real* x = logits + n * V;
      Real* d = dlogits == nullptr ? nullptr : dlogits + n * V;
      const int target = targets[n];
      DSINF_CHECK_MSG(target < V, "target out of the vocabulary");
      if (target < 0) {  // masked: no loss, no gradient
        losses[n] = 0;
        if (d != nullptr) std::fill(d, d + V, Real(0));
        continue;
      }
      Real max_logit = x[0];
      for (int i = 1; i < V; ++i) max_logit = std::max(max_logit, x[i]);
      // Read before d (which may alias x) is written.
      const Real target_logit = x[target];
      Real sum = 0;
      if (d == nullptr) {
        for (int i = 0; i < V; ++i) sum += std::exp(x[i] - max_logit);
      } else {
        for (int i = 0; i < V; ++i) {
          const Real e = std::exp(x[i] - max_logit);
          d[i] = e;
          sum += e;
        }
      }
      losses[n] = (max_logit + std::log(sum)) - target_logit;
      if (d == nullptr) continue;
      const Real inv_sum = Real(1) / sum;
      const Real target_prob = d[target] * inv_sum;
      for (int i = 0; i < V; ++i) d[i] = (d[i] * inv_sum) * dloss;
      d[target] = (target_prob - Real(1)) * dloss;
    }
  });
}

template <typename Real>
void scale(Real* x, NoDeduce<Real> s, size_t n) {
  parallel_over(n, 1, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) x[i] *= s;
  });
}

template <typename Real>
void dropout_scale(Real* out, const Real* in, size_t n, NoDeduce<Real> s, float p, uint64_t key) {
  parallel_over(n, 1, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) out[i] = dropout_keep(key, i, p) ? in[i] * s : Real(0);
  });
}

template <typename Real>
double sum_squares(const Real* x, size_t n) {
  constexpr size_t kLanes = 8;
  const size_t blocks = (n + kSumSquaresBlock - 1) / kSumSquaresBlock;
  std::vector<double> block_sums(blocks);
  parallel_over(blocks, kSumSquaresBlock, [&](size_t b0, size_t b1) {
    for (size_t blk = b0; blk < b1; ++blk) {
      const Real* xb = x + blk * kSumSquaresBlock;
      const size_t len = std::min(kSumSquaresBlock, n - blk * kSumSquaresBlock);
      double lanes[kLanes] = {};
      for (size_t i = 0; i < len; ++i) {
        const double v = static_cast<double>(xb[i]);
        lanes[i % kLanes] += v * v;
      }
      double sum = 0;
      for (size_t j = 0; j < kLanes; ++j) sum += lanes[j];
      block_sums[blk] = sum;
    }
  });
  double total = 0;
  for (double s : block_sums) total += s;
  return total;
}

template <typename Real>
void adam_step(Real* params, const Real* grads, Real* m, Real* v, size_t n,
               const AdamHyper& hyper) {
  DSINF_CHECK_MSG(!hyper.bias_correction || hyper.step >= 1, "Adam steps are 1-based");
  const double lr = hyper.lr;
  const double beta1 = hyper.beta1;
  const double beta2 = hyper.beta2;
  const double bc1 = hyper.bias_correction ? 1.0 - std::pow(beta1, double(hyper.step)) : 1.0;
  const double bc2 = hyper.bias_correction ? 1.0 - std::pow(beta2, double(hyper.step)) : 1.0;
  const Real step_size = Real(lr / bc1);
  const Real sqrt_bc2 = Real(std::sqrt(bc2));
  const Real decay = Real(1.0 - lr * double(hyper.weight_decay));
  const Real one_minus_beta1 = Real(1.0 - beta1);
  const Real one_minus_beta2 = Real(1.0 - beta2);
  parallel_over(n, 4, [&](size_t i0, size_t i1) {
    if (hyper.adam_w_mode) {
      adam_range<true>(params, grads, m, v, i0, i1, Real(hyper.grad_scale),
                       Real(hyper.weight_decay), Real(beta1), Real(beta2), one_minus_beta1,
                       one_minus_beta2, decay, step_size, sqrt_bc2, Real(hyper.eps));
    } else {
      adam_range<false>(params, grads, m, v, i0, i1, Real(hyper.grad_scale),
                        Real(hyper.weight_decay), Real(beta1), Real(beta2), one_minus_beta1,
                        one_minus_beta2, decay, step_size, sqrt_bc2, Real(hyper.eps));
    }
  });
}

#define DSINF_INSTANTIATE_CPU_OPS(Real)                                                            \
  template void encoder_forward<Real>(Real*, const int32_t*, const Real*, const Real*, int, int,   \
                                      int);                                                        \
  template void encoder_backward<Real>(Real*, Real*, const Real*, const int32_t*, int, int, int);  \
  template void layernorm_forward<Real>(Real*, Real*, Real*, const Real*, const Real*,             \
                                        const Real*, int, int);                                    \
  template void layernorm_backward<Real>(Real*, Real*, Real*, const Real*, const Real*,            \
                                         const Real*, const Real*, const Real*, int, int);         \
  template void matmul_forward<Real>(Real*, const Real*, const Real*, const Real*, int, int, int); \
  template void matmul_backward<Real>(Real*, Real*, Real*, const Real*, const Real*, const Real*,  \
                                      int, int, int);                                              \
  template void bias_backward<Real>(Real*, const Real*, int, int);                                 \
  template void attention_forward<Real>(Real*, Real*, const Real*, int, int, int, int, Precision); \
  template void attention_backward<Real>(Real*, const Real*, const Real*, const Real*, int, int,   \
                                         int, int, Precision);                                     \
  template void gelu_forward<Real>(Real*, const Real*, size_t);                                    \
  template void gelu_backward<Real>(Real*, const Real*, const Real*, size_t);                      \
  template void residual_forward<Real>(Real*, const Real*, const Real*, size_t);                   \
  template void softmax_crossentropy<Real>(Real*, Real*, const Real*, const int32_t*, int, int,    \
                                           Real);                                                  \
  template void scale<Real>(Real*, Real, size_t);                                                  \
  template void dropout_scale<Real>(Real*, const Real*, size_t, Real, float, uint64_t);            \
  template double sum_squares<Real>(const Real*, size_t);                                          \
  template void adam_step<Real>(Real*, const Real*, Real*, Real*, size_t, const AdamHyper&);

DSINF_INSTANTIATE_CPU_OPS(float)
DSINF_INSTANTIATE_CPU_OPS(double)

#undef DSINF_INSTANTIATE_CPU_OPS

}  // namespace dsinf::kernels::cpu
