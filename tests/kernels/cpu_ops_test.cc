// The CPU reference kernels: every backward against central finite differences
// in double precision, "+=" semantics, float against double, aliasing, Adam
// against a hand-written reference, bitwise determinism across thread counts,
// and CpuBackend (budget, copies, events, forwarding).
#include <cblas.h>  // openblas_set_num_threads
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/ops.h"
#include "kernels/dropout_mask.h"

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

std::vector<int32_t> random_ids(size_t n, int V, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, V - 1);
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = dist(rng);
  return ids;
}

double max_abs(const Vec& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// max |a - ref| / max(1, max |ref|): the ggml-style normalised error.
double normalized_error(const Vec& a, const Vec& ref) {
  EXPECT_EQ(a.size(), ref.size());
  double err = 0;
  for (size_t i = 0; i < a.size() && i < ref.size(); ++i)
    err = std::max(err, std::abs(a[i] - ref[i]));
  return err / std::max(1.0, max_abs(ref));
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
    const double plus = loss();
    x[i] = saved - kH;
    const double minus_h = loss();
    x[i] = saved;
    g[i] = (plus - minus_h) / (2 * kH);
  }
  return g;
}

// `accumulated` is what backward left in a buffer pre-filled with `prior`: the difference must
// be the numeric gradient (this checks "+=" and the gradient at once).
void expect_grad(const char* what, const Vec& accumulated, const Vec& prior, const Vec& numeric) {
  ASSERT_GT(max_abs(numeric), 1e-3) << what << ": degenerate test, gradient is ~0";
  EXPECT_LT(normalized_error(minus(accumulated, prior), numeric), 1e-7) << what;
}

constexpr int kB = 2, kT = 5, kC = 8, kNH = 2, kV = 11, kN = kB * kT;

TEST(CpuOpsGrad, Encoder) {
  Vec wte = random_vec(kV * kC, 1), wpe = random_vec(kT * kC, 2), R = random_vec(kN * kC, 3);
  const auto inp = random_ids(kN, kV, 4);
  Vec out(kN * kC);
  auto loss = [&] {
    encoder_forward(out.data(), inp.data(), wte.data(), wpe.data(), kB, kT, kC);
    return dot(out, R);
  };
  loss();
  for (int r = 0; r < kN; ++r) {
    for (int c = 0; c < kC; ++c) {
      ASSERT_EQ(out[r * kC + c], wte[inp[r] * kC + c] + wpe[(r % kT) * kC + c]);
    }
  }
  const Vec dwte0 = random_vec(kV * kC, 5), dwpe0 = random_vec(kT * kC, 6);
  Vec dwte = dwte0, dwpe = dwpe0;
  encoder_backward(dwte.data(), dwpe.data(), R.data(), inp.data(), kB, kT, kC);
  expect_grad("dwte", dwte, dwte0, numeric_grad(wte, loss));
  expect_grad("dwpe", dwpe, dwpe0, numeric_grad(wpe, loss));
}

// wpe / dwpe null (the decoder families): the token rows alone, and the same dwte bits as with
// position embeddings.
template <typename Real>
void check_encoder_without_positions() {
  const Vec wte_d = random_vec(kV * kC, 1), wpe_d = random_vec(kT * kC, 2);
  const Vec dout_d = random_vec(kN * kC, 3), dwte0 = random_vec(kV * kC, 4);
  const auto inp = random_ids(kN, kV, 5);
  const std::vector<Real> wte(wte_d.begin(), wte_d.end()), dout(dout_d.begin(), dout_d.end());
  std::vector<Real> out(kN * kC);
  encoder_forward(out.data(), inp.data(), wte.data(), nullptr, kB, kT, kC);
  for (int r = 0; r < kN; ++r) {
    for (int c = 0; c < kC; ++c) ASSERT_EQ(out[r * kC + c], wte[inp[r] * kC + c]);
  }
  std::vector<Real> dwte(dwte0.begin(), dwte0.end()), dwte_with = dwte;
  std::vector<Real> dwpe(wpe_d.begin(), wpe_d.end());
  encoder_backward(dwte.data(), nullptr, dout.data(), inp.data(), kB, kT, kC);
  encoder_backward(dwte_with.data(), dwpe.data(), dout.data(), inp.data(), kB, kT, kC);
  EXPECT_EQ(0, std::memcmp(dwte.data(), dwte_with.data(), dwte.size() * sizeof(Real)));
}

