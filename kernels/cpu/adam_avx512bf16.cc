// The AVX-512 path with AVX512_BF16's vcvtneps2bf16 for the bf16 copies and
// moments. Compiled with the AVX-512 and BF16 flags; adam.cc calls it only after
// cpuid says the CPU has them.
#include "kernels/cpu/adam_avx512_policy.h"
#include "kernels/cpu/adam_impl.h"

namespace dsinf::kernels::cpu::adam_detail {

const KernelTable* avx512bf16_kernels() { return kernel_table<Avx512Policy<true>>(); }

}  // namespace dsinf::kernels::cpu::adam_detail
