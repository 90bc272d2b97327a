// The CPU decoder kernels (kernels/cpu/decoder_ops.h): RMSNorm, RoPE and SwiGLU
// forward against independent double formulas and backward against central
// finite differences of the double instantiation; flash attention (float)
// against a softmax materialised row by row in double, written here
// independently of the kernel (no tiles, no online softmax, no dout . out
// shortcut), at several lengths, GQA ratios and head sizes; "+=" outputs;
// bit-identical results at 1 and 2 oneTBB threads; CpuBackend forwarding.
//
// Errors are normalised: max |got - ref| / max |ref|. Tolerances:
//  - double kernels against double formulas: 1e-13 (a few ulp of exp/sqrt).
//  - finite differences (h = 1e-6, double): 1e-7, as cpu_ops_test.cc.
//  - float RMSNorm/RoPE/SwiGLU against double: 1e-6 (a handful of float
//    roundings per element, each <= 6e-8 relative).
//  - float flash attention against the double reference: 1e-5 for out, lse,
//    dq, dk, dv; the error grows with the number of terms a gradient sums
//    (up to T * NH/KV = 4096 here, of random sign) times float's 6e-8. The
//    test prints the measured maxima (0 to 3e-6 when written).
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/decoder_ops.h"

namespace dsinf::kernels::cpu {
namespace {

using Vec = std::vector<double>;

// Uniform values in [lo, hi), rounded to float so the float and double runs see the same inputs.
Vec random_vec(size_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  Vec v(n);
  for (double& x : v) x = static_cast<float>(dist(rng));
  return v;
}

template <typename Real>
std::vector<Real> as(const Vec& v) {
  return std::vector<Real>(v.begin(), v.end());
}
template <typename Real>
Vec widen(const std::vector<Real>& v) {
  return Vec(v.begin(), v.end());
}

double max_abs(const Vec& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// max |a - ref| / max |ref| (max |ref| of 0 counts as 1).
double normalized_error(const Vec& a, const Vec& ref) {
  EXPECT_EQ(a.size(), ref.size());
  double err = 0;
  for (size_t i = 0; i < a.size() && i < ref.size(); ++i) {
    err = std::max(err, std::abs(a[i] - ref[i]));
  }
  const double scale = max_abs(ref);
  return err / (scale > 0 ? scale : 1.0);
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

Vec minus(const Vec& a, const Vec& b) {
  Vec d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

// Central differences of loss() with respect to every element of x.
template <typename Loss>
Vec numeric_grad(Vec& x, const Loss& loss) {
  constexpr double kH = 1e-6;
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + kH;
    const double plus_h = loss();
    x[i] = saved - kH;
    const double minus_h = loss();
    x[i] = saved;
    g[i] = (plus_h - minus_h) / (2 * kH);
  }
  return g;
}

// `accumulated` is what backward left in a buffer pre-filled with `prior`: the difference must
// be the numeric gradient (this checks "+=" and the gradient at once).
void expect_grad(const char* what, const Vec& accumulated, const Vec& prior, const Vec& numeric) {
  ASSERT_GT(max_abs(numeric), 1e-3) << what << ": degenerate test, gradient is ~0";
  EXPECT_LT(normalized_error(minus(accumulated, prior), numeric), 1e-7) << what;
}

// ---- RMSNorm ----

constexpr int kN = 6, kC = 19;  // C odd: the 8-lane sum's tail runs
constexpr double kEps = 1e-6;

Vec reference_rmsnorm(const Vec& x, const Vec& w, Vec* rstd) {
  Vec out(x.size());
  for (int n = 0; n < kN; ++n) {
    double ms = 0;
    for (int c = 0; c < kC; ++c) ms += x[n * kC + c] * x[n * kC + c];
    (*rstd)[n] = 1 / std::sqrt(ms / kC + kEps);
    for (int c = 0; c < kC; ++c) out[n * kC + c] = x[n * kC + c] * (*rstd)[n] * w[c];
  }
  return out;
}

TEST(CpuDecoderOps, RmsnormForwardMatchesFormula) {
  const Vec x = random_vec(kN * kC, 1, -2.0, 2.0), w = random_vec(kC, 2, 0.5, 1.5);
  Vec ref_rstd(kN);
  const Vec ref = reference_rmsnorm(x, w, &ref_rstd);
  Vec out(kN * kC), rstd(kN);
  rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), kN, kC, kEps);
  EXPECT_LT(normalized_error(out, ref), 1e-13);
  EXPECT_LT(normalized_error(rstd, ref_rstd), 1e-13);
  std::vector<float> outf(kN * kC), rstdf(kN);
  rmsnorm_forward(outf.data(), rstdf.data(), as<float>(x).data(), as<float>(w).data(), kN, kC,
                  float(kEps));
  EXPECT_LT(normalized_error(widen(outf), ref), 1e-6);
  EXPECT_LT(normalized_error(widen(rstdf), ref_rstd), 1e-6);
}

TEST(CpuDecoderOpsGrad, Rmsnorm) {
  Vec x = random_vec(kN * kC, 1, -2.0, 2.0), w = random_vec(kC, 2, 0.5, 1.5);
  const Vec R = random_vec(kN * kC, 3);
  Vec out(kN * kC), rstd(kN);
  auto loss = [&] {
    rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), kN, kC, kEps);
    return dot(out, R);
  };
  loss();
  const Vec dx0 = random_vec(kN * kC, 4), dw0 = random_vec(kC, 5);
  Vec dx = dx0, dw = dw0;
  rmsnorm_backward(dx.data(), dw.data(), R.data(), x.data(), w.data(), rstd.data(), kN, kC);
  expect_grad("dinp", dx, dx0, numeric_grad(x, loss));
  expect_grad("dweight", dw, dw0, numeric_grad(w, loss));
}