TEST(CpuOps, EncoderWithoutPositionEmbeddings) {
  check_encoder_without_positions<float>();
  check_encoder_without_positions<double>();
}

TEST(CpuOpsGrad, Layernorm) {
  Vec inp = random_vec(kN * kC, 1), w = random_vec(kC, 2), b = random_vec(kC, 3);
  const Vec R = random_vec(kN * kC, 4);
  Vec out(kN * kC), mean(kN), rstd(kN);
  auto loss = [&] {
    layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), w.data(), b.data(), kN, kC);
    return dot(out, R);
  };
  loss();
  for (int n = 0; n < kN; ++n) {
    double m = 0, var = 0;
    for (int c = 0; c < kC; ++c) m += inp[n * kC + c] / kC;
    for (int c = 0; c < kC; ++c) var += (inp[n * kC + c] - m) * (inp[n * kC + c] - m) / kC;
    const double s = 1 / std::sqrt(var + 1e-5);
    EXPECT_NEAR(mean[n], m, 1e-14);
    EXPECT_NEAR(rstd[n], s, 1e-12 * s);
    for (int c = 0; c < kC; ++c) {
      EXPECT_NEAR(out[n * kC + c], (inp[n * kC + c] - m) * s * w[c] + b[c], 1e-12);
    }
  }
  const Vec dinp0 = random_vec(kN * kC, 5), dw0 = random_vec(kC, 6), db0 = random_vec(kC, 7);
  Vec dinp = dinp0, dw = dw0, db = db0;
  layernorm_backward(dinp.data(), dw.data(), db.data(), R.data(), inp.data(), w.data(), mean.data(),
                     rstd.data(), kN, kC);
  expect_grad("dinp", dinp, dinp0, numeric_grad(inp, loss));
  expect_grad("dweight", dw, dw0, numeric_grad(w, loss));
  expect_grad("dbias", db, db0, numeric_grad(b, loss));
}

TEST(CpuOpsGrad, Matmul) {
  constexpr int kOC = 6;
  for (bool has_bias : {true, false}) {
    SCOPED_TRACE(has_bias ? "with bias" : "without bias");
    Vec inp = random_vec(kN * kC, 1), w = random_vec(kOC * kC, 2), b = random_vec(kOC, 3);
    const Vec R = random_vec(kN * kOC, 4);
    Vec out(kN * kOC);
    auto loss = [&] {
      matmul_forward(out.data(), inp.data(), w.data(), has_bias ? b.data() : nullptr, kN, kC, kOC);
      return dot(out, R);
    };
    loss();
    Vec ref(kN * kOC);
    for (int n = 0; n < kN; ++n) {
      for (int o = 0; o < kOC; ++o) {
        ref[n * kOC + o] = has_bias ? b[o] : 0.0;
        for (int c = 0; c < kC; ++c) ref[n * kOC + o] += inp[n * kC + c] * w[o * kC + c];
      }
    }
    EXPECT_LT(normalized_error(out, ref), 1e-14);
    const Vec dinp0 = random_vec(kN * kC, 5), dw0 = random_vec(kOC * kC, 6),
              db0 = random_vec(kOC, 7);
    Vec dinp = dinp0, dw = dw0, db = db0;
    matmul_backward(dinp.data(), dw.data(), has_bias ? db.data() : nullptr, R.data(), inp.data(),
                    w.data(), kN, kC, kOC);
    expect_grad("dinp", dinp, dinp0, numeric_grad(inp, loss));
    expect_grad("dweight", dw, dw0, numeric_grad(w, loss));
    if (has_bias) expect_grad("dbias", db, db0, numeric_grad(b, loss));
  }
}

