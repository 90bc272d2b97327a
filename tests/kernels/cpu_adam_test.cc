// The fused CPU Adam against a double-precision reference, every instruction-set
// path the machine runs against the scalar path bit for bit, and the step from
// issue 1 (cpu::adam_step<float>) bit for bit.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/adam.h"
#include "kernels/cpu/half.h"
#include "kernels/cpu/ops.h"
#include "oneapi/tbb/global_control.h"

namespace dsinf::kernels::cpu {
namespace {

constexpr DType kDTypes[] = {DType::kF32, DType::kBF16, DType::kF16};
constexpr size_t kSizes[] = {1, 7, 15, 16, 17, 63, 64, 65, 1000, 4099, 65536 + 33, 200003};

std::vector<Isa> supported_isas() {
  std::vector<Isa> isas;
  for (int i = 0; i < kNumIsas; ++i) {
    if (isa_supported(static_cast<Isa>(i))) isas.push_back(static_cast<Isa>(i));
  }
  return isas;
}

float load_as_float(const std::vector<uint16_t>& h, size_t i, DType d) {
  return d == DType::kBF16 ? bf16_to_float(h[i]) : f16_to_float(h[i]);
}

// Values stored in dtype d: fp32 ones in f, 16-bit ones in h.
struct Tensor {
  DType dtype = DType::kF32;
  std::vector<float> f;
  std::vector<uint16_t> h;
  void* data() { return dtype == DType::kF32 ? static_cast<void*>(f.data()) : h.data(); }
  float at(size_t i) const { return dtype == DType::kF32 ? f[i] : load_as_float(h, i, dtype); }
  void set(size_t i, float x) {
    if (dtype == DType::kF32) {
      f[i] = x;
    } else {
      h[i] = dtype == DType::kBF16 ? float_to_bf16(x) : float_to_f16(x);
    }
  }
  static Tensor make(DType d, size_t n) {
    Tensor t;
    t.dtype = d;
    if (d == DType::kF32) {
      t.f.assign(n, 0.0f);
    } else {
      t.h.assign(n, 0);
    }
    return t;
  }
  bool bits_equal(const Tensor& o) const { return f == o.f && h == o.h; }
};

struct Problem {
  size_t n = 0;
  std::vector<float> params;
  Tensor grads, m, v, copy;
  bool with_copy = false;