// ---- RoPE ----

constexpr int kRB = 2, kRT = 5, kRH = 3, kRD = 10;  // D/2 = 5: not a vector width

// The rotary tables for positions [0, T), base 10000: angle t * base^(-2i/D).
void rope_tables(int T, int D, Vec* cos, Vec* sin) {
  cos->resize(static_cast<size_t>(T) * D / 2);
  sin->resize(cos->size());
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < D / 2; ++i) {
      const double angle = t * std::pow(10000.0, -2.0 * i / D);
      (*cos)[t * D / 2 + i] = static_cast<float>(std::cos(angle));
      (*sin)[t * D / 2 + i] = static_cast<float>(std::sin(angle));
    }
  }
}

TEST(CpuDecoderOps, RopeForwardMatchesFormula) {
  Vec cos, sin;
  rope_tables(kRT, kRD, &cos, &sin);
  const Vec x = random_vec(kRB * kRT * kRH * kRD, 1);
  Vec ref(x.size());
  const int half = kRD / 2;
  for (int r = 0; r < kRB * kRT * kRH; ++r) {
    const int t = r / kRH % kRT;
    for (int i = 0; i < kRD; ++i) {
      const double c = cos[t * half + i % half], s = sin[t * half + i % half];
      const double rotated = i < half ? -x[r * kRD + i + half] : x[r * kRD + i - half];
      ref[r * kRD + i] = x[r * kRD + i] * c + rotated * s;
    }
  }
  Vec y = x;
  rope_forward(y.data(), cos.data(), sin.data(), kRB, kRT, kRH, kRD);
  EXPECT_LT(normalized_error(y, ref), 1e-15);
  std::vector<float> yf = as<float>(x);
  rope_forward(yf.data(), as<float>(cos).data(), as<float>(sin).data(), kRB, kRT, kRH, kRD);
  EXPECT_LT(normalized_error(widen(yf), ref), 1e-6);
}

TEST(CpuDecoderOpsGrad, Rope) {
  Vec cos, sin;
  rope_tables(kRT, kRD, &cos, &sin);
  Vec x = random_vec(kRB * kRT * kRH * kRD, 1);
  const Vec R = random_vec(x.size(), 2);
  auto loss = [&] {
    Vec y = x;
    rope_forward(y.data(), cos.data(), sin.data(), kRB, kRT, kRH, kRD);
    return dot(y, R);
  };
  Vec dx = R;  // in place: the gradient of the rotated tensor becomes the input's
  rope_backward(dx.data(), cos.data(), sin.data(), kRB, kRT, kRH, kRD);
  expect_grad("dx", dx, Vec(x.size(), 0.0), numeric_grad(x, loss));
}