TEST(CpuOpsGrad, Attention) {
  constexpr int kC = 24, kHs = kC / kNH;  // hs = 12: the 8-wide blocks and their tails
  Vec qkv = random_vec(kN * 3 * kC, 1, -1.5, 1.5);
  const Vec R = random_vec(kN * kC, 2);
  Vec out(kN * kC), att(kB * kNH * kT * kT, -7.0);
  auto loss = [&] {
    attention_forward(out.data(), att.data(), qkv.data(), kB, kT, kC, kNH);
    return dot(out, R);
  };
  loss();
  // Independent reference: scores, softmax, weighted sum of values, per (b, h, t).
  Vec ref(kN * kC, 0.0);
  for (int b = 0; b < kB; ++b) {
    for (int h = 0; h < kNH; ++h) {
      for (int t = 0; t < kT; ++t) {
        auto at = [&](int tt, int part, int i) {
          return qkv[(b * kT + tt) * 3 * kC + part * kC + h * kHs + i];
        };
        Vec p(t + 1);
        double z = 0;
        for (int t2 = 0; t2 <= t; ++t2) {
          double s = 0;
          for (int i = 0; i < kHs; ++i) s += at(t, 0, i) * at(t2, 1, i);
          p[t2] = std::exp(s / std::sqrt(double(kHs)));
          z += p[t2];
        }
        const double* att_row = &att[((b * kNH + h) * kT + t) * kT];
        for (int t2 = 0; t2 < kT; ++t2) {
          if (t2 > t) {
            EXPECT_EQ(att_row[t2], 0.0);  // exact zero above the diagonal
            continue;
          }
          EXPECT_NEAR(att_row[t2], p[t2] / z, 1e-14);
          for (int i = 0; i < kHs; ++i)
            ref[(b * kT + t) * kC + h * kHs + i] += p[t2] / z * at(t2, 2, i);
        }
      }
    }
  }
  EXPECT_LT(normalized_error(out, ref), 1e-14);
  const Vec dqkv0 = random_vec(kN * 3 * kC, 3);
  Vec dqkv = dqkv0;
  attention_backward(dqkv.data(), R.data(), qkv.data(), att.data(), kB, kT, kC, kNH);
  expect_grad("dqkv", dqkv, dqkv0, numeric_grad(qkv, loss));
}

TEST(CpuOpsGrad, Gelu) {
  constexpr size_t kN37 = 37;
  Vec inp = random_vec(kN37, 1, -4.0, 4.0);
  const Vec R = random_vec(kN37, 2);
  Vec out(kN37);
  auto loss = [&] {
    gelu_forward(out.data(), inp.data(), kN37);
    return dot(out, R);
  };
  loss();
  for (size_t i = 0; i < kN37; ++i) {
    const double x = inp[i];
    const double ref =
        0.5 * x * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (x + 0.044715 * x * x * x)));
    EXPECT_NEAR(out[i], ref, 1e-14);
  }
  const Vec dinp0 = random_vec(kN37, 3);
  Vec dinp = dinp0;
  gelu_backward(dinp.data(), inp.data(), R.data(), kN37);
  expect_grad("dinp", dinp, dinp0, numeric_grad(inp, loss));
}

TEST(CpuOpsGrad, SoftmaxCrossentropy) {
  constexpr double kDloss = 0.7;
  Vec logits = random_vec(kN * kV, 1, -3.0, 3.0);
  const auto targets = random_ids(kN, kV, 2);
  Vec losses(kN);
  auto loss = [&] {
    softmax_crossentropy<double>(losses.data(), nullptr, logits.data(), targets.data(), kN, kV,
                                 kDloss);
    double sum = 0;
    for (double l : losses) sum += l;
    return kDloss * sum;  // dlogits is the gradient of dloss * sum of the losses
  };
  loss();
  for (int n = 0; n < kN; ++n) {
    long double z = 0;
    for (int i = 0; i < kV; ++i) z += std::exp(static_cast<long double>(logits[n * kV + i]));
    EXPECT_NEAR(losses[n], double(std::log(z) - logits[n * kV + targets[n]]), 1e-14);
  }
  Vec dlogits(kN * kV), losses2(kN);
  softmax_crossentropy(losses2.data(), dlogits.data(), logits.data(), targets.data(), kN, kV,
                       kDloss);
  EXPECT_EQ(losses, losses2);
  expect_grad("dlogits", dlogits, Vec(kN * kV, 0.0), numeric_grad(logits, loss));
}