  AdamBuffers buffers() {
    AdamBuffers b;
    b.n = n;
    b.params = params.data();
    b.grads = grads.data();
    b.grad_dtype = grads.dtype;
    b.m = m.data();
    b.v = v.data();
    b.state_dtype = m.dtype;
    if (with_copy) {
      b.params_copy = copy.data();
      b.copy_dtype = copy.dtype;
    }
    return b;
  }
};

// Moments as after a few steps: m around the gradient's size, v >= 0.
Problem make_problem(size_t n, DType grad, DType state, std::optional<DType> copy, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Problem p;
  p.n = n;
  p.params.resize(n);
  p.grads = Tensor::make(grad, n);
  p.m = Tensor::make(state, n);
  p.v = Tensor::make(state, n);
  p.with_copy = copy.has_value();
  p.copy = Tensor::make(copy.value_or(DType::kF32), p.with_copy ? n : 0);
  for (size_t i = 0; i < n; ++i) {
    p.params[i] = 0.05f * normal(rng);
    // fp16 gradients carry a loss scale, so their stored values are large.
    p.grads.set(i, (grad == DType::kF16 ? 1024.0f : 1.0f) * 1e-2f * normal(rng));
    const float g = 1e-2f * normal(rng);
    p.m.set(i, 0.5f * g);
    p.v.set(i, 0.3f * g * g + 1e-7f);
  }
  return p;
}

AdamHyper make_hyper(bool adam_w_mode, int64_t step, bool bias_correction, DType grad) {
  AdamHyper h;
  h.lr = 3e-3f;
  h.beta1 = 0.9f;
  h.beta2 = 0.999f;
  h.eps = 1e-8f;
  h.weight_decay = 0.1f;
  h.adam_w_mode = adam_w_mode;
  h.bias_correction = bias_correction;
  h.step = step;
  // Unscale (fp16) times a clip coefficient.
  h.grad_scale = (grad == DType::kF16 ? 1.0f / 1024.0f : 1.0f) * 0.75f;
  return h;
}

// The step in double from the same (exactly converted) inputs, and for each result the
// size of the terms that were added (cancellation makes the result itself a poor scale).
struct Expected {
  double p, m, v;
  double p_terms, m_terms, v_terms;
};

Expected reference(double p, double g, double m, double v, const AdamHyper& h) {
  const double bc1 = h.bias_correction ? 1.0 - std::pow(double(h.beta1), double(h.step)) : 1.0;
  const double bc2 = h.bias_correction ? 1.0 - std::pow(double(h.beta2), double(h.step)) : 1.0;
  g *= h.grad_scale;
  double g_terms = std::abs(g);
  if (!h.adam_w_mode) {
    g_terms += std::abs(double(h.weight_decay) * p);
    g += double(h.weight_decay) * p;
  }
  Expected e;
  e.m_terms = std::abs(h.beta1 * m) + (1.0 - h.beta1) * g_terms;
  e.m = h.beta1 * m + (1.0 - h.beta1) * g;
  e.v_terms = h.beta2 * v + (1.0 - h.beta2) * g_terms * g_terms;
  e.v = h.beta2 * v + (1.0 - h.beta2) * g * g;
  if (h.adam_w_mode) p *= 1.0 - double(h.lr) * h.weight_decay;
  const double step_size = double(h.lr) / bc1;
  const double denom = std::sqrt(e.v) / std::sqrt(bc2) + h.eps;
  const double update = step_size * e.m / denom;
  // The update's error follows m's terms, and v's relative error through the denominator.
  e.p_terms = std::abs(p) + step_size * e.m_terms / denom * (e.v_terms / e.v);
  e.p = p - update;
  return e;
}

std::string describe(DType g, DType s, std::optional<DType> c, bool adamw, size_t n) {
  return std::string("grads ") + dtype_name(g) + ", moments " + dtype_name(s) + ", copy " +
         (c ? dtype_name(*c) : "none") + (adamw ? ", AdamW" : ", Adam+L2") +
         ", n=" + std::to_string(n);
}

// Relative error of a few fp32 roundings, and of one rounding to bf16.
constexpr double kF32Tolerance = 8 * 0x1p-24;
constexpr double kBf16Rounding = 0x1p-8;

void check_against_reference(DType grad, DType state, std::optional<DType> copy, bool adamw,
                             int64_t step, bool bias_correction) {
  for (size_t n : kSizes) {
    SCOPED_TRACE(describe(grad, state, copy, adamw, n) + ", step " + std::to_string(step));
    Problem in = make_problem(n, grad, state, copy, static_cast<uint32_t>(n + step));
    Problem out = in;
    const AdamHyper h = make_hyper(adamw, step, bias_correction, grad);
    ASSERT_EQ(fused_adam_step(out.buffers(), h, Isa::kScalar), 0u);
    for (size_t i = 0; i < n; ++i) {
      const Expected e = reference(in.params[i], in.grads.at(i), in.m.at(i), in.v.at(i), h);
      // The weight is computed from the fp32 moments before they are stored, so
      // its error is a few fp32 roundings whatever the moments' dtype.
      ASSERT_NEAR(out.params[i], e.p, kF32Tolerance * e.p_terms) << "element " << i;
      const double stored = state == DType::kBF16 ? kBf16Rounding : 0.0;
      ASSERT_NEAR(out.m.at(i), e.m, kF32Tolerance * e.m_terms + stored * std::abs(e.m))
          << "element " << i;
      ASSERT_NEAR(out.v.at(i), e.v, kF32Tolerance * e.v_terms + stored * std::abs(e.v))
          << "element " << i;
      if (copy) {
        Tensor expected_copy = Tensor::make(*copy, 1);
        expected_copy.set(0, out.params[i]);
        ASSERT_EQ(std::bit_cast<uint32_t>(out.copy.at(i)),
                  std::bit_cast<uint32_t>(expected_copy.at(0)))
            << "the copy is not the new weight converted, element " << i;
      }
    }
  }
}

TEST(CpuAdam, MatchesDoubleReferenceForEveryDtypeCombination) {
  for (DType grad : kDTypes) {
    for (DType state : {DType::kF32, DType::kBF16}) {
      for (std::optional<DType> copy : {std::optional<DType>(), std::optional(DType::kBF16),
                                        std::optional(DType::kF16), std::optional(DType::kF32)}) {
        for (bool adamw : {true, false}) check_against_reference(grad, state, copy, adamw, 3, true);
      }
    }
  }
}

TEST(CpuAdam, BiasCorrectionAtFirstAndLargeSteps) {
  for (int64_t step : {int64_t{1}, int64_t{2}, int64_t{1000}, int64_t{1000000}}) {
    check_against_reference(DType::kF32, DType::kF32, std::nullopt, true, step, true);
    check_against_reference(DType::kBF16, DType::kF32, DType::kBF16, false, step, true);
  }
  check_against_reference(DType::kF32, DType::kF32, std::nullopt, true, 1, false);
  check_against_reference(DType::kF16, DType::kF32, DType::kF16, false, 7, false);
}

// Step 1 with bias correction: m = (1 - b1) g, v = (1 - b2) g^2, so the update is
// lr * g / (|g| + eps'): a step of lr against the gradient's sign.
TEST(CpuAdam, FirstStepMovesEachWeightByTheLearningRate) {
  Problem p = make_problem(1000, DType::kF32, DType::kF32, std::nullopt, 5);
  std::fill(p.m.f.begin(), p.m.f.end(), 0.0f);
  std::fill(p.v.f.begin(), p.v.f.end(), 0.0f);
  const std::vector<float> before = p.params;
  AdamHyper h = make_hyper(true, 1, true, DType::kF32);
  h.weight_decay = 0;
  h.grad_scale = 1;
  fused_adam_step(p.buffers(), h);
  for (size_t i = 0; i < p.n; ++i) {
    const double g = p.grads.f[i];
    const double expected = double(h.lr) * g / (std::abs(g) + double(h.eps));
    EXPECT_NEAR(before[i] - p.params[i], expected, 1e-5 * h.lr) << i;
    EXPECT_NEAR(std::abs(expected), h.lr, 1e-2 * h.lr) << "gradient too small for this test: " << i;
  }
}

TEST(CpuAdam, EveryPathIsBitIdenticalToTheScalarPath) {
  const std::vector<Isa> isas = supported_isas();
  ASSERT_EQ(isas.front(), Isa::kScalar);
  for (Isa isa : isas) std::cout << "[ info ] path " << isa_name(isa) << " runs here\n";
  for (DType grad : kDTypes) {
    for (DType state : {DType::kF32, DType::kBF16}) {
      for (std::optional<DType> copy : {std::optional<DType>(), std::optional(DType::kBF16),
                                        std::optional(DType::kF16), std::optional(DType::kF32)}) {
        for (bool adamw : {true, false}) {
          for (size_t n : kSizes) {
            Problem scalar = make_problem(n, grad, state, copy, static_cast<uint32_t>(7 * n));
            const AdamHyper h = make_hyper(adamw, 5, true, grad);
            Problem start = scalar;
            fused_adam_step(scalar.buffers(), h, Isa::kScalar);
            for (Isa isa : isas) {
              SCOPED_TRACE(std::string(isa_name(isa)) + ", " +
                           describe(grad, state, copy, adamw, n));
              Problem vec = start;
              fused_adam_step(vec.buffers(), h, isa);
              ASSERT_EQ(vec.params, scalar.params);
              ASSERT_TRUE(vec.m.bits_equal(scalar.m));
              ASSERT_TRUE(vec.v.bits_equal(scalar.v));
              ASSERT_TRUE(vec.copy.bits_equal(scalar.copy));
            }
          }
        }
      }
    }
  }
}

TEST(CpuAdam, Fp32StepEqualsTheReferenceStepBitForBit) {
  for (bool adamw : {true, false}) {
    for (size_t n : kSizes) {
      Problem fused = make_problem(n, DType::kF32, DType::kF32, std::nullopt, 11);
      Problem plain = fused;
      const AdamHyper h = make_hyper(adamw, 4, true, DType::kF32);
      fused_adam_step(fused.buffers(), h);
      adam_step<float>(plain.params.data(), plain.grads.f.data(), plain.m.f.data(),
                       plain.v.f.data(), n, h);
      ASSERT_EQ(fused.params, plain.params) << n;
      ASSERT_EQ(fused.m.f, plain.m.f) << n;
      ASSERT_EQ(fused.v.f, plain.v.f) << n;
    }
  }
}

TEST(CpuAdam, ResultsDoNotDependOnTheThreadCount) {
  Problem many = make_problem(1 << 20, DType::kBF16, DType::kF32, DType::kBF16, 3);
  Problem one = many;
  const AdamHyper h = make_hyper(true, 9, true, DType::kBF16);
  const GradStats stats_many = grad_stats(many.grads.data(), DType::kBF16, many.n);
  fused_adam_step(many.buffers(), h);
  GradStats stats_one;
  {
    tbb::global_control single(tbb::global_control::max_allowed_parallelism, 1);
    stats_one = grad_stats(one.grads.data(), DType::kBF16, one.n);
    fused_adam_step(one.buffers(), h);
  }
  EXPECT_EQ(std::bit_cast<uint64_t>(stats_many.sum_squares),
            std::bit_cast<uint64_t>(stats_one.sum_squares));
  EXPECT_EQ(many.params, one.params);
  EXPECT_TRUE(many.copy.bits_equal(one.copy));
}

// Positions spread over vector bodies and tails.
std::vector<size_t> bad_positions(size_t n) {
  std::vector<size_t> at;
  for (size_t i : {size_t{0}, size_t{5}, size_t{16}, size_t{17}, n / 2, n - 1}) {
    if (i < n && (at.empty() || at.back() < i)) at.push_back(i);
  }
  return at;
}

TEST(CpuAdam, NonFiniteGradientsAreCountedAndLeaveTheirStateUntouched) {
  const float specials[] = {std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN()};
  for (Isa isa : supported_isas()) {
    for (DType grad : kDTypes) {
      for (size_t n : {size_t{1}, size_t{19}, size_t{100}, size_t{70001}}) {
        SCOPED_TRACE(std::string(isa_name(isa)) + " grads " + dtype_name(grad) +
                     " n=" + std::to_string(n));
        Problem p = make_problem(n, grad, DType::kF32, DType::kBF16, 21);
        const std::vector<size_t> at = bad_positions(n);
        for (size_t k = 0; k < at.size(); ++k) p.grads.set(at[k], specials[k % 3]);
        const Problem before = p;
        const GradStats stats = grad_stats(p.grads.data(), grad, n, isa);
        EXPECT_EQ(stats.nonfinite, at.size());
        EXPECT_FALSE(std::isfinite(stats.sum_squares));
        ASSERT_EQ(fused_adam_step(p.buffers(), make_hyper(true, 2, true, grad), isa), at.size());
        for (size_t i : at) {
          EXPECT_EQ(p.params[i], before.params[i]) << i;
          EXPECT_EQ(p.m.f[i], before.m.f[i]) << i;
          EXPECT_EQ(p.v.f[i], before.v.f[i]) << i;
          EXPECT_EQ(p.copy.h[i], float_to_bf16(before.params[i])) << i;
        }
        size_t changed = 0;
        for (size_t i = 0; i < n; ++i) changed += p.params[i] != before.params[i];
        EXPECT_EQ(changed, n - at.size());
      }
    }
  }
}

TEST(CpuAdam, GradStatsMatchesDoubleAndTheReferenceSumOfSquares) {
  for (DType grad : kDTypes) {
    for (size_t n : kSizes) {
      SCOPED_TRACE(std::string(dtype_name(grad)) + " n=" + std::to_string(n));
      const Problem p = make_problem(n, grad, DType::kF32, std::nullopt, 13);
      Problem q = p;
      double expected = 0;
      for (size_t i = 0; i < n; ++i) expected += double(p.grads.at(i)) * p.grads.at(i);
      const GradStats scalar = grad_stats(q.grads.data(), grad, n, Isa::kScalar);
      EXPECT_EQ(scalar.nonfinite, 0u);
      EXPECT_NEAR(scalar.sum_squares, expected, 1e-12 * expected);
      for (Isa isa : supported_isas()) {
        const GradStats s = grad_stats(q.grads.data(), grad, n, isa);
        EXPECT_EQ(std::bit_cast<uint64_t>(s.sum_squares),
                  std::bit_cast<uint64_t>(scalar.sum_squares))
            << isa_name(isa);
      }
      if (grad == DType::kF32) {
        EXPECT_EQ(std::bit_cast<uint64_t>(scalar.sum_squares),
                  std::bit_cast<uint64_t>(sum_squares<float>(p.grads.f.data(), n)));
      }
    }
  }
}

// ---- conversions ----

// Nearest-even bf16 by comparing the two candidates in double; subnormals to signed zero.
uint16_t reference_bf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if (std::isnan(f)) return static_cast<uint16_t>((x >> 16) | 0x40);
  if (std::fpclassify(f) == FP_SUBNORMAL || f == 0)
    return static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint16_t down = static_cast<uint16_t>(x >> 16);
  if ((x & 0xffff) == 0) return down;
  const uint16_t up = static_cast<uint16_t>(down + 1);
  // The candidate above, in double even where it would be 2^128 (rounding to infinity).
  const double d = f, dd = bf16_to_float(down);
  const double du = dd + std::copysign(std::ldexp(1.0, std::ilogb(dd) - 7), dd);
  const double err_down = std::abs(d - dd), err_up = std::abs(du - d);
  if (err_down < err_up) return down;
  if (err_up < err_down) return up;
  return (down & 1) ? up : down;
}

std::vector<float> interesting_floats() {
  std::vector<float> xs = {0.0f,
                           -0.0f,
                           1.0f,
                           -1.0f,
                           65504.0f,
                           65519.99f,
                           65520.0f,
                           -65520.0f,
                           1e30f,
                           0x1p-14f,
                           0x1p-24f,
                           0x1p-25f,
                           0x1.8p-25f,
                           0x1p-26f,
                           5.96e-8f,
                           std::numeric_limits<float>::min(),
                           std::numeric_limits<float>::denorm_min(),
                           -std::numeric_limits<float>::denorm_min(),
                           std::numeric_limits<float>::max(),
                           std::numeric_limits<float>::infinity(),
                           -std::numeric_limits<float>::infinity(),
                           std::bit_cast<float>(0x3f808000u),  // bf16 tie, rounds to even (down)
                           std::bit_cast<float>(0x3f818000u),  // bf16 tie, rounds up
                           std::bit_cast<float>(0x7f7f8000u),  // rounds to infinity
                           std::bit_cast<float>(0x3f801000u),  // fp16 tie
                           std::bit_cast<float>(0x3f803000u)};
  std::mt19937 rng(17);
  for (int i = 0; i < 200000; ++i) {
    float f = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    if (!std::isnan(f)) xs.push_back(f);
  }
  std::normal_distribution<float> normal;
  for (int i = 0; i < 1000; ++i) xs.push_back(normal(rng));
  while (xs.size() % 16 != 5) xs.push_back(0.5f);  // leave a tail
  return xs;
}

TEST(CpuAdamConversions, ScalarDefinitionsMatchIndependentReferences) {
#if !defined(__FLT16_MAX__)
  GTEST_SKIP() << "this compiler has no _Float16 (the independent fp16 reference)";
#else
  for (float f : interesting_floats()) {
    ASSERT_EQ(float_to_bf16(f), reference_bf16(f)) << std::hexfloat << f;
    const _Float16 h = static_cast<_Float16>(f);  // the compiler's IEEE nearest-even conversion
    ASSERT_EQ(float_to_f16(f), std::bit_cast<uint16_t>(h)) << std::hexfloat << f;
  }
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const uint16_t u = static_cast<uint16_t>(bits);
    const float expected = static_cast<float>(std::bit_cast<_Float16>(u));
    if (std::isnan(expected)) {
      ASSERT_TRUE(std::isnan(f16_to_float(u)));
    } else {
      ASSERT_EQ(std::bit_cast<uint32_t>(f16_to_float(u)), std::bit_cast<uint32_t>(expected))
          << bits;
    }
  }
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))));
  EXPECT_TRUE(std::isnan(f16_to_float(float_to_f16(std::nanf("")))));
