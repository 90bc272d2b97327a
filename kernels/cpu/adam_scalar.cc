// The scalar CPU Adam path: any CPU, and the definition the vector paths match.
#include "kernels/cpu/adam_impl.h"

namespace dsinf::kernels::cpu::adam_detail {

const KernelTable* scalar_kernels() { return kernel_table<ScalarPolicy>(); }

}  // namespace dsinf::kernels::cpu::adam_detail