template <typename Real>
void check_softmax_alias() {
  const Vec logits_d = random_vec(kN * kV, 1, -3.0, 3.0);
  const auto targets = random_ids(kN, kV, 2);
  std::vector<Real> logits(logits_d.begin(), logits_d.end()), dlogits(kN * kV), losses(kN);
  softmax_crossentropy<Real>(losses.data(), dlogits.data(), logits.data(), targets.data(), kN, kV,
                             Real(0.25));
  std::vector<Real> aliased = logits, losses_aliased(kN);
  softmax_crossentropy<Real>(losses_aliased.data(), aliased.data(), aliased.data(), targets.data(),
                             kN, kV, Real(0.25));
  EXPECT_EQ(0, std::memcmp(losses.data(), losses_aliased.data(), kN * sizeof(Real)));
  EXPECT_EQ(0, std::memcmp(dlogits.data(), aliased.data(), kN * kV * sizeof(Real)));
}

TEST(CpuOps, SoftmaxCrossentropyInPlaceMatchesSeparate) {
  check_softmax_alias<float>();
  check_softmax_alias<double>();
}

// ---- every op on a larger problem: float against double, determinism, backend forwarding ----

// Odd sizes (hs = 36, T = 67, ...) so partial gemm tiles, column slices and 8-wide tails all run,
// and large enough that every op splits into several tasks.
struct Shape {
  int B = 3, T = 67, C = 144, NH = 4, V = 509;
};
constexpr size_t kBigN = 100003;  // not a multiple of 8, 16 or the sum_squares block
using Outputs = std::vector<std::pair<std::string, Vec>>;

// clang-format off
#define DSINF_FOR_EACH_OP(X)                                                            \
  X(encoder_forward) X(encoder_backward) X(layernorm_forward) X(layernorm_backward)     \
  X(matmul_forward) X(matmul_backward) X(attention_forward) X(attention_backward)       \
  X(gelu_forward) X(gelu_backward) X(residual_forward) X(softmax_crossentropy) X(scale) \
  X(sum_squares) X(adam_step)
// clang-format on

// Calls cpu::op<Real> directly; BackendOps (below) goes through a Backend instead.
template <typename Real>
struct DirectOps {
#define DSINF_DIRECT(op) \
  decltype(auto) op(auto... args) { return cpu::op<Real>(args...); }
  DSINF_FOR_EACH_OP(DSINF_DIRECT)
#undef DSINF_DIRECT
};

// Runs every op once on fixed seeded inputs and returns every output (as double, losslessly).
template <typename Real, typename Ops>
Outputs run_all(const Shape& s, Ops ops) {
  const int B = s.B, T = s.T, C = s.C, NH = s.NH, V = s.V, N = B * T, OC = 3 * C;
  const size_t NC = size_t(N) * C;
  uint64_t seed = 100;
  auto in = [&](size_t n, double lo = -1.0, double hi = 1.0) {
    const Vec v = random_vec(n, seed++, lo, hi);
    return std::vector<Real>(v.begin(), v.end());
  };
  Outputs o;
  auto keep = [&](const char* name, const std::vector<Real>& v) {
    o.emplace_back(name, Vec(v.begin(), v.end()));
  };
  const auto tokens = random_ids(N, V, 7), targets = random_ids(N, V, 8);
  {
    auto wte = in(V * C), wpe = in(T * C), dout = in(NC), dwte = in(V * C), dwpe = in(T * C);
    std::vector<Real> out(NC);
    ops.encoder_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
    ops.encoder_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C);
    keep("encoder.out", out), keep("encoder.dwte", dwte), keep("encoder.dwpe", dwpe);
  }
  {
    auto x = in(NC), w = in(C), b = in(C), dout = in(NC), dx = in(NC), dw = in(C), db = in(C);
    std::vector<Real> out(NC), mean(N), rstd(N);
    ops.layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
    ops.layernorm_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(),
                           mean.data(), rstd.data(), N, C);
    keep("layernorm.out", out), keep("layernorm.mean", mean), keep("layernorm.rstd", rstd);
    keep("layernorm.dinp", dx), keep("layernorm.dweight", dw), keep("layernorm.dbias", db);
  }
  for (bool has_bias : {true, false}) {
    auto x = in(NC), w = in(size_t(OC) * C), b = in(OC), dout = in(size_t(N) * OC);
    auto dx = in(NC), dw = in(size_t(OC) * C), db = in(OC);
    std::vector<Real> out(size_t(N) * OC);
    ops.matmul_forward(out.data(), x.data(), w.data(), has_bias ? b.data() : nullptr, N, C, OC);
    ops.matmul_backward(dx.data(), dw.data(), has_bias ? db.data() : nullptr, dout.data(), x.data(),
                        w.data(), N, C, OC);
    keep("matmul.out", out), keep("matmul.dinp", dx), keep("matmul.dweight", dw);
    if (has_bias) keep("matmul.dbias", db);
  }
  {
    auto qkv = in(NC * 3, -2.0, 2.0), dout = in(NC), dqkv = in(NC * 3);
    std::vector<Real> out(NC), att(size_t(B) * NH * T * T);
    ops.attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
    ops.attention_backward(dqkv.data(), dout.data(), qkv.data(), att.data(), B, T, C, NH);
    keep("attention.out", out), keep("attention.att", att), keep("attention.dqkv", dqkv);
  }
  {
    auto x = in(NC, -4.0, 4.0), dout = in(NC), dx = in(NC), y = in(NC);
    std::vector<Real> out(NC);
    ops.gelu_forward(out.data(), x.data(), NC);
    ops.gelu_backward(dx.data(), x.data(), dout.data(), NC);
    ops.residual_forward(y.data(), y.data(), out.data(), NC);  // out aliases a
    keep("gelu.out", out), keep("gelu.dinp", dx), keep("residual.out", y);
  }
  {
    auto logits = in(size_t(N) * V, -4.0, 4.0);
    std::vector<Real> losses(N), dlogits(size_t(N) * V);
    ops.softmax_crossentropy(losses.data(), dlogits.data(), logits.data(), targets.data(), N, V,
                             Real(0.25));
    keep("xent.losses", losses), keep("xent.dlogits", dlogits);
  }
  {
    auto x = in(kBigN);
    keep("sum_squares", {Real(ops.sum_squares(x.data(), kBigN) / kBigN)});
    ops.scale(x.data(), Real(0.75), kBigN);
    keep("scale", x);
  }
  for (bool adam_w : {true, false}) {
    auto p = in(kBigN), g = in(kBigN), m = in(kBigN, -0.1, 0.1), v = in(kBigN, 0.0, 0.01);
    AdamHyper hyper{
        .lr = 1e-2f, .weight_decay = 0.1f, .adam_w_mode = adam_w, .step = 3, .grad_scale = 0.5f};
    ops.adam_step(p.data(), g.data(), m.data(), v.data(), kBigN, hyper);
    keep("adam.params", p), keep("adam.m", m), keep("adam.v", v);
  }
  return o;
}