// ---- SwiGLU ----

TEST(CpuDecoderOps, SwigluForwardMatchesFormula) {
  constexpr size_t n = 37;
  const Vec gate = random_vec(n, 1, -6.0, 6.0), up = random_vec(n, 2, -2.0, 2.0);
  Vec ref(n), out(n);
  for (size_t i = 0; i < n; ++i) ref[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
  swiglu_forward(out.data(), gate.data(), up.data(), n);
  EXPECT_LT(normalized_error(out, ref), 1e-15);
  std::vector<float> outf(n);
  swiglu_forward(outf.data(), as<float>(gate).data(), as<float>(up).data(), n);
  EXPECT_LT(normalized_error(widen(outf), ref), 1e-6);
  // Far out in the tails exp overflows to infinity: silu is then -0 and x.
  const std::vector<float> g_tail = {-200.0f, 200.0f}, u_tail = {3.0f, 3.0f};
  std::vector<float> tail(2);
  swiglu_forward(tail.data(), g_tail.data(), u_tail.data(), 2);
  EXPECT_EQ(tail[0], 0.0f);
  EXPECT_EQ(tail[1], 600.0f);
}

TEST(CpuDecoderOpsGrad, Swiglu) {
  constexpr size_t n = 37;
  Vec gate = random_vec(n, 1, -6.0, 6.0), up = random_vec(n, 2, -2.0, 2.0);
  const Vec R = random_vec(n, 3);
  Vec out(n);
  auto loss = [&] {
    swiglu_forward(out.data(), gate.data(), up.data(), n);
    return dot(out, R);
  };
  const Vec dgate0 = random_vec(n, 4), dup0 = random_vec(n, 5);
  Vec dgate = dgate0, dup = dup0;
  swiglu_backward(dgate.data(), dup.data(), R.data(), gate.data(), up.data(), n);
  expect_grad("dgate", dgate, dgate0, numeric_grad(gate, loss));
  expect_grad("dup", dup, dup0, numeric_grad(up, loss));
}

// ---- flash attention ----

struct AttentionShape {
  int B, T, NH, KV, D;
};

std::string describe(const AttentionShape& s) {
  return "B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) + " NH=" + std::to_string(s.NH) +
         " KV=" + std::to_string(s.KV) + " D=" + std::to_string(s.D);
}

// Inputs and the gradient flowing into out, for one shape.
struct AttentionInputs {
  AttentionInputs(const AttentionShape& s, uint64_t seed)
      : q(random_vec(size_t(s.B) * s.T * s.NH * s.D, seed, -2.0, 2.0)),
        k(random_vec(size_t(s.B) * s.T * s.KV * s.D, seed + 1, -2.0, 2.0)),
        v(random_vec(size_t(s.B) * s.T * s.KV * s.D, seed + 2)),
        dout(random_vec(size_t(s.B) * s.T * s.NH * s.D, seed + 3)),
        scale(static_cast<float>(1 / std::sqrt(double(s.D)))) {}
  Vec q, k, v, dout;
  double scale;  // a float value, so both instantiations get the same one
};

struct AttentionResults {
  Vec out, lse, dq, dk, dv;
};

// The textbook formulas per (b, h, t), in double: the softmax row over keys t2 <= t is
// materialised, then out, lse and, given dout, the gradients of out:
//   dv[t2] += p dout, dp = dout . v[t2], ds = p (dp - sum p dp), dq += scale ds k[t2],
//   dk[t2] += scale ds q.
AttentionResults reference_attention(const AttentionShape& s, const AttentionInputs& in) {
  const int D = s.D, group = s.NH / s.KV;
  AttentionResults r{Vec(in.q.size()), Vec(size_t(s.B) * s.NH * s.T), Vec(in.q.size()),
                     Vec(in.k.size()), Vec(in.k.size())};
  auto q_at = [&](int b, int t, int h) { return ((size_t(b) * s.T + t) * s.NH + h) * D; };
  auto kv_at = [&](int b, int t, int g) { return ((size_t(b) * s.T + t) * s.KV + g) * D; };
  Vec p(s.T), dp(s.T);
  for (int b = 0; b < s.B; ++b) {
    for (int h = 0; h < s.NH; ++h) {
      const int g = h / group;
      for (int t = 0; t < s.T; ++t) {
        const double* q = &in.q[q_at(b, t, h)];
        const double* dout = &in.dout[q_at(b, t, h)];
        double max_score = -INFINITY;
        for (int t2 = 0; t2 <= t; ++t2) {
          double score = 0;
          for (int d = 0; d < D; ++d) score += q[d] * in.k[kv_at(b, t2, g) + d];
          p[t2] = score * in.scale;
          max_score = std::max(max_score, p[t2]);
        }
        double z = 0;
        for (int t2 = 0; t2 <= t; ++t2) z += std::exp(p[t2] - max_score);
        r.lse[(size_t(b) * s.NH + h) * s.T + t] = max_score + std::log(z);
        double p_dp = 0;
        for (int t2 = 0; t2 <= t; ++t2) {
          p[t2] = std::exp(p[t2] - max_score) / z;
          dp[t2] = 0;
          for (int d = 0; d < D; ++d) {
            r.out[q_at(b, t, h) + d] += p[t2] * in.v[kv_at(b, t2, g) + d];
            r.dv[kv_at(b, t2, g) + d] += p[t2] * dout[d];
            dp[t2] += dout[d] * in.v[kv_at(b, t2, g) + d];
          }
          p_dp += p[t2] * dp[t2];
        }
        for (int t2 = 0; t2 <= t; ++t2) {
          const double ds = p[t2] * (dp[t2] - p_dp) * in.scale;
          for (int d = 0; d < D; ++d) {
            r.dq[q_at(b, t, h) + d] += ds * in.k[kv_at(b, t2, g) + d];
            r.dk[kv_at(b, t2, g) + d] += ds * q[d];
          }
        }
      }
    }
  }
  return r;
}

// The kernels' results; dq, dk and dv accumulate into the given priors.
template <typename Real>
AttentionResults run_flash(const AttentionShape& s, const AttentionInputs& in, const Vec& dq0,
                           const Vec& dk0, const Vec& dv0) {
  const std::vector<Real> q = as<Real>(in.q), k = as<Real>(in.k), v = as<Real>(in.v),
                          dout = as<Real>(in.dout);
  std::vector<Real> out(q.size()), lse(size_t(s.B) * s.NH * s.T), scratch(lse.size());
  std::vector<Real> dq = as<Real>(dq0), dk = as<Real>(dk0), dv = as<Real>(dv0);
  flash_attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), s.B, s.T, s.NH,
                          s.KV, s.D, Real(in.scale));
  flash_attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(),
                           v.data(), out.data(), lse.data(), scratch.data(), s.B, s.T, s.NH, s.KV,
                           s.D, Real(in.scale));
  return {widen(out), widen(lse), widen(dq), widen(dk), widen(dv)};
}

