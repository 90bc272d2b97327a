// The backend interface: the only way anything above kernels/ touches compute
// memory or runs an op. It is deliberately narrow -- a Device (kernels/device.h:
// allocate in a budgeted arena, copy in and out asynchronously on streams,
// order work with events) and its ops (kernels/ops.h for GPT-2, and
// kernels/decoder_ops.h for the decoder families) -- so a CUDA backend and
// the offload runtime plug in without the trainer knowing which backend runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/decoder_ops.h"
#include "kernels/device.h"
#include "kernels/ops.h"

namespace dsinf::kernels {

class Backend : public Device, public Ops, public DecoderOps {
 public:
  ~Backend() override = default;
};

// The precision of the operands of matrix products (matmul and attention's
// two products): tensors are stored in fp32 and accumulated in fp32 either
// way; with kBf16 / kFp16 each operand is rounded (to nearest even) to that
// type first, as tensor cores do. Everything else computes in fp32.
enum class Precision : int { kFp32 = 0, kBf16 = 1, kFp16 = 2 };
const char* precision_name(Precision p);

// Scratch attention's backward needs to do all NH heads of one window at
// once: one (NH,T,T) fp32 block (the CUDA backend does fewer heads at a time
// with less, at least one (T,T) block).
inline size_t attention_scratch_bytes(int T, int NH) {
  return static_cast<size_t>(NH) * static_cast<size_t>(T) * static_cast<size_t>(T) * sizeof(float);
}

struct BackendOptions {
  size_t device_budget_bytes = 0;  // 0: no budget (the CUDA backend: most of the free memory)
  Precision matmul_precision = Precision::kFp32;
  int device_index = 0;  // CUDA device ordinal
  // Scratch for attention's backward, held outside the budget (CUDA): the
  // model's attention_scratch_bytes(T, NH) does every head of a window at once.
  size_t attention_scratch_bytes = size_t{16} << 20;
  // CPU backend, a test mode: copies run as late as a GPU's could (see
  // cpu_backend.cc), so code that uses a copy before waiting for it fails here
  // too. Training sets it from DSINF_CPU_DEFER_COPIES=1.
  bool defer_copies = false;
};

// The fp32 reference backend; always available. With a reduced
// matmul_precision it rounds the matmul operands as the GPU does.
std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options);

// ---- the CUDA backend (kernels/cuda; built when nvcc was found) ----
struct CudaDeviceInfo {
  int index = 0;
  std::string name;  // e.g. "NVIDIA H100 80GB HBM3"
  int sm_major = 0, sm_minor = 0;
  int multiprocessors = 0;
  double clock_ghz = 0;  // maximum SM clock
  size_t total_bytes = 0, free_bytes = 0;
  // Dense tensor-core peak for bf16/fp16 operands with fp32 accumulation, from
  // the SM count, clock and the architecture's per-SM rate; 0 when unknown.
  double peak_bf16_tflops = 0;
};
// Whether this binary was built with the CUDA backend.
bool cuda_built();
// The device at `index`: kUnavailable when CUDA is not built, there is no
// driver or no such device (the message says which).
absl::StatusOr<CudaDeviceInfo> cuda_device_info(int index);
// kUnavailable as above; kResourceExhausted when the arena cannot be reserved.
absl::StatusOr<std::unique_ptr<Backend>> make_cuda_backend(const BackendOptions& options);
// The ceiling a backend's copies are compared with: a plain loop of
// `iterations` cudaMemcpyAsync of `bytes` on one stream between cudaHostAlloc
// memory and the device, timed by events; GB/s (1e9 bytes/s).
absl::StatusOr<double> cuda_copy_ceiling_gbps(int device_index, size_t bytes, int iterations,
                                              bool to_device);

}  // namespace dsinf::kernels
