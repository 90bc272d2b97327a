// The CPU optimizer step: one fused pass of Adam/AdamW over a chunk, at the
// host memory-bandwidth limit, with the instruction set picked at run time.
//
// A training step with offloaded optimizer state makes two passes over memory:
//   1. grad_stats() reads the gradients once (2 or 4 bytes per parameter) for
//      the sum of squares behind the global norm and the count of inf/NaN
//      entries. Clipping and fp16 overflow both need every gradient before any
//      update, so this pass must finish, over all chunks, first; a step with a
//      non-finite gradient is skipped there and no state is touched.
//   2. fused_adam_step() reads the fp32 master weights, m, v and the gradients
//      (fp32, bf16 or fp16) and writes the weights, m, v and optionally a
//      bf16/fp16 copy of the new weights for the device, applying the unscale
//      and clip factor (hyper.grad_scale) on the way: 28 bytes per parameter
//      with bf16 gradients and a bf16 copy.
//
// Every instruction-set path computes the same IEEE operations in the same
// order (no fused multiply-add, correctly rounded sqrt and divide, the
// conversions of half.h), so all of them, and every thread count, give
// bit-identical results; for fp32 gradients and state they equal the reference
// cpu::adam_step<float> of ops.h bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "kernels/backend.h"

namespace dsinf::kernels::cpu {

// Instruction-set paths, in order of preference.
enum class Isa : int {
  kScalar = 0,      // any x86-64 (or any other CPU)
  kAvx2 = 1,        // AVX2 + FMA + F16C
  kAvx512 = 2,      // AVX-512 F/BW/VL/DQ, bf16 rounding done with integer ops
  kAvx512Bf16 = 3,  // the above plus AVX512_BF16's vcvtneps2bf16
};
inline constexpr int kNumIsas = 4;

const char* isa_name(Isa isa);  // "scalar", "avx2", "avx512", "avx512bf16"
std::optional<Isa> parse_isa(std::string_view name);
// Whether this CPU and OS run `isa` (cpuid, and the OS saving the vector state).
bool isa_supported(Isa isa);
// The best path this CPU runs; DSINF_CPU_ISA=<name> in the environment lowers it
// (a name this CPU cannot run is ignored with a warning on stderr).
Isa best_isa();

using kernels::DType;  // kernels/device.h
using kernels::dtype_bytes;
using kernels::dtype_name;

struct AdamBuffers {
  size_t n = 0;
  float* params = nullptr;      // (n) fp32 master weights, updated in place
  const void* grads = nullptr;  // (n) grad_dtype, the loss-scaled gradients
  DType grad_dtype = DType::kF32;
  void* m = nullptr;                // (n) state_dtype, first moment, updated in place
  void* v = nullptr;                // (n) state_dtype, second moment, updated in place
  DType state_dtype = DType::kF32;  // kF32, or kBF16 for bf16 optimizer states
  void* params_copy = nullptr;      // (n) copy_dtype, the new weights for the device; may be null
  DType copy_dtype = DType::kBF16;  // kBF16 or kF16 (kF32 is a plain copy)
};

struct GradStats {
  double sum_squares = 0;  // of the gradients as stored (still loss-scaled)
  size_t nonfinite = 0;    // inf or NaN entries
};

// Sum of squares in double, in a fixed order independent of the path and of
// the thread count: blocks of kSumSquaresBlock elements, each summed over 8
// lanes (element i into lane i % 8, lanes then added 0..7), block sums added in
// order -- the order of cpu::sum_squares, so fp32 results equal it exactly.
GradStats grad_stats(const void* grads, DType dtype, size_t n, Isa isa);
inline GradStats grad_stats(const void* grads, DType dtype, size_t n) {
  return grad_stats(grads, dtype, n, best_isa());
}

// One step (hyper.step >= 1 when bias correction is on). Elements whose
// gradient is inf or NaN keep their weight, m and v (and their copy receives
// the unchanged weight); the return value counts them. A caller that must skip
// the whole step on overflow learns of it from grad_stats first.
size_t fused_adam_step(const AdamBuffers& buffers, const AdamHyper& hyper, Isa isa);
inline size_t fused_adam_step(const AdamBuffers& buffers, const AdamHyper& hyper) {
  return fused_adam_step(buffers, hyper, best_isa());
}

// dst[i] = dst_dtype(src[i] * scale), elementwise with the conversions of half.h:
// an unscale into fp32, or a cast of weights to bf16/fp16 for the device.
void convert(const void* src, DType src_dtype, void* dst, DType dst_dtype, float scale, size_t n,
             Isa isa);
inline void convert(const void* src, DType src_dtype, void* dst, DType dst_dtype, float scale,
                    size_t n) {
  convert(src, src_dtype, dst, dst_dtype, scale, n, best_isa());
}

// acc[i] = acc[i] + float(src[i]): a gradient visit (fp32, bf16 or fp16) added
// into an fp32 accumulator, one fp32 addition an element (Device::accumulate
// of the CPU backend, and the runtime's host accumulators).
void accumulate(float* acc, const void* src, DType src_dtype, size_t n);

// a[i] += s * b[i]: the in-place update whose bandwidth is the optimizer
// step's ceiling (dsinf bench adam and tiers), on the same vector path and the
// same split across threads as the step, so the ceiling is not held back by
// narrower code than the step it is compared with.
void axpy(float* a, const float* b, float s, size_t n, Isa isa);
inline void axpy(float* a, const float* b, float s, size_t n) { axpy(a, b, s, n, best_isa()); }

}  // namespace dsinf::kernels::cpu