TEST(CpuOps, FloatMatchesDouble) {
  const Outputs f = run_all<float>(Shape{}, DirectOps<float>{});
  const Outputs d = run_all<double>(Shape{}, DirectOps<double>{});
  ASSERT_EQ(f.size(), d.size());
  for (size_t i = 0; i < f.size(); ++i) {
    EXPECT_LT(normalized_error(f[i].second, d[i].second), 1e-5) << f[i].first;
  }
}

void expect_bitwise_equal(const Outputs& a, const Outputs& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].second.size(), b[i].second.size()) << a[i].first;
    EXPECT_EQ(
        0, std::memcmp(a[i].second.data(), b[i].second.data(), a[i].second.size() * sizeof(double)))
        << a[i].first;
  }
}

// OpenBLAS is set to the same thread count as oneTBB: the kernels must pin it to one thread.
TEST(CpuOps, BitwiseDeterministicAcrossThreadCounts) {
  const int blas_threads = openblas_get_num_threads();
  auto run_with_threads = [](int threads) {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
    openblas_set_num_threads(threads);
    return run_all<float>(Shape{}, DirectOps<float>{});
  };
  const Outputs serial = run_with_threads(1);
  expect_bitwise_equal(serial, run_with_threads(2));
  expect_bitwise_equal(serial, run_with_threads(2));  // another dynamic schedule
  openblas_set_num_threads(blas_threads);
}

// ---- Adam ----

struct AdamState {
  Vec p, m, v;
};

// Hand-written double reference of the AdamW / L2 Adam step.
void reference_adam(AdamState& s, const Vec& grads, const AdamHyper& h) {
  const double lr = h.lr, b1 = h.beta1, b2 = h.beta2, wd = h.weight_decay;
  const double bc1 = h.bias_correction ? 1 - std::pow(b1, double(h.step)) : 1.0;
  const double bc2 = h.bias_correction ? 1 - std::pow(b2, double(h.step)) : 1.0;
  for (size_t i = 0; i < s.p.size(); ++i) {
    double g = grads[i] * double(h.grad_scale);
    if (!h.adam_w_mode) g += wd * s.p[i];
    s.m[i] = b1 * s.m[i] + (1 - b1) * g;
    s.v[i] = b2 * s.v[i] + (1 - b2) * g * g;
    if (h.adam_w_mode) s.p[i] *= 1 - lr * wd;
    s.p[i] -= lr / bc1 * s.m[i] / (std::sqrt(s.v[i]) / std::sqrt(bc2) + double(h.eps));
  }
}