// T 1 to 1024 (one partial tile, several, exact multiples), NH/KV 1, 2, 4, 8, D 16, 24, 64 and
// an odd 17 (any D works: the 8-wide blocks have scalar tails).
constexpr AttentionShape kAttentionShapes[] = {
    {2, 1, 2, 2, 16},   {2, 7, 4, 2, 24},    {1, 64, 8, 1, 64},
    {2, 100, 8, 8, 24}, {1, 256, 4, 1, 16},  {1, 130, 8, 2, 64},
    {1, 130, 4, 1, 17}, {1, 1024, 8, 2, 64}, {1, 1024, 2, 2, 24},
};

TEST(CpuDecoderOps, FlashAttentionMatchesMaterialisedSoftmax) {
  uint64_t seed = 10;
  for (const AttentionShape& s : kAttentionShapes) {
    SCOPED_TRACE(describe(s));
    const AttentionInputs in(s, seed);
    seed += 10;
    const AttentionResults ref = reference_attention(s, in);
    // "+=": the gradients land on random priors.
    const Vec dq0 = random_vec(in.q.size(), seed++), dk0 = random_vec(in.k.size(), seed++),
              dv0 = random_vec(in.v.size(), seed++);
    const AttentionResults f = run_flash<float>(s, in, dq0, dk0, dv0);
    const double errors[] = {normalized_error(f.out, ref.out), normalized_error(f.lse, ref.lse),
                             normalized_error(minus(f.dq, dq0), ref.dq),
                             normalized_error(minus(f.dk, dk0), ref.dk),
                             normalized_error(minus(f.dv, dv0), ref.dv)};
    const char* names[] = {"out", "lse", "dq", "dk", "dv"};
    std::printf("%-28s", describe(s).c_str());
    for (int i = 0; i < 5; ++i) {
      std::printf(" %s %.1e", names[i], errors[i]);
      EXPECT_LT(errors[i], 1e-5) << names[i];
    }
    std::printf("\n");
    const AttentionResults d =
        run_flash<double>(s, in, Vec(dq0.size()), Vec(dk0.size()), Vec(dv0.size()));
    EXPECT_LT(normalized_error(d.out, ref.out), 1e-12);
    EXPECT_LT(normalized_error(d.lse, ref.lse), 1e-12);
    EXPECT_LT(normalized_error(d.dq, ref.dq), 1e-12);
    EXPECT_LT(normalized_error(d.dk, ref.dk), 1e-12);
    EXPECT_LT(normalized_error(d.dv, ref.dv), 1e-12);
  }
}

