// The CPU Adam's front: instruction-set detection, the step's scalars, and the
// split of each call into contiguous slices run in parallel by oneTBB.
#include "kernels/cpu/adam.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <vector>

#include "kernels/cpu/adam_kernels.h"
#include "kernels/cpu/half.h"
#include "kernels/cpu/ops.h"
#include "memory/util/check.h"
#include "oneapi/tbb/blocked_range.h"
#include "oneapi/tbb/parallel_for.h"
#include "oneapi/tbb/parallel_reduce.h"

namespace dsinf::kernels::cpu {
namespace {

using adam_detail::KernelTable;

// Elements per task: large enough that a task streams megabytes, a multiple of
// 64 so every slice starts on a cache line of every array (and of the copy).
constexpr size_t kSliceElements = size_t{1} << 16;

const KernelTable* kernels_for(Isa isa) {
  DSINF_CHECK_MSG(isa_supported(isa), "CPU Adam path not supported by this CPU");
  switch (isa) {
#if defined(__x86_64__)
    case Isa::kAvx2:
      return adam_detail::avx2_kernels();
    case Isa::kAvx512:
      return adam_detail::avx512_kernels();
    case Isa::kAvx512Bf16:
      return adam_detail::avx512bf16_kernels();
#endif
    default:
      return adam_detail::scalar_kernels();
  }
}

Isa detect_best_isa() {
  Isa best = Isa::kScalar;
  for (int i = kNumIsas - 1; i > 0; --i) {
    if (isa_supported(static_cast<Isa>(i))) {
      best = static_cast<Isa>(i);
      break;
    }
  }
  const char* forced = std::getenv("DSINF_CPU_ISA");
  if (forced == nullptr || *forced == '\0') return best;
  const std::optional<Isa> isa = parse_isa(forced);
  if (!isa || !isa_supported(*isa)) {
    std::cerr << "dsinf: warning: DSINF_CPU_ISA=" << forced
              << " is not a path this CPU runs (scalar, avx2, avx512, avx512bf16); using "
              << isa_name(best) << "\n";
    return best;
  }
  return *isa;
}

// body(begin, end) over [0, n) in slices of kSliceElements, returning the sum of the results.
template <typename Body>
size_t parallel_slices(size_t n, Body&& body) {
  const size_t slices = (n + kSliceElements - 1) / kSliceElements;
  return tbb::parallel_reduce(
      tbb::blocked_range<size_t>(0, slices), size_t{0},
      [&](const tbb::blocked_range<size_t>& r, size_t acc) {
        for (size_t s = r.begin(); s != r.end(); ++s) {
          const size_t begin = s * kSliceElements;
          acc += body(begin, std::min(n, begin + kSliceElements));
        }
        return acc;
      },
      [](size_t a, size_t b) { return a + b; });
}

#if defined(__x86_64__)
// F16C from cpuid leaf 1 (clang's __builtin_cpu_supports does not know "f16c").
bool has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}

bool cpu_has(Isa isa) {
  __builtin_cpu_init();
  const bool avx2 =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512dq");
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
      return avx2;
    case Isa::kAvx512:
      return avx512;
    case Isa::kAvx512Bf16:
      return avx512 && __builtin_cpu_supports("avx512bf16");
  }
  return false;
}
#else
bool cpu_has(Isa isa) { return isa == Isa::kScalar; }
#endif

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx512Bf16:
      return "avx512bf16";
  }
  return "?";
}

std::optional<Isa> parse_isa(std::string_view name) {
  for (int i = 0; i < kNumIsas; ++i) {
    if (name == isa_name(static_cast<Isa>(i))) return static_cast<Isa>(i);
  }
  return std::nullopt;
}

bool isa_supported(Isa isa) {
  // libgcc's cpuid probe also checks that the OS saves the AVX and AVX-512 state.
  static const bool supported[kNumIsas] = {cpu_has(Isa::kScalar), cpu_has(Isa::kAvx2),
                                           cpu_has(Isa::kAvx512), cpu_has(Isa::kAvx512Bf16)};
  const int i = static_cast<int>(isa);
  return i >= 0 && i < kNumIsas && supported[i];
}

Isa best_isa() {
  static const Isa best = detect_best_isa();
  return best;
}