// max |a - ref| / max |ref|: m and v are small, so scale by themselves rather than by 1.
double relative_error(const Vec& a, const Vec& ref) {
  return normalized_error(a, ref) * std::max(1.0, max_abs(ref)) / max_abs(ref);
}

template <typename Real>
void run_adam(std::vector<Real>& p, std::vector<Real>& m, std::vector<Real>& v, const Vec& grads,
              const AdamHyper& h) {
  const std::vector<Real> g(grads.begin(), grads.end());
  adam_step<Real>(p.data(), g.data(), m.data(), v.data(), p.size(), h);
}

TEST(CpuOps, AdamMatchesReference) {
  for (size_t n : {size_t{37}, size_t{1003}}) {
    for (bool adam_w : {true, false}) {
      for (bool bias_correction : {true, false}) {
        SCOPED_TRACE(testing::Message() << "n=" << n << " adam_w=" << adam_w
                                        << " bias_correction=" << bias_correction);
        AdamState ref{random_vec(n, 1), Vec(n, 0.0), Vec(n, 0.0)};
        std::vector<float> pf(ref.p.begin(), ref.p.end()), mf(n), vf(n);
        Vec pd = ref.p, md(n), vd(n);
        AdamHyper h{.lr = 1e-2f, .beta2 = 0.95f, .weight_decay = 0.1f, .adam_w_mode = adam_w};
        h.bias_correction = bias_correction;
        h.grad_scale = 0.5f;
        for (int64_t step : {1, 2, 3, 10000, 10001}) {
          h.step = step;
          const Vec g = random_vec(n, 10 + step);
          reference_adam(ref, g, h);
          run_adam(pf, mf, vf, g, h);
          run_adam(pd, md, vd, g, h);
          EXPECT_LT(normalized_error(pd, ref.p), 1e-14) << "step " << step;
          EXPECT_LT(relative_error(md, ref.m), 1e-14) << "step " << step;
          EXPECT_LT(relative_error(vd, ref.v), 1e-14) << "step " << step;
          EXPECT_LT(normalized_error(Vec(pf.begin(), pf.end()), ref.p), 2e-6) << "step " << step;
          EXPECT_LT(relative_error(Vec(mf.begin(), mf.end()), ref.m), 1e-5) << "step " << step;
          EXPECT_LT(relative_error(Vec(vf.begin(), vf.end()), ref.v), 1e-5) << "step " << step;
        }
      }
    }
  }
}

// The documented float formula (ops.h) holds to the bit: fused kernels are checked against it.
TEST(CpuOps, AdamFloatFollowsDocumentedFormulaExactly) {
  constexpr size_t n = 45;
  const Vec p0 = random_vec(n, 1), g0 = random_vec(n, 2), m0 = random_vec(n, 3, -0.1, 0.1),
            v0 = random_vec(n, 4, 0.0, 0.01);
  for (bool adam_w : {true, false}) {
    const AdamHyper h{
        .lr = 3e-4f, .weight_decay = 0.01f, .adam_w_mode = adam_w, .step = 7, .grad_scale = 0.25f};
    std::vector<float> p(p0.begin(), p0.end()), g(g0.begin(), g0.end()), m(m0.begin(), m0.end()),
        v(v0.begin(), v0.end());
    adam_step<float>(p.data(), g.data(), m.data(), v.data(), n, h);
    const float step_size = float(double(h.lr) / (1 - std::pow(double(h.beta1), 7.0)));
    const float sqrt_bc2 = float(std::sqrt(1 - std::pow(double(h.beta2), 7.0)));
    const float decay = float(1 - double(h.lr) * double(h.weight_decay));
    for (size_t i = 0; i < n; ++i) {
      float pi = float(p0[i]), gi = float(g0[i]) * h.grad_scale;
      if (!adam_w) gi = gi + h.weight_decay * pi;
      const float mi = h.beta1 * float(m0[i]) + float(1.0 - double(h.beta1)) * gi;
      const float vi = h.beta2 * float(v0[i]) + float(1.0 - double(h.beta2)) * (gi * gi);
      if (adam_w) pi = pi * decay;
      pi = pi - (step_size * mi) / (std::sqrt(vi) / sqrt_bc2 + h.eps);
      EXPECT_EQ(m[i], mi);
      EXPECT_EQ(v[i], vi);
      EXPECT_EQ(p[i], pi) << i;
    }
  }
}

