// The CPU backend rounds the operands of every product to bf16 / fp16 as
// tensor cores read them (fp32 accumulation), so it is the GPU's reference in
// every precision, and an fp16 operand past 65504 overflows here too.
#include <cmath>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/half.h"

namespace dsinf {
namespace {

// Device::convert and accumulate, against values worked out by hand: bf16
// keeps 8 significant bits, so near 1 its step is 2^-7; fp16 keeps 11, a step
// of 2^-10 near 1, and overflows past 65504.
TEST(CpuBackendPrecision, ConvertRoundsToNearestEvenAndAccumulateAddsOnceAnElement) {
  std::unique_ptr<kernels::Backend> b = kernels::make_cpu_backend({});
  const std::vector<float> x = {1.0f + 0x1p-8f,        // a tie: down to even 1.0
                                1.0f + 3 * 0x1p-8f,    // a tie: up to even 1 + 2^-6
                                1.0f + 0x1p-8f + 0x1p-20f,  // past the tie: 1 + 2^-7
                                -2.5f,                 // exact
                                70000.0f};             // bf16: 70144; fp16: infinity
  std::vector<uint16_t> half(x.size());
  std::vector<float> wide(x.size());
  auto via = [&](kernels::DType type) {
    EXPECT_TRUE(b->convert(x.data(), kernels::DType::kF32, half.data(), type, x.size(),
                           kernels::Stream::kCompute).ok());
    EXPECT_TRUE(b->convert(half.data(), type, wide.data(), kernels::DType::kF32, x.size(),
                           kernels::Stream::kUpload).ok());
    return wide;
  };
  EXPECT_EQ(via(kernels::DType::kBF16),
            (std::vector<float>{1.0f, 1.0f + 0x1p-6f, 1.0f + 0x1p-7f, -2.5f, 70144.0f}));
  EXPECT_EQ(half[3], 0xc020);  // -2.5 in bf16: sign, exponent 128, mantissa 0x20
  const std::vector<float> f16 = via(kernels::DType::kF16);
  EXPECT_EQ(f16[0], 1.0f + 0x1p-8f);  // exact in fp16
  EXPECT_EQ(f16[3], -2.5f);
  EXPECT_TRUE(std::isinf(f16[4]) && f16[4] > 0);
  // acc + float(src), one rounding: 1 + 2^-24 is below fp32's half step at 1.
  std::vector<float> acc = {1.0f, 0.5f, -1.0f};
  const std::vector<uint16_t> add = {0x3380, 0x3f00, 0x3f80};  // bf16 2^-24, 0.5, 1.0
  ASSERT_TRUE(b->accumulate(acc.data(), add.data(), kernels::DType::kBF16, 3,
                            kernels::Stream::kCompute).ok());
  EXPECT_EQ(acc, (std::vector<float>{1.0f, 1.0f, 0.0f}));
}

TEST(CpuBackendPrecision, MatmulOperandsRoundLikeTensorCores) {
  const int N = 3, C = 5, OC = 4;
  std::vector<float> inp(N * C), weight(OC * C), bias(OC);
  for (size_t i = 0; i < inp.size(); ++i) inp[i] = 1.0f + 1e-3f * static_cast<float>(i) / 3.0f;
  for (size_t i = 0; i < weight.size(); ++i)
    weight[i] = 0.5f - 1e-3f * static_cast<float>(i) / 7.0f;
  for (int o = 0; o < OC; ++o) bias[o] = 0.25f * static_cast<float>(o);
  auto run = [&](kernels::Precision p, const std::vector<float>& a, const std::vector<float>& w) {
    std::unique_ptr<kernels::Backend> b = kernels::make_cpu_backend({.matmul_precision = p});
    std::vector<float> out(N * OC, -1.0f);
    b->matmul_forward(out.data(), a.data(), w.data(), bias.data(), N, C, OC);
    return out;
  };
  auto rounded = [](const std::vector<float>& x, bool bf16) {
    std::vector<float> r(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      r[i] = bf16 ? kernels::cpu::bf16_to_float(kernels::cpu::float_to_bf16(x[i]))
                  : kernels::cpu::f16_to_float(kernels::cpu::float_to_f16(x[i]));
    }
    return r;
  };
  const std::vector<float> fp32 = run(kernels::Precision::kFp32, inp, weight);
  const std::vector<float> bf16 = run(kernels::Precision::kBf16, inp, weight);
  EXPECT_EQ(bf16, run(kernels::Precision::kFp32, rounded(inp, true), rounded(weight, true)));
  EXPECT_NE(bf16, fp32);
  EXPECT_EQ(run(kernels::Precision::kFp16, inp, weight),
            run(kernels::Precision::kFp32, rounded(inp, false), rounded(weight, false)));
  // fp16 overflows to infinity past 65504, as a GPU's fp16 operand does.
  std::vector<float> big = inp;
  big[0] = 70000.0f;
  EXPECT_TRUE(std::isinf(run(kernels::Precision::kFp16, big, weight)[0]));
  EXPECT_TRUE(std::isfinite(run(kernels::Precision::kBf16, big, weight)[0]));
}

TEST(CpuBackendPrecision, AttentionRoundsItsProductOperands) {
  // One window of 3 positions, one head of 2 channels: q, k, v and the
  // probabilities where they multiply v are rounded; the softmax is fp32.
  const int T = 3, C = 2;
  std::vector<float> qkv(T * 3 * C);
  for (size_t i = 0; i < qkv.size(); ++i) qkv[i] = 0.3f + 0.1234567f * static_cast<float>(i);
  auto bf = [](double x) {
    return static_cast<double>(
        kernels::cpu::bf16_to_float(kernels::cpu::float_to_bf16(static_cast<float>(x))));
  };
  auto run = [&](kernels::Precision p) {
    std::unique_ptr<kernels::Backend> b = kernels::make_cpu_backend({.matmul_precision = p});
    std::vector<float> out(T * C, -1.0f), att(T * T, -1.0f);
    b->attention_forward(out.data(), att.data(), qkv.data(), 1, T, C, 1);
    return out;
  };
  const std::vector<float> fp32 = run(kernels::Precision::kFp32);
  const std::vector<float> bf16 = run(kernels::Precision::kBf16);
  auto at = [&](int t, int part, int c) { return bf(qkv[(t * 3 + part) * C + c]); };
  for (int t = 0; t < T; ++t) {
    std::vector<double> score(t + 1);
    double max_score = -1e300, sum = 0;
    for (int t2 = 0; t2 <= t; ++t2) {
      score[t2] = (at(t, 0, 0) * at(t2, 1, 0) + at(t, 0, 1) * at(t2, 1, 1)) / std::sqrt(2.0);
      max_score = std::max(max_score, score[t2]);
    }
    for (int t2 = 0; t2 <= t; ++t2) sum += std::exp(score[t2] - max_score);
    for (int c = 0; c < C; ++c) {
      double o = 0;
      for (int t2 = 0; t2 <= t; ++t2) o += bf(std::exp(score[t2] - max_score) / sum) * at(t2, 2, c);
      EXPECT_NEAR(bf16[t * C + c], o, 1e-6 * std::abs(o)) << t << "," << c;
      if (t > 0) {
        EXPECT_GT(std::abs(bf16[t * C + c] - fp32[t * C + c]), 1e-5 * std::abs(o)) << t << "," << c;
      }
    }
  }
}

}  // namespace
}  // namespace dsinf
