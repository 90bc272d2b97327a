// dsinf's fused CPU Adam against PyTorch's torch.optim.AdamW / torch.optim.Adam
// (float32, foreach=False, run by tests/kernels/torch_adam.py): weights, m and v
// after each of 5 steps, on every instruction-set path this CPU runs.
//
// PyTorch rounds differently in places (FMA in add_(alpha=), m/denom before the
// step size in addcdiv_), so the comparison allows a few ulps:
//   params: |a - b| <= 2e-6 * (|b| + lr)     (a few ulps of the weight, or of an update)
//   m:      |a - b| <= 1e-6 * G               (G: the largest |gradient| seen so far by the
//                                             element, the L2 term included; m cancels)
//   v:      |a - b| <= 2e-6 * max(|b|, (1 - beta2) * G^2)
//                                            (relative, but with L2 decay g + wd * p
//                                             can cancel, and PyTorch forms it with FMA)
// A wrong formula (bias correction off, weight decay decoupled instead of L2 or
// the reverse, a wrong beta) misses these by orders of magnitude.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/adam.h"
#include "tests/test_util.h"

namespace dsinf::kernels::cpu {
namespace {

using dsinf::testing::TempDir;

constexpr int kSteps = 5;
constexpr double kTolParams = 2e-6, kTolM = 1e-6, kTolV = 2e-6;  // see the top
const std::vector<size_t> kSizes = {1000, 4099};                 // 4099: not a multiple of 16

struct AdamCase {
  const char* name;
  bool adam_w_mode;
  float lr, beta1, beta2, eps, weight_decay;
};

void PrintTo(const AdamCase& c, std::ostream* os) { *os << c.name; }

void write_f32(const std::string& path, const std::vector<float>& data) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(data.data()),
            static_cast<std::streamsize>(data.size() * sizeof(float)));
  ASSERT_TRUE(out.good()) << path;
}

std::vector<float> read_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return {};
  std::vector<float> data(static_cast<size_t>(in.tellg()) / sizeof(float));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(data.data()),
          static_cast<std::streamsize>(data.size() * sizeof(float)));
  return data;
}

// A float exactly, as Python reads it back.
std::string exact(float x) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", static_cast<double>(x));
  return buf;
}

class CpuAdamTorchTest : public ::testing::TestWithParam<AdamCase> {};