TEST(CpuOps, SumSquaresAndScale) {
  for (size_t n :
       {size_t{0}, size_t{1}, size_t{7}, kSumSquaresBlock, kSumSquaresBlock + 1, kBigN}) {
    const Vec x = random_vec(n, n + 1);
    long double ref = 0;
    for (double v : x) ref += static_cast<long double>(v) * v;
    const std::vector<float> xf(x.begin(), x.end());
    EXPECT_NEAR(sum_squares(xf.data(), n), double(ref), 1e-13 * double(ref)) << n;
    EXPECT_NEAR(sum_squares(x.data(), n), double(ref), 1e-13 * double(ref)) << n;
    std::vector<float> scaled = xf;
    scale(scaled.data(), 1.5f, n);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(scaled[i], xf[i] * 1.5f);
  }
}

// Dropout: kept elements are in * s exactly, dropped ones 0; the mask is a
// function of the key (the same key repeats it, in place too; another key
// gives another), and about p of the elements drop. p 0 is a scaled copy.
TEST(CpuOps, DropoutScaleMaskFollowsItsKey) {
  const size_t n = 200000;
  const Vec x = random_vec(n, 3);
  const std::vector<float> in(x.begin(), x.end());
  std::vector<float> a(n), b(n), other(n), copy(n);
  dropout_scale(a.data(), in.data(), n, 2.0f, 0.25f, 42);
  dropout_scale(b.data(), in.data(), n, 2.0f, 0.25f, 42);
  dropout_scale(other.data(), in.data(), n, 2.0f, 0.25f, 43);
  dropout_scale(copy.data(), in.data(), n, 0.5f, 0.0f, 42);
  size_t dropped = 0, differ = 0;
  for (size_t i = 0; i < n; ++i) {
    ASSERT_TRUE(a[i] == 0.0f || a[i] == in[i] * 2.0f) << i;
    ASSERT_EQ(a[i] == 0.0f, !dropout_keep(42, i, 0.25f)) << i;
    ASSERT_EQ(copy[i], in[i] * 0.5f) << i;
    dropped += a[i] == 0.0f;
    differ += (a[i] == 0.0f) != (other[i] == 0.0f);
  }
  EXPECT_EQ(a, b);
  EXPECT_NEAR(static_cast<double>(dropped) / n, 0.25, 0.005);
  EXPECT_GT(differ, n / 4);  // independent masks disagree on 2 p (1 - p) = 37.5%
  std::vector<float> in_place = in;
  dropout_scale(in_place.data(), in_place.data(), n, 2.0f, 0.25f, 42);
  EXPECT_EQ(in_place, a);
}

// A frozen weight: matmul_backward without dweight gives the same dinp bits.
TEST(CpuOps, MatmulBackwardWithoutWeightGradientGivesTheSameInputGradient) {
  const int N = 37, C = 24, OC = 19;
  const Vec xi = random_vec(N * C, 5), xw = random_vec(OC * C, 6), xd = random_vec(N * OC, 7);
  const std::vector<float> inp(xi.begin(), xi.end()), weight(xw.begin(), xw.end()),
      dout(xd.begin(), xd.end());
  std::vector<float> dinp_full(N * C, 0.5f), dinp_frozen(N * C, 0.5f), dweight(OC * C, 0.0f);
  matmul_backward(dinp_full.data(), dweight.data(), nullptr, dout.data(), inp.data(),
                  weight.data(), N, C, OC);
  matmul_backward<float>(dinp_frozen.data(), nullptr, nullptr, dout.data(), inp.data(),
                         weight.data(), N, C, OC);
  EXPECT_EQ(dinp_full, dinp_frozen);
}

// ---- CpuBackend ----

