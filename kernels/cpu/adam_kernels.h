// Inside the CPU Adam: the per-path kernel tables adam.cc dispatches to. Each
// table works on one contiguous range; adam.cc splits the work across threads.
#pragma once

#include <cstddef>

#include "kernels/cpu/adam.h"

namespace dsinf::kernels::cpu::adam_detail {

// The step's scalars, computed once per step in double and rounded to fp32
// exactly as the reference cpu::adam_step<float> does.
struct StepScalars {
  float grad_scale;
  float weight_decay;
  float beta1;
  float beta2;
  float one_minus_beta1;
  float one_minus_beta2;
  float decay;      // 1 - lr * weight_decay (AdamW)
  float step_size;  // lr / bias_correction1
  float sqrt_bc2;   // sqrt(bias_correction2)
  float eps;
  bool adam_w_mode;
};

// From the step's hyperparameters; used by every CPU path and the CUDA kernel,
// so all of them step with the same fp32 scalars.
StepScalars step_scalars(const AdamHyper& hyper);

struct KernelTable {
  // Elements [begin, end) of one step; returns the count of non-finite gradients.
  size_t (*step)(const AdamBuffers& buffers, const StepScalars& scalars, size_t begin, size_t end);
  // Blocks [block_begin, block_end) of grad_stats: block_sums[b] for each, and
  // the count of non-finite entries in them.
  size_t (*stats)(const void* grads, DType dtype, size_t n, size_t block_begin, size_t block_end,
                  double* block_sums);
  // Elements [begin, end) of convert().
  void (*convert)(const void* src, DType src_dtype, void* dst, DType dst_dtype, float scale,
                  size_t begin, size_t end);
  // Elements [begin, end) of axpy().
  void (*axpy)(float* a, const float* b, float s, size_t begin, size_t end);
};

const KernelTable* scalar_kernels();
#if defined(__x86_64__)
const KernelTable* avx2_kernels();
const KernelTable* avx512_kernels();
const KernelTable* avx512bf16_kernels();
#endif

}  // namespace dsinf::kernels::cpu::adam_detail