// ---- attention against a key/value cache ----

struct CachedShape {
  int Tq, P, NH, KV, D;
};

// The cache of P positions inside a larger one (rows past P are NaN: never read), the queries the
// last Tq rows of a full attention's; the reference is that full attention's out in double.
TEST(CpuDecoderOps, CachedAttentionMatchesTheFullAttentionsLastRows) {
  constexpr CachedShape kShapes[] = {{1, 1, 2, 2, 16},   {1, 37, 8, 2, 24}, {5, 70, 4, 1, 17},
                                     {70, 70, 4, 2, 64}, {3, 130, 8, 8, 24}, {1, 200, 6, 3, 40}};
  uint64_t seed = 500;
  for (const CachedShape& c : kShapes) {
    const AttentionShape s{1, c.P, c.NH, c.KV, c.D};
    SCOPED_TRACE(describe(s) + " Tq=" + std::to_string(c.Tq));
    const AttentionInputs in(s, seed);
    seed += 10;
    const AttentionResults ref = reference_attention(s, in);
    const size_t q_row = size_t(c.NH) * c.D, kv_row = size_t(c.KV) * c.D, spare = 5;
    std::vector<float> k_cache((c.P + spare) * kv_row, NAN), v_cache(k_cache.size(), NAN);
    std::copy(in.k.begin(), in.k.end(), k_cache.begin());
    std::copy(in.v.begin(), in.v.end(), v_cache.begin());
    const size_t first = size_t(c.P - c.Tq) * q_row;
    const std::vector<float> q(in.q.begin() + first, in.q.end());
    std::vector<float> out(q.size(), NAN);
    cached_attention_forward(out.data(), q.data(), k_cache.data(), v_cache.data(), c.Tq, c.P, c.NH,
                             c.KV, c.D, static_cast<float>(in.scale));
    const Vec expected(ref.out.begin() + first, ref.out.end());
    const double error = normalized_error(widen(out), expected);
    EXPECT_LT(error, 1e-5);
    // The double instantiation to the reference's own precision.
    Vec out_d(q.size());
    const Vec kd(in.k.begin(), in.k.end()), vd(in.v.begin(), in.v.end());
    const Vec qd(in.q.begin() + first, in.q.end());
    cached_attention_forward(out_d.data(), qd.data(), kd.data(), vd.data(), c.Tq, c.P, c.NH, c.KV,
                             c.D, in.scale);
    EXPECT_LT(normalized_error(out_d, expected), 1e-12);
  }
}