#endif
}

TEST(CpuAdamConversions, EveryPathConvertsLikeTheScalarDefinitions) {
  const std::vector<float> xs = interesting_floats();
  std::vector<uint16_t> all_halves(0x10000);
  for (uint32_t i = 0; i <= 0xffff; ++i) all_halves[i] = static_cast<uint16_t>(i);
  for (Isa isa : supported_isas()) {
    SCOPED_TRACE(isa_name(isa));
    for (DType d : {DType::kBF16, DType::kF16}) {
      std::vector<uint16_t> out(xs.size());
      convert(xs.data(), DType::kF32, out.data(), d, 1.0f, xs.size(), isa);
      for (size_t i = 0; i < xs.size(); ++i) {
        const uint16_t expected = d == DType::kBF16 ? float_to_bf16(xs[i]) : float_to_f16(xs[i]);
        ASSERT_EQ(out[i], expected) << dtype_name(d) << " " << std::hexfloat << xs[i];
      }
      std::vector<float> back(all_halves.size());
      convert(all_halves.data(), d, back.data(), DType::kF32, 1.0f, all_halves.size(), isa);
      for (size_t i = 0; i < all_halves.size(); ++i) {
        const float expected =
            d == DType::kBF16 ? bf16_to_float(all_halves[i]) : f16_to_float(all_halves[i]);
        if (std::isnan(expected)) {
          ASSERT_TRUE(std::isnan(back[i])) << i;
        } else {
          ASSERT_EQ(std::bit_cast<uint32_t>(back[i]), std::bit_cast<uint32_t>(expected)) << i;
        }
      }
    }
  }
}

