// The backend interface: the only way anything above kernels/ touches compute
// memory or runs an op. It is deliberately narrow -- allocate in a budgeted
// arena, copy in and out asynchronously on streams, run ops, order work with
// events -- so a CUDA backend and the offload runtime plug in without the
// trainer knowing which backend runs.
//
// Pointers passed to ops and copies as "device" pointers must come from
// allocate(). Shapes: B batch, T sequence length, C channels, NH heads,
// V vocabulary, N = B*T rows, OC output channels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "memory/arena.h"

namespace dsinf::kernels {

enum class Stream : int { kCompute = 0, kUpload = 1, kDownload = 2 };
inline constexpr int kNumStreams = 3;

// An event marks a point in one stream's work; 0 is "no event".
using Event = uint64_t;

struct AdamHyper {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  bool adam_w_mode = true;  // decoupled weight decay (AdamW); else L2 added to the gradient
  bool bias_correction = true;
  int64_t step = 1;         // 1-based optimizer step, for bias correction
  float grad_scale = 1.0f;  // gradients are multiplied by this first (unscale x clip)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Device memory is host memory (the CPU backend): host code may read a
  // device buffer in place instead of copying it out first.
  virtual bool device_memory_is_host() const { return false; }
  // Device memory the backend holds outside the arena budget for its own
  // kernels (matmul and attention workspaces), fixed at creation.
  virtual size_t workspace_bytes() const { return 0; }

  // ---- host memory the device copies from and to ----
  // Pins [base, base + bytes) (page aligned) for direct DMA, once at start-up
  // (the host pool); unregister before freeing it. A no-op where copies are
  // plain memcpy (the CPU backend).
  virtual absl::Status register_host_memory(void* base, size_t bytes) { return absl::OkStatus(); }
  virtual void unregister_host_memory(void* base) {}
  // Page-locked host memory the backend allocates itself (cudaHostAlloc):
  // what its copies run fastest from. kUnimplemented where there is none.
  virtual absl::StatusOr<void*> allocate_pinned_host(size_t bytes) {
    return absl::UnimplementedError(name() + " has no pinned host memory");
  }
  virtual void release_pinned_host(void* ptr) {}

  // ---- memory: the backend's arena, with a hard byte budget ----
  virtual absl::StatusOr<void*> allocate(size_t bytes) = 0;  // page aligned, zero filled
  virtual void release(void* ptr) = 0;
  virtual memory::ArenaStats memory_stats() const = 0;

  // ---- transfers: queued on `stream`, complete when an event recorded after them completes ----
  virtual absl::Status copy_to_device(void* dst_device, const void* src_host, size_t bytes,
                                      Stream stream) = 0;
  virtual absl::Status copy_to_host(void* dst_host, const void* src_device, size_t bytes,
                                    Stream stream) = 0;
  virtual absl::Status fill_zero(void* dst_device, size_t bytes, Stream stream) = 0;

  // ---- ordering ----
  virtual Event record(Stream stream) = 0;
  // Work queued on `stream` after this call starts only once `event` completed.
  virtual void stream_wait(Stream stream, Event event) = 0;
  // Blocks the caller until `event` completed; reports any failure of the work before it.
  virtual absl::Status wait(Event event) = 0;
  absl::Status synchronize(Stream stream) { return wait(record(stream)); }

  // ---- ops, queued on the compute stream; "+=" outputs accumulate ----
  // out (B,T,C) = wte[inp] + wpe[t]; inp (B,T) token ids < V.
  virtual void encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe,
                               int B, int T, int C) = 0;
  // dwte (V,C) +=, dwpe (T,C) += from dout (B,T,C).
  virtual void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp,
                                int B, int T, int C) = 0;
  // out (N,C); mean, rstd (N); LayerNorm with eps 1e-5 over C.
  virtual void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                 const float* weight, const float* bias, int N, int C) = 0;
  // dinp (N,C) +=, dweight (C) +=, dbias (C) +=.
  virtual void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                  const float* inp, const float* weight, const float* mean,
                                  const float* rstd, int N, int C) = 0;
  // out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC); bias may be null.
  virtual void matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                              int N, int C, int OC) = 0;
  // dinp (N,C) +=, dweight (OC,C) +=, dbias (OC) += (null: no bias).
  virtual void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                               const float* inp, const float* weight, int N, int C, int OC) = 0;
  // Causal self-attention. qkv (B,T,3C) = [q | k | v]; out (B,T,C); att (B,NH,T,T) the softmax
  // probabilities, kept for backward (entries above the diagonal are written as 0).
  virtual void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C,
                                 int NH) = 0;
  // dqkv (B,T,3C) += from dout (B,T,C).
  virtual void attention_backward(float* dqkv, const float* dout, const float* qkv,
                                  const float* att, int B, int T, int C, int NH) = 0;
  // GELU, tanh approximation, elementwise over n.
  virtual void gelu_forward(float* out, const float* inp, size_t n) = 0;
  virtual void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) = 0;  // +=
  // out = a + b, elementwise (out may alias a or b).
  virtual void residual_forward(float* out, const float* a, const float* b, size_t n) = 0;
  // Softmax cross-entropy over V for each of N rows. losses (N) = -log softmax(logits)[target].
  // When dlogits is not null it receives (softmax - onehot(target)) * dloss (may alias logits).
  virtual void softmax_crossentropy(float* losses, float* dlogits, const float* logits,
                                    const int32_t* targets, int N, int V, float dloss) = 0;
  // x *= s over n elements.
  virtual void scale(float* x, float s, size_t n) = 0;
  // Sum of squares of x (n), accumulated in double in a fixed order (deterministic).
  virtual double sum_squares(const float* x, size_t n) = 0;
  // One Adam/AdamW step over n elements: params, m, v updated in place from grads.
  virtual void adam_step(float* params, const float* grads, float* m, float* v, size_t n,
                         const AdamHyper& hyper) = 0;
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