GradStats grad_stats(const void* grads, DType dtype, size_t n, Isa isa) {
  const KernelTable* k = kernels_for(isa);
  const size_t blocks = (n + kSumSquaresBlock - 1) / kSumSquaresBlock;
  std::vector<double> block_sums(blocks);
  constexpr size_t kBlocksPerTask = kSliceElements / kSumSquaresBlock;
  const size_t tasks = (blocks + kBlocksPerTask - 1) / kBlocksPerTask;
  GradStats stats;
  stats.nonfinite = tbb::parallel_reduce(
      tbb::blocked_range<size_t>(0, tasks), size_t{0},
      [&](const tbb::blocked_range<size_t>& r, size_t acc) {
        const size_t b0 = r.begin() * kBlocksPerTask;
        const size_t b1 = std::min(blocks, r.end() * kBlocksPerTask);
        return acc + k->stats(grads, dtype, n, b0, b1, block_sums.data());
      },
      [](size_t a, size_t b) { return a + b; });
  for (double s : block_sums) stats.sum_squares += s;
  return stats;
}

size_t fused_adam_step(const AdamBuffers& buffers, const AdamHyper& hyper, Isa isa) {
  DSINF_CHECK_MSG(!hyper.bias_correction || hyper.step >= 1, "Adam steps are 1-based");
  DSINF_CHECK_MSG(buffers.state_dtype != DType::kF16, "Adam moments are fp32 or bf16");
  DSINF_CHECK(buffers.n == 0 || (buffers.params && buffers.grads && buffers.m && buffers.v));
  const KernelTable* k = kernels_for(isa);
  const adam_detail::StepScalars scalars = adam_detail::step_scalars(hyper);
  return parallel_slices(
      buffers.n, [&](size_t begin, size_t end) { return k->step(buffers, scalars, begin, end); });
}

void convert(const void* src, DType src_dtype, void* dst, DType dst_dtype, float scale, size_t n,
             Isa isa) {
  const KernelTable* k = kernels_for(isa);
  parallel_slices(n, [&](size_t begin, size_t end) {
    k->convert(src, src_dtype, dst, dst_dtype, scale, begin, end);
    return size_t{0};
  });
}

void accumulate(float* acc, const void* src, DType src_dtype, size_t n) {
  parallel_slices(n, [&](size_t begin, size_t end) {
    if (src_dtype == DType::kF32) {
      const float* x = static_cast<const float*>(src);
      for (size_t i = begin; i < end; ++i) acc[i] = acc[i] + x[i];
    } else {
      const uint16_t* x = static_cast<const uint16_t*>(src);
      const bool bf16 = src_dtype == DType::kBF16;
      for (size_t i = begin; i < end; ++i) {
        acc[i] = acc[i] + (bf16 ? bf16_to_float(x[i]) : f16_to_float(x[i]));
      }
    }
    return size_t{0};
  });
}

void axpy(float* a, const float* b, float s, size_t n, Isa isa) {
  const KernelTable* k = kernels_for(isa);
  parallel_slices(n, [&](size_t begin, size_t end) {
    k->axpy(a, b, s, begin, end);
    return size_t{0};
  });
}

}  // namespace dsinf::kernels::cpu

namespace dsinf::kernels::cpu::adam_detail {

StepScalars step_scalars(const AdamHyper& hyper) {
  // The same double arithmetic and roundings as the reference cpu::adam_step.
  const double lr = hyper.lr;
  const double beta1 = hyper.beta1;
  const double beta2 = hyper.beta2;
  const double bc1 = hyper.bias_correction ? 1.0 - std::pow(beta1, double(hyper.step)) : 1.0;
  const double bc2 = hyper.bias_correction ? 1.0 - std::pow(beta2, double(hyper.step)) : 1.0;
  StepScalars s;
  s.grad_scale = hyper.grad_scale;
  s.weight_decay = hyper.weight_decay;
  s.beta1 = static_cast<float>(beta1);
  s.beta2 = static_cast<float>(beta2);
  s.one_minus_beta1 = static_cast<float>(1.0 - beta1);
  s.one_minus_beta2 = static_cast<float>(1.0 - beta2);
  s.decay = static_cast<float>(1.0 - lr * double(hyper.weight_decay));
  s.step_size = static_cast<float>(lr / bc1);
  s.sqrt_bc2 = static_cast<float>(std::sqrt(bc2));
  s.eps = hyper.eps;
  s.adam_w_mode = hyper.adam_w_mode;
  return s;
}

}  // namespace dsinf::kernels::cpu::adam_detail