// The gradients against finite differences of the double forward, across a tile boundary.
TEST(CpuDecoderOpsGrad, FlashAttention) {
  const AttentionShape s{1, 70, 4, 2, 6};
  AttentionInputs in(s, 1);
  Vec out(in.q.size()), lse(size_t(s.NH) * s.T);
  auto loss = [&] {
    flash_attention_forward(out.data(), lse.data(), in.q.data(), in.k.data(), in.v.data(), s.B, s.T,
                            s.NH, s.KV, s.D, in.scale);
    return dot(out, in.dout);
  };
  const Vec dq0 = random_vec(in.q.size(), 2), dk0 = random_vec(in.k.size(), 3),
            dv0 = random_vec(in.v.size(), 4);
  const AttentionResults r = run_flash<double>(s, in, dq0, dk0, dv0);
  expect_grad("dq", r.dq, dq0, numeric_grad(in.q, loss));
  expect_grad("dk", r.dk, dk0, numeric_grad(in.k, loss));
  expect_grad("dv", r.dv, dv0, numeric_grad(in.v, loss));
}

void expect_bitwise_equal(const Vec& a, const Vec& b, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(double))) << what;
}

TEST(CpuDecoderOps, BitwiseDeterministicAcrossThreadCounts) {
  const AttentionShape s{2, 300, 8, 2, 24};
  const AttentionInputs in(s, 5);
  const Vec dq0 = random_vec(in.q.size(), 6), dk0 = random_vec(in.k.size(), 7),
            dv0 = random_vec(in.v.size(), 8);
  const Vec x = random_vec(size_t(600) * 200, 9), w = random_vec(200, 10),
            dy = random_vec(x.size(), 11);
  auto run_with_threads = [&](int threads) {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
    AttentionResults r = run_flash<float>(s, in, dq0, dk0, dv0);
    std::vector<float> y(x.size()), rstd(600), dx(x.size()), dw(200);
    rmsnorm_forward(y.data(), rstd.data(), as<float>(x).data(), as<float>(w).data(), 600, 200,
                    1e-6f);
    rmsnorm_backward(dx.data(), dw.data(), as<float>(dy).data(), as<float>(x).data(),
                     as<float>(w).data(), rstd.data(), 600, 200);
    return std::vector<Vec>{r.out, r.lse, r.dq, r.dk, r.dv, widen(y), widen(dx), widen(dw)};
  };
  const char* names[] = {"out", "lse", "dq", "dk", "dv", "rmsnorm", "rmsnorm dinp", "dweight"};
  const std::vector<Vec> serial = run_with_threads(1);
  for (int run = 0; run < 2; ++run) {  // two dynamic schedules
    const std::vector<Vec> parallel = run_with_threads(2);
    for (size_t i = 0; i < serial.size(); ++i) {
      expect_bitwise_equal(serial[i], parallel[i], names[i]);
    }
  }
}