TEST(CpuBackend, BudgetedArena) {
  constexpr size_t kPage = 4096;
  auto be = make_cpu_backend(BackendOptions{.device_budget_bytes = 4 * kPage});
  EXPECT_EQ(be->name(), "cpu");
  absl::StatusOr<void*> a = be->allocate(kPage);
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<void*> b = be->allocate(2 * kPage - 100);  // counted as 2 pages
  ASSERT_TRUE(b.ok()) << b.status();
  const auto* bytes = static_cast<const unsigned char*>(*b);
  EXPECT_TRUE(std::all_of(bytes, bytes + 2 * kPage - 100, [](unsigned char c) { return c == 0; }));
  EXPECT_EQ(be->memory_stats().in_use_bytes, 3 * kPage);
  EXPECT_EQ(be->memory_stats().budget_bytes, 4 * kPage);

  absl::StatusOr<void*> too_big = be->allocate(kPage + 1);
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(be->memory_stats().in_use_bytes, 3 * kPage);

  be->release(*b);
  EXPECT_EQ(be->memory_stats().in_use_bytes, kPage);
  EXPECT_EQ(be->memory_stats().peak_bytes, 3 * kPage);
  absl::StatusOr<void*> c = be->allocate(3 * kPage);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(be->memory_stats().peak_bytes, 4 * kPage);
  be->release(*a);
  be->release(*c);
  EXPECT_EQ(be->memory_stats().in_use_bytes, 0u);

  auto unbounded = make_cpu_backend(BackendOptions{});
  absl::StatusOr<void*> big = unbounded->allocate(64 << 20);
  ASSERT_TRUE(big.ok()) << big.status();
  unbounded->release(*big);
}

TEST(CpuBackend, CopiesAndEvents) {
  auto be = make_cpu_backend(BackendOptions{});
  constexpr size_t n = 1001;
  const Vec xd = random_vec(n, 1);
  const std::vector<float> host(xd.begin(), xd.end());
  absl::StatusOr<void*> dev = be->allocate(n * sizeof(float));
  ASSERT_TRUE(dev.ok());
  float* d = static_cast<float*>(*dev);
  ASSERT_TRUE(be->copy_to_device(d, host.data(), n * sizeof(float), Stream::kUpload).ok());
  const Event uploaded = be->record(Stream::kUpload);
  EXPECT_NE(uploaded, 0u);
  be->stream_wait(Stream::kCompute, uploaded);
  be->scale(d, 2.0f, n);
  const Event computed = be->record(Stream::kCompute);
  EXPECT_GT(computed, uploaded);
  std::vector<float> back(n);
  ASSERT_TRUE(be->copy_to_host(back.data(), d, n * sizeof(float), Stream::kDownload).ok());
  EXPECT_TRUE(be->wait(be->record(Stream::kDownload)).ok());
  EXPECT_TRUE(be->wait(uploaded).ok());
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(back[i], host[i] * 2.0f);

  ASSERT_TRUE(be->fill_zero(d, n * sizeof(float), Stream::kCompute).ok());
  ASSERT_TRUE(be->copy_to_host(back.data(), d, n * sizeof(float), Stream::kDownload).ok());
  EXPECT_TRUE(be->synchronize(Stream::kDownload).ok());
  EXPECT_TRUE(std::all_of(back.begin(), back.end(), [](float v) { return v == 0.0f; }));

  EXPECT_EQ(be->wait(0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(be->wait(computed + 1000).code(), absl::StatusCode::kInvalidArgument);
  be->release(d);
}

// Forwards every Backend op, so the backend can be compared with the float reference bitwise.
struct BackendOps {
  Backend* be;
#define DSINF_VIA_BACKEND(op) \
  decltype(auto) op(auto... args) { return be->op(args...); }
  DSINF_FOR_EACH_OP(DSINF_VIA_BACKEND)
#undef DSINF_VIA_BACKEND
};

TEST(CpuBackend, OpsMatchReferenceBitwise) {
  // The CPU backend's device memory is host memory, so plain host buffers serve as operands.
  auto be = make_cpu_backend(BackendOptions{});
  const Shape small{.B = 2, .T = 16, .C = 32, .NH = 4, .V = 50};
  expect_bitwise_equal(run_all<float>(small, DirectOps<float>{}),
                       run_all<float>(small, BackendOps{be.get()}));
}

}  // namespace
}  // namespace dsinf::kernels::cpu