TEST(CpuAdamConversions, UnscaleIntoFp32) {
  std::vector<uint16_t> g(1001);
  for (size_t i = 0; i < g.size(); ++i) g[i] = float_to_f16(static_cast<float>(i) - 500.0f);
  std::vector<float> out(g.size());
  convert(g.data(), DType::kF16, out.data(), DType::kF32, 1.0f / 256, g.size());
  for (size_t i = 0; i < g.size(); ++i) {
    ASSERT_EQ(out[i], (static_cast<float>(i) - 500.0f) / 256) << i;
  }
}

TEST(CpuAdamIsa, NamesRoundTripAndScalarAlwaysRuns) {
  for (int i = 0; i < kNumIsas; ++i) {
    const Isa isa = static_cast<Isa>(i);
    EXPECT_EQ(parse_isa(isa_name(isa)), isa);
  }
  EXPECT_EQ(parse_isa("sse9"), std::nullopt);
  EXPECT_TRUE(isa_supported(Isa::kScalar));
  EXPECT_TRUE(isa_supported(best_isa()));
  // Each path needs the one below it.
  for (int i = 1; i < kNumIsas; ++i) {
    if (isa_supported(static_cast<Isa>(i))) {
      EXPECT_TRUE(isa_supported(static_cast<Isa>(i - 1)));
    }
  }
}

}  // namespace
}  // namespace dsinf::kernels::cpu