// CpuBackend runs the float kernels themselves.
TEST(CpuBackendDecoderOps, ForwardsToTheKernelsBitwise) {
  auto be = make_cpu_backend(BackendOptions{});
  const AttentionShape s{1, 80, 4, 1, 16};
  const AttentionInputs in(s, 3);
  const std::vector<float> q = as<float>(in.q), k = as<float>(in.k), v = as<float>(in.v),
                           dout = as<float>(in.dout);
  const size_t rows = size_t(s.NH) * s.T;
  std::vector<float> out(q.size()), lse(rows), scratch(rows), dq(q.size()), dk(k.size()),
      dv(v.size());
  be->flash_attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), s.B, s.T, s.NH,
                              s.KV, s.D, float(in.scale));
  be->flash_attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(),
                               v.data(), out.data(), lse.data(), scratch.data(), s.B, s.T, s.NH,
                               s.KV, s.D, float(in.scale));
  const AttentionResults direct =
      run_flash<float>(s, in, Vec(q.size()), Vec(k.size()), Vec(v.size()));
  expect_bitwise_equal(widen(out), direct.out, "out");
  expect_bitwise_equal(widen(lse), direct.lse, "lse");
  expect_bitwise_equal(widen(dq), direct.dq, "dq");
  expect_bitwise_equal(widen(dk), direct.dk, "dk");
  expect_bitwise_equal(widen(dv), direct.dv, "dv");

  // The elementwise ops: one call each, against the direct float kernels.
  const std::vector<float> x = as<float>(random_vec(64 * 40, 4)), w = as<float>(random_vec(40, 5));
  std::vector<float> y1(x.size()), y2(x.size()), r1(64), r2(64);
  be->rmsnorm_forward(y1.data(), r1.data(), x.data(), w.data(), 64, 40, 1e-5f);
  rmsnorm_forward(y2.data(), r2.data(), x.data(), w.data(), 64, 40, 1e-5f);
  expect_bitwise_equal(widen(y1), widen(y2), "rmsnorm_forward");
  std::vector<float> dx1(x.size()), dx2(x.size()), dw1(40), dw2(40);
  be->rmsnorm_backward(dx1.data(), dw1.data(), x.data(), x.data(), w.data(), r1.data(), 64, 40);
  rmsnorm_backward(dx2.data(), dw2.data(), x.data(), x.data(), w.data(), r2.data(), 64, 40);
  expect_bitwise_equal(widen(dx1), widen(dx2), "rmsnorm_backward dinp");
  expect_bitwise_equal(widen(dw1), widen(dw2), "rmsnorm_backward dweight");
  Vec cos, sin;
  rope_tables(s.T, s.D, &cos, &sin);
  std::vector<float> a = q, b = q;
  be->rope_forward(a.data(), as<float>(cos).data(), as<float>(sin).data(), s.B, s.T, s.NH, s.D);
  rope_forward(b.data(), as<float>(cos).data(), as<float>(sin).data(), s.B, s.T, s.NH, s.D);
  be->rope_backward(a.data(), as<float>(cos).data(), as<float>(sin).data(), s.B, s.T, s.NH, s.D);
  rope_backward(b.data(), as<float>(cos).data(), as<float>(sin).data(), s.B, s.T, s.NH, s.D);
  expect_bitwise_equal(widen(a), widen(b), "rope");
  std::vector<float> o1(q.size()), o2(q.size()), dg1(q.size()), dg2(q.size()), du1(q.size()),
      du2(q.size());
  be->swiglu_forward(o1.data(), q.data(), dout.data(), q.size());
  swiglu_forward(o2.data(), q.data(), dout.data(), q.size());
  be->swiglu_backward(dg1.data(), du1.data(), o1.data(), q.data(), dout.data(), q.size());
  swiglu_backward(dg2.data(), du2.data(), o2.data(), q.data(), dout.data(), q.size());
  expect_bitwise_equal(widen(o1), widen(o2), "swiglu_forward");
  expect_bitwise_equal(widen(dg1), widen(dg2), "swiglu_backward dgate");
  expect_bitwise_equal(widen(du1), widen(du2), "swiglu_backward dup");
}

// Not a check (tests never assert times): the T=8192 forward + backward the
// kernels were sized for. Run with --gtest_also_run_disabled_tests.
TEST(CpuDecoderOps, DISABLED_FlashAttentionTiming) {
  const AttentionShape s{1, 8192, 4, 2, 32};
  const AttentionInputs in(s, 1);
  const auto start = std::chrono::steady_clock::now();
  const AttentionResults r =
      run_flash<float>(s, in, Vec(in.q.size()), Vec(in.k.size()), Vec(in.v.size()));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Causal pairs x D x 2 FLOP per product: 2 products forward, 7 backward (dq and dk/dv each
  // recompute the scores and dout . v).
  const double pairs = double(s.T) * (s.T + 1) / 2 * s.NH * s.B;
  std::printf("T=%d NH=%d KV=%d D=%d forward+backward: %.2f s, %.1f GFLOP/s (out[0] %g)\n", s.T,
              s.NH, s.KV, s.D, seconds, pairs * 2 * s.D * 9 / seconds / 1e9, r.out[0]);
}

}  // namespace
}  // namespace dsinf::kernels::cpu
