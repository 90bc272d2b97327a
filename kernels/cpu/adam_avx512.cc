// The AVX-512 (F/BW/VL/DQ) path of the CPU Adam, for CPUs without AVX512_BF16.
// Compiled with the AVX-512 flags; adam.cc calls it only after cpuid says so.
#include "kernels/cpu/adam_avx512_policy.h"
#include "kernels/cpu/adam_impl.h"

namespace dsinf::kernels::cpu::adam_detail {

const KernelTable* avx512_kernels() { return kernel_table<Avx512Policy<false>>(); }

}  // namespace dsinf::kernels::cpu::adam_detail