TEST_P(CpuAdamTorchTest, FiveStepsMatchTorchOptim) {
  if (!dsinf::testing::have_torch()) GTEST_SKIP() << "python3-torch is not installed";
  const AdamCase& c = GetParam();
  size_t total = 0;
  for (size_t n : kSizes) total += n;

  // Weights ~ N(0, 0.5); gradients ~ N(0, 1) times a per-element scale spread over
  // 10^-4 .. 10^0 (so eps and the L2 term matter for some elements), a few exactly 0.
  std::mt19937_64 rng(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> exponent(-4.0f, 0.0f);
  std::vector<float> params0(total), scale(total), grads(kSteps * total);
  for (size_t i = 0; i < total; ++i) {
    params0[i] = 0.5f * normal(rng);
    scale[i] = std::pow(10.0f, exponent(rng));
  }
  for (int t = 0; t < kSteps; ++t) {
    for (size_t i = 0; i < total; ++i) {
      grads[t * total + i] = (i % 97 == static_cast<size_t>(t)) ? 0.0f : scale[i] * normal(rng);
    }
  }

  TempDir dir;
  write_f32(dir / "params.f32", params0);
  write_f32(dir / "grads.f32", grads);
  std::string sizes;
  for (size_t n : kSizes) sizes += (sizes.empty() ? "" : ",") + std::to_string(n);
  const std::string command = std::string("/usr/bin/python3 ") + DSINF_SOURCE_DIR +
                              "/tests/kernels/torch_adam.py --dir " + dir.path() + " --sizes " +
                              sizes + " --steps " + std::to_string(kSteps) + " --mode " +
                              (c.adam_w_mode ? "adamw" : "adam") + " --lr " + exact(c.lr) +
                              " --beta1 " + exact(c.beta1) + " --beta2 " + exact(c.beta2) +
                              " --eps " + exact(c.eps) + " --weight_decay " + exact(c.weight_decay);
  const dsinf::testing::CommandResult result = dsinf::testing::run_command(command, dir.path());
  ASSERT_EQ(result.exit_code, 0) << command << "\n" << result.err;
  const std::vector<float> expected = read_f32(dir / "out.f32");
  ASSERT_EQ(expected.size(), static_cast<size_t>(kSteps) * 3 * total);

  std::vector<Isa> isas;
  for (int k = 0; k < kNumIsas; ++k) {
    if (isa_supported(static_cast<Isa>(k))) isas.push_back(static_cast<Isa>(k));
  }
  ASSERT_NE(std::find(isas.begin(), isas.end(), best_isa()), isas.end());

  for (Isa isa : isas) {
    SCOPED_TRACE(isa_name(isa));
    std::vector<float> params = params0, m(total, 0.0f), v(total, 0.0f);
    std::vector<float> g_max(total, 0.0f);         // largest |effective gradient| so far
    double worst_p = 0, worst_m = 0, worst_v = 0;  // error / allowed-error scale
    for (int t = 0; t < kSteps; ++t) {
      const float* g = grads.data() + t * total;
      for (size_t i = 0; i < total; ++i) {
        const float l2 = c.adam_w_mode ? 0.0f : c.weight_decay * std::abs(params[i]);
        g_max[i] = std::max(g_max[i], std::abs(g[i]) + l2);
      }
      AdamHyper hyper;
      hyper.lr = c.lr;
      hyper.beta1 = c.beta1;
      hyper.beta2 = c.beta2;
      hyper.eps = c.eps;
      hyper.weight_decay = c.weight_decay;
      hyper.adam_w_mode = c.adam_w_mode;
      hyper.bias_correction = true;
      hyper.step = t + 1;
      hyper.grad_scale = 1.0f;
      size_t offset = 0;
      for (size_t n : kSizes) {
        AdamBuffers buffers;
        buffers.n = n;
        buffers.params = params.data() + offset;
        buffers.grads = g + offset;
        buffers.grad_dtype = DType::kF32;
        buffers.m = m.data() + offset;
        buffers.v = v.data() + offset;
        buffers.state_dtype = DType::kF32;
        ASSERT_EQ(fused_adam_step(buffers, hyper, isa), 0u);
        offset += n;
      }

      const float* want_p = expected.data() + (3 * t + 0) * total;
      const float* want_m = expected.data() + (3 * t + 1) * total;
      const float* want_v = expected.data() + (3 * t + 2) * total;
      for (size_t i = 0; i < total; ++i) {
        const double ep = std::abs(double(params[i]) - want_p[i]) / (std::abs(want_p[i]) + c.lr);
        const double em = g_max[i] > 0 ? std::abs(double(m[i]) - want_m[i]) / g_max[i]
                                       : std::abs(double(m[i]) - want_m[i]) * 1e30;
        const double v_scale = std::max(double(want_v[i]), (1.0 - c.beta2) * g_max[i] * g_max[i]);
        const double ev = v_scale > 0 ? std::abs(double(v[i]) - want_v[i]) / v_scale
                                      : std::abs(double(v[i])) * 1e30;
        worst_p = std::max(worst_p, ep);
        worst_m = std::max(worst_m, em);
        worst_v = std::max(worst_v, ev);
        ASSERT_LE(ep, kTolParams) << "param " << i << " step " << t + 1 << ": " << params[i]
                                  << " vs torch " << want_p[i];
        ASSERT_LE(em, kTolM) << "m " << i << " step " << t + 1 << ": " << m[i] << " vs torch "
                             << want_m[i];
        ASSERT_LE(ev, kTolV) << "v " << i << " step " << t + 1 << ": " << v[i] << " vs torch "
                             << want_v[i];
      }
    }
    std::printf("[%s %s] largest normalized differences: params %.3g, m %.3g, v %.3g\n", c.name,
                isa_name(isa), worst_p, worst_m, worst_v);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CpuAdamTorchTest,
    ::testing::Values(AdamCase{"AdamW", true, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f},
                      AdamCase{"AdamL2", false, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f},
                      AdamCase{"AdamWLargeLr", true, 0.05f, 0.8f, 0.95f, 1e-8f, 0.1f},
                      AdamCase{"AdamL2LargeLr", false, 0.05f, 0.8f, 0.95f, 1e-8f, 0.01f}),
    [](const ::testing::TestParamInfo<AdamCase>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace dsinf::kernels::cpu
